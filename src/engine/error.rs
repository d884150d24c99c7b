//! Typed errors of the engine: every failure names the file, tensor or input it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {msg}")]
    Config { path: PathBuf, msg: String },
    #[error("invalid checkpoint file {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("tensor `{name}` is missing from the checkpoint in {dir}")]
    MissingTensor { name: String, dir: PathBuf },
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("tensor `{name}` has dtype {dtype}, expected one of {expected}")]
    Dtype {
        name: String,
        dtype: String,
        expected: String,
    },
    #[error("unsupported quantized checkpoint in {dir}: {msg}")]
    Quantization { dir: PathBuf, msg: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("kernel failure: {0}")]
    Kernel(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub fn input(msg: impl Into<String>) -> Self {
        EngineError::Input(msg.into())
    }
}
