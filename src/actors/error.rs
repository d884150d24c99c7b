//! Why a request failed. Every stage reports a failure for its request only; the pipeline keeps
//! serving the others.

use crate::engine::sampling::SamplingError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(
        "prompt has {len} tokens, more than the input limit {max} (maxInputTokenLen / maxSeqLen - 1)"
    )]
    PromptTooLong { len: usize, max: usize },
    /// Found without tokenizing the whole prompt: the count is a lower bound.
    #[error(
        "prompt has at least {at_least} tokens, more than the input limit {max} (maxInputTokenLen / maxSeqLen - 1)"
    )]
    PromptFarTooLong { at_least: usize, max: usize },
    #[error("prompt needs {need} KV blocks but the cache has {total}")]
    CacheTooSmall { need: usize, total: usize },
    #[error("sampling parameters: {0}")]
    Sampling(#[from] SamplingError),
    #[error("media: {0}")]
    Media(String),
    #[error("vision encoder: {0}")]
    Vision(String),
    #[error("model step failed: {0}")]
    Model(String),
    #[error("the pipeline is shut down")]
    Shutdown,
}
