//! The checkpoint's Hugging Face `tokenizer.json`, plus the Qwen3-VL special-token ids.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::escape::Escaper;
use super::PromptError;

/// The tokenizer's added tokens (control tokens and the like), found in text the way the
/// tokenizer finds them: leftmost, longest match first.
#[derive(Debug, Clone, Default)]
pub struct AddedTokens {
    tokens: Vec<(String, u32)>,
    /// Bytes some token starts with: most positions are rejected by one lookup.
    first: Vec<bool>,
}

impl AddedTokens {
    pub fn new(tokens: Vec<(String, u32)>) -> Self {
        let mut first = vec![false; 256];
        for (t, _) in &tokens {
            if let Some(&b) = t.as_bytes().first() {
                first[b as usize] = true;
            }
        }
        AddedTokens { tokens, first }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn text(&self, index: usize) -> &str {
        &self.tokens[index].0
    }

    pub fn id(&self, index: usize) -> u32 {
        self.tokens[index].1
    }

    /// The index of the longest added token that `rest` starts with.
    pub fn longest_at(&self, rest: &str) -> Option<usize> {
        let b = *rest.as_bytes().first()?;
        if !self.first[b as usize] {
            return None;
        }
        (0..self.tokens.len())
            .filter(|&k| {
                !self.tokens[k].0.is_empty() && rest.starts_with(self.tokens[k].0.as_str())
            })
            .max_by_key(|&k| self.tokens[k].0.len())
    }
}

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
    added: AddedTokens,
    /// The same tokenizer with every added token disabled (built on first use): text between
    /// two control tokens, escaped control-token text included (see [`Escaper`]).
    plain: Arc<OnceLock<Result<tokenizers::Tokenizer, String>>>,
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
            added: {
                let mut t: Vec<(String, u32)> = inner
                    .get_added_tokens_decoder()
                    .into_iter()
                    .map(|(id, tok)| (tok.content, id))
                    .collect();
                t.sort_by_key(|&(_, id)| id);
                AddedTokens::new(t)
            },
            plain: Arc::default(),
            inner,
        })
    }

    /// The added tokens (control tokens) of this tokenizer.
    pub fn added_tokens(&self) -> &AddedTokens {
        &self.added
    }

    /// A copy of the tokenizer whose added tokens are all special and encoded as plain text.
    fn plain(&self) -> Result<&tokenizers::Tokenizer, PromptError> {
        let built = self.plain.get_or_init(|| {
            let mut json: serde_json::Value =
                serde_json::from_str(&self.inner.to_string(false).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            if let Some(list) = json["added_tokens"].as_array_mut() {
                for t in list {
                    t["special"] = serde_json::Value::Bool(true);
                }
            }
            let mut plain: tokenizers::Tokenizer =
                json.to_string().parse().map_err(|e| format!("{e}"))?;
            plain.set_encode_special_tokens(true);
            Ok(plain)
        });
        built
            .as_ref()
            .map_err(|e| PromptError::Tokenizer(format!("plain-text tokenizer: {e}")))
    }

    /// Encodes a prompt rendered from escaped messages: the template's control tokens are
    /// matched as usual, this request's markers become their token text, and the text between
    /// control tokens is tokenized as the tokenizer does any such text. Without markers the
    /// result equals [`Tokenizer::encode`].
    pub fn encode_escaped(&self, text: &str, escaper: &Escaper) -> Result<Vec<u32>, PromptError> {
        let plain = self.plain()?;
        let mut ids = Vec::new();
        let mut segment = String::new();
        let flush = |segment: &mut String, ids: &mut Vec<u32>| -> Result<(), PromptError> {
            if !segment.is_empty() {
                let enc = plain
                    .encode_fast(segment.as_str(), false)
                    .map_err(|e| PromptError::Tokenizer(e.to_string()))?;
                ids.extend_from_slice(enc.get_ids());
                segment.clear();
            }
            Ok(())
        };
        let mut i = 0;
        while i < text.len() {
            let rest = &text[i..];
            if let Some((k, len)) = escaper.marker_at(rest) {
                if k < self.added.len() {
                    segment.push_str(self.added.text(k));
                    i += len;
                    continue;
                }
            }
            if let Some(k) = self.added.longest_at(rest) {
                flush(&mut segment, &mut ids)?;
                ids.push(self.added.id(k));
                i += self.added.text(k).len();
                continue;
            }
            let c = rest.chars().next().unwrap_or_default();
            segment.push(c);
            i += c.len_utf8();
        }
        flush(&mut segment, &mut ids)?;
        Ok(ids)
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
