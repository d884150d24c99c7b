//! The checkpoint's Hugging Face `tokenizer.json`, plus the Qwen3-VL special-token ids.

use std::path::Path;

use super::PromptError;

/// Qwen2/Qwen3 BPE tokenizer (wraps the `tokenizers` crate).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `<|image_pad|>`, `<|video_pad|>`, `<|vision_start|>`, `<|vision_end|>`.
    pub image_pad_id: u32,
    pub video_pad_id: u32,
    pub vision_start_id: u32,
    pub vision_end_id: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, PromptError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| PromptError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::from_inner(inner)
    }

    /// Parses the JSON text of a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self, PromptError> {
        let inner: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| PromptError::Tokenizer(format!("{e}")))?;
        Self::from_inner(inner)
    }

    fn from_inner(inner: tokenizers::Tokenizer) -> Result<Self, PromptError> {
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| PromptError::Tokenizer(format!("tokenizer has no `{t}` token")))
        };
        Ok(Self {
            image_pad_id: id("<|image_pad|>")?,
            video_pad_id: id("<|video_pad|>")?,
            vision_start_id: id("<|vision_start|>")?,
            vision_end_id: id("<|vision_end|>")?,
            inner,
        })
    }

    /// Encodes text as the HF processor does (`add_special_tokens=True`; special tokens written in
    /// the text are matched as single tokens).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, PromptError> {
        let enc = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| PromptError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, PromptError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| PromptError::Tokenizer(e.to_string()))
    }

    /// Id of a token string (including special tokens).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
