//! Validation jobs (data-quality checks).

pub mod schedule;
