//! The model and its compute: config parsing, weight loading, the kernel layer, the vision tower,
//! the text decoder (dense and MoE), rotary/M-RoPE and position-id logic.

pub mod config;
pub mod embedding;
pub mod error;
pub mod kernels;
pub mod kv_cache;
pub mod loader;
pub mod model;
pub mod model_args;
pub mod moe;
pub mod paged;
pub mod position;
pub mod quant;
pub mod quantize_checkpoint;
pub mod random_checkpoint;
pub mod rope;
pub mod sampling;
pub mod tensor_file;
pub mod text;
pub mod vision;
pub mod weights;

pub use config::Qwen3VlConfig;
pub use error::{EngineError, Result};
pub use kernels::bf16::Precision;
pub use model::{BackendChoice, LoadOptions, MultimodalInput, Quantization, Qwen3VlModel};
pub use model_args::ModelArgs;
