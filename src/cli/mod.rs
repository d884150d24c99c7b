//! Subcommands of the `qwen3vl` binary.

pub mod bench;
pub mod bench_model;
pub mod env;
pub mod forward;
pub mod make_checkpoint;
pub mod preprocess;
pub mod quantize;
pub mod run;
pub mod serve;
