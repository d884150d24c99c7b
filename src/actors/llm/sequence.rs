//! One choice of a request inside the LLM stage: its tokens, cache blocks and sampler.

use std::sync::Arc;
use std::time::Instant;

use crate::actors::request::{CancelFlag, Prompt, RequestId, Timings};
use crate::engine::paged::prefix::text_token_key;
use crate::engine::paged::SeqBlocks;
use crate::engine::sampling::Sampler;

pub struct Sequence {
    pub request: RequestId,
    pub choice: usize,
    pub prompt: Arc<Prompt>,
    pub output: Vec<u32>,
    pub blocks: SeqBlocks,
    /// Tokens whose K/V are in the cache.
    pub computed: usize,
    /// Prompt tokens served from the prefix cache at first admission.
    pub cached_tokens: usize,
    pub max_new_tokens: usize,
    /// Speculative decoding: this sequence's next draft length (0: the configured one).
    pub draft_len: usize,
    /// False when the request opted out of drafts.
    pub speculative: bool,
    pub stop_token_ids: Arc<Vec<u32>>,
    pub sampler: Sampler,
    /// Request-level cancellation (client gone).
    pub cancel: CancelFlag,
    /// Choice-level stop (a stop string matched in the stream stage).
    pub stop: CancelFlag,
    pub arrival: Instant,
    pub timings: Timings,
}

impl Sequence {
    pub fn prompt_len(&self) -> usize {
        self.prompt.ids.len()
    }

    /// Prompt plus output tokens.
    pub fn total_len(&self) -> usize {
        self.prompt.ids.len() + self.output.len()
    }

    pub fn token(&self, i: usize) -> u32 {
        let p = self.prompt_len();
        if i < p {
            self.prompt.ids[i]
        } else {
            self.output[i - p]
        }
    }

    /// Prefix-cache keys of all tokens (prompt keys, then output ids).
    pub fn keys(&self) -> Vec<u64> {
        let mut k = self.prompt.keys.clone();
        k.extend(self.output.iter().map(|&t| text_token_key(t)));
        k
    }

    /// Position (t, h, w) of token i: the prompt's M-RoPE ids, then index + rope_delta.
    pub fn position(&self, i: usize) -> [i64; 3] {
        let pos = &self.prompt.positions;
        if i < self.prompt_len() {
            [pos.streams[0][i], pos.streams[1][i], pos.streams[2][i]]
        } else {
            let p = i as i64 + pos.rope_delta;
            [p, p, p]
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.cancel.is_cancelled() || self.stop.is_cancelled()
    }

    pub fn elapsed(&self) -> f64 {
        self.arrival.elapsed().as_secs_f64()
    }
}
