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
    /// Longest vocabulary entry in bytes: no token covers more input than this (up to the
    /// normalizer's factor), which bounds the token count of a text from below by its length.
    max_token_bytes: usize,
}

/// NFC may shrink text by up to this factor (e.g. three Hangul jamo into one syllable), so
/// normalized length >= input length / this.
const NORMALIZER_SHRINK: usize = 3;

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
            max_token_bytes: inner
                .get_vocab(true)
                .keys()
                .map(|k| k.len())
                .max()
                .unwrap_or(1)
                .max(1),
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

    /// [`Tokenizer::encode`] for a prompt that may hold at most `max` tokens, at a cost bounded
    /// by `max`, not by the text: `Ok(Err(n))` says the text has at least `n > max` tokens.
    ///
    /// A text too long for `max` tokens of the longest vocabulary entry is refused unread;
    /// otherwise growing prefixes are tokenized and the first one that is clearly over the
    /// limit (by a margin that covers the words cut at its end) refuses. Only a text that
    /// might fit is tokenized whole, and that one is checked exactly.
    pub fn encode_limited(
        &self,
        text: &str,
        max: usize,
    ) -> Result<Result<Vec<u32>, usize>, PromptError> {
        let bytes_bound = (max.saturating_add(1))
            .saturating_mul(self.max_token_bytes)
            .saturating_mul(NORMALIZER_SHRINK);
        if text.len() > bytes_bound {
            return Ok(Err(max.saturating_add(1)));
        }
        let margin = max / 8 + 64;
        let mut prefix = max.saturating_mul(4).max(4096);
        while prefix < text.len() {
            let mut cut = prefix;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let n = self.encode(&text[..cut])?.len();
            if n > max + margin {
                return Ok(Err(n - margin));
            }
            prefix = prefix.saturating_mul(4);
        }
        let ids = self.encode(text)?;
        Ok(if ids.len() > max {
            Err(ids.len())
        } else {
            Ok(ids)
        })
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
