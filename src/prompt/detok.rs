//! Streaming detokenization that never emits half a UTF-8 character.

use std::sync::Arc;

use super::{PromptError, Tokenizer};

/// Turns a growing list of generated ids into text deltas.
///
/// Byte-level BPE tokens can split a UTF-8 character; decoding such a prefix yields U+FFFD. The
/// detokenizer re-decodes a short window of recent ids and holds text back while it ends in an
/// incomplete character, so every emitted delta is valid and the concatenation of all deltas
/// equals the full decode (the technique used by TGI and vLLM). This is the detokenizer the
/// stream stage runs, one per choice, over the pipeline's shared tokenizer (an `Arc`, so no
/// request copies the vocabulary).
#[derive(Debug, Clone)]
pub struct IncrementalDetokenizer {
    tokenizer: Arc<Tokenizer>,
    ids: Vec<u32>,
    /// Start of the window that is re-decoded for context.
    prefix_offset: usize,
    /// End of the text already emitted, in ids.
    read_offset: usize,
    skip_special_tokens: bool,
}

impl IncrementalDetokenizer {
    pub fn new(tokenizer: impl Into<Arc<Tokenizer>>, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer: tokenizer.into(),
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            skip_special_tokens,
        }
    }

    /// All ids pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Adds one id and returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, PromptError> {
        self.ids.push(id);
        let prefix = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(delta)
        } else {
            Ok(String::new())
        }
    }

    /// Returns whatever is still held back (at the end of generation), replacement characters
    /// included.
    pub fn flush(&mut self) -> Result<String, PromptError> {
        if self.read_offset == self.ids.len() {
            return Ok(String::new());
        }
        let prefix = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        Ok(
            if full.is_char_boundary(prefix.len()) && full.len() >= prefix.len() {
                full[prefix.len()..].to_string()
            } else {
                full
            },
        )
    }
}
