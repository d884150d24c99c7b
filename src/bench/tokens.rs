//! Fallback token counting for servers that report no usage (AISBench tokenizes the
//! prediction with the model's tokenizer then, spec §3.3). Server usage is always preferred.

use std::path::Path;

use super::{BenchError, Result};

/// Counts the tokens of a text.
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> Option<u64>;
}

/// A Hugging Face `tokenizer.json`.
pub struct TokenizerFile {
    inner: tokenizers::Tokenizer,
}

impl TokenizerFile {
    pub fn open(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| BenchError::Tokenizer {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(TokenizerFile { inner })
    }
}

impl TokenCounter for TokenizerFile {
    /// `len(tokenizer.encode(text))` (Qwen tokenizers add no special tokens).
    fn count(&self, text: &str) -> Option<u64> {
        self.inner
            .encode(text, true)
            .ok()
            .map(|e| e.get_ids().len() as u64)
    }
}
