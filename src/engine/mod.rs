//! The model and its compute: config parsing, weight loading, the kernel layer, the vision tower,
//! the text decoder (dense and MoE), rotary/M-RoPE and position-id logic.

internal! {
    mod embedding;
    mod kernels;
    mod kv_cache;
    mod loader;
    mod moe;
    mod paged;
    mod position;
    mod quant;
    mod rope;
    mod sampling;
    mod text;
    mod vision;
    mod weights;
}

pub mod config;
pub mod error;
pub mod model;
pub mod model_args;
pub mod tensor_file;

pub use config::Qwen3VlConfig;
pub use error::{EngineError, Result};
pub use kernels::bf16::Precision;
pub use model::{BackendChoice, LoadOptions, MultimodalInput, Quantization, Qwen3VlModel};
pub use model_args::ModelArgs;
pub use paged::KvBlocks;
