//! `walaudit emit-sample` (the sample shop workload) and `walaudit demo` (everything at once on
//! a private cluster), run as the binary; the demo on a machine without the server.

mod emit_sample;
mod everything;
mod no_server;
