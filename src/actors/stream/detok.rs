//! Incremental detokenization over a shared tokenizer (the processor's algorithm, without
//! cloning the 150k-entry vocabulary per request): re-decode a short window of recent ids and
//! hold text back while it ends in an incomplete UTF-8 character.

use std::sync::Arc;

use super::{Detokenize, DetokenizerFactory};
use crate::prompt::Tokenizer;

pub struct SharedDetokenizer {
    tok: Arc<Tokenizer>,
    ids: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
}

impl SharedDetokenizer {
    pub fn new(tok: Arc<Tokenizer>, skip_special_tokens: bool) -> Self {
        SharedDetokenizer {
            tok,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
            skip_special_tokens,
        }
    }

    fn decode(&self, ids: &[u32]) -> String {
        // A decode failure (an id outside the tokenizer) yields no text rather than an error:
        // the token ids still reach the client.
        self.tok
            .decode(ids, self.skip_special_tokens)
            .unwrap_or_default()
    }

    /// A factory for the pipeline builder.
    pub fn factory(tok: Arc<Tokenizer>) -> DetokenizerFactory {
        Arc::new(move |skip| Box::new(SharedDetokenizer::new(tok.clone(), skip)))
    }
}

impl Detokenize for SharedDetokenizer {
    fn push(&mut self, id: u32) -> String {
        self.ids.push(id);
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset]);
        let full = self.decode(&self.ids[self.prefix_offset..]);
        if full.len() > prefix.len()
            && !full.ends_with('\u{FFFD}')
            && full.is_char_boundary(prefix.len())
        {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            delta
        } else {
            String::new()
        }
    }

    fn flush(&mut self) -> String {
        if self.read_offset == self.ids.len() {
            return String::new();
        }
        let prefix = self.decode(&self.ids[self.prefix_offset..self.read_offset]);
        let full = self.decode(&self.ids[self.prefix_offset..]);
        self.prefix_offset = self.read_offset;
        self.read_offset = self.ids.len();
        if full.is_char_boundary(prefix.len()) && full.len() >= prefix.len() {
            full[prefix.len()..].to_string()
        } else {
            full
        }
    }
}
