//! `walaudit emit-sample` (the sample shop workload) and `walaudit demo` (everything at once on
//! a private cluster), run as the binary.

mod emit_sample;
mod everything;
