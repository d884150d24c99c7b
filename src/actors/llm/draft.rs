//! Draft tokens for speculative decoding without a draft model. A decoding sequence may carry a
//! draft of k guessed next tokens into its step; the step computes the known token and the draft
//! together (one weight read for k + 1 positions, which costs little more than one while a step is
//! bound by memory bandwidth), and the sampler keeps the longest prefix of the draft that it would
//! have produced itself plus one token of its own, so the output is exactly plain decoding's.
//!
//! [`SpeculativeConfig::Ngram`] is vLLM's prompt lookup (`{"method": "ngram", ...}`): the
//! longest suffix of the sequence (between `prompt_lookup_min` and `prompt_lookup_max` tokens)
//! that also occurs earlier in the prompt or output proposes the tokens that followed it there.
//! [`SpeculativeConfig::Memory`] is MindIE's memory decoding (`plugin_type: memory_decoding`): a
//! trie over every prompt and output the engine has seen ([`super::memory`]) continues the
//! sequence's recent context, with a draft length that follows the last acceptance when
//! `dynamic_algo` is on. MindIE's lookahead (`plugin_type: la`) is not implemented yet.

use serde::Deserialize;

use super::memory::TokenTrie;

/// How drafts are made (vLLM's `--speculative-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeculativeConfig {
    Ngram {
        /// Draft length (`num_speculative_tokens`), 1–64.
        k: usize,
        /// Shortest suffix matched (`prompt_lookup_min`), ≥ 1.
        min: usize,
        /// Longest suffix matched (`prompt_lookup_max`), ≥ min.
        max: usize,
        /// Steps with more decoding sequences than this draft nothing: batching already turns
        /// the weight reads into compute (`max_draft_batch`, default 4).
        max_batch: usize,
    },
    Memory {
        /// Longest draft (`decoding_length`), 1–16.
        decoding_length: usize,
        /// Draft length follows the last step's acceptance (`dynamic_algo`).
        dynamic: bool,
        /// Trie size bound, in nodes.
        max_nodes: usize,
        max_batch: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    method: String,
    num_speculative_tokens: Option<usize>,
    prompt_lookup_min: Option<usize>,
    prompt_lookup_max: Option<usize>,
    max_draft_batch: Option<usize>,
    decoding_length: Option<i64>,
    dynamic_algo: Option<bool>,
    /// MindIE `speculationGamma`: must cover the draft.
    speculation_gamma: Option<i64>,
    max_trie_nodes: Option<usize>,
}

impl SpeculativeConfig {
    /// Parse vLLM's JSON form, checking every field; errors name the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        // The method first, so that lookahead's own fields do not hide the real reason.
        if let Some("la" | "lookahead") = v.get("method").and_then(|m| m.as_str()) {
            return Err("lookahead decoding (plugin_type `la`) is not supported yet; use \
                 `memory_decoding` or `{\"method\": \"ngram\"}`"
                .into());
        }
        let w: Wire = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        match w.method.as_str() {
            "ngram" | "prompt_lookup" => {}
            "memory_decoding" => return Self::memory(&w),
            m => {
                return Err(format!(
                    "unknown speculative method `{m}` (ngram, memory_decoding)"
                ))
            }
        }
        let k = w.num_speculative_tokens.unwrap_or(5);
        let max = w.prompt_lookup_max.unwrap_or(5);
        let min = w.prompt_lookup_min.unwrap_or(1);
        if !(1..=64).contains(&k) {
            return Err(format!("num_speculative_tokens = {k} is outside [1, 64]"));
        }
        if min == 0 || max < min || max > 64 {
            return Err(format!(
                "prompt_lookup_min = {min}, prompt_lookup_max = {max}: need 1 ≤ min ≤ max ≤ 64"
            ));
        }
        Ok(SpeculativeConfig::Ngram {
            k,
            min,
            max,
            max_batch: w.max_draft_batch.unwrap_or(4).max(1),
        })
    }

    /// MindIE's memory decoding: `decoding_length` out of [1, 16] is clamped with a warning, a
    /// `speculationGamma` below it is an error.
    fn memory(w: &Wire) -> Result<Self, String> {
        let asked = w.decoding_length.unwrap_or(16);
        let decoding_length = asked.clamp(1, 16) as usize;
        if decoding_length as i64 != asked {
            tracing::warn!(
                "plugin_params.decoding_length = {asked} is outside [1, 16]; using {decoding_length}"
            );
        }
        if let Some(g) = w.speculation_gamma {
            if g < decoding_length as i64 {
                return Err(format!(
                    "speculationGamma = {g} is below decoding_length = {decoding_length}"
                ));
            }
        }
        Ok(SpeculativeConfig::Memory {
            decoding_length,
            dynamic: w.dynamic_algo.unwrap_or(false),
            max_nodes: w.max_trie_nodes.unwrap_or(65_536).max(2),
            max_batch: w.max_draft_batch.unwrap_or(4).max(1),
        })
    }

    /// Most draft tokens a step may carry per sequence.
    pub fn max_draft(&self) -> usize {
        match self {
            SpeculativeConfig::Ngram { k, .. } => *k,
            SpeculativeConfig::Memory {
                decoding_length, ..
            } => *decoding_length,
        }
    }

    /// Whether a step with `decoding` decoding sequences drafts at all.
    pub fn drafts_at(&self, decoding: usize) -> bool {
        match self {
            SpeculativeConfig::Ngram { max_batch, .. }
            | SpeculativeConfig::Memory { max_batch, .. } => decoding <= *max_batch,
        }
    }
}

/// The drafting state of one engine: the configuration and, for memory decoding, the trie
/// shared by every request.
#[derive(Debug, Clone)]
pub struct Drafter {
    pub cfg: SpeculativeConfig,
    trie: Option<TokenTrie>,
}

impl Drafter {
    pub fn new(cfg: SpeculativeConfig) -> Self {
        let trie = match cfg {
            SpeculativeConfig::Memory {
                max_nodes,
                decoding_length,
                ..
            } => Some(TokenTrie::new(max_nodes, decoding_length)),
            SpeculativeConfig::Ngram { .. } => None,
        };
        Drafter { cfg, trie }
    }

    /// Remember a prompt or an output (memory decoding; n-gram lookup reads the sequence).
    pub fn observe(&mut self, tokens: &[u32]) {
        if let Some(t) = &mut self.trie {
            t.insert(tokens);
        }
    }

    /// A draft of at most `limit` tokens following `tokens` (empty when nothing matches);
    /// `length` is the sequence's dynamic draft length (0: the configured one).
    pub fn propose(&self, tokens: &[u32], limit: usize, length: usize) -> Vec<u32> {
        match (&self.cfg, &self.trie) {
            (SpeculativeConfig::Ngram { k, min, max, .. }, _) => {
                prompt_lookup(tokens, (*k).min(limit), *min, *max)
            }
            (SpeculativeConfig::Memory { .. }, Some(trie)) => {
                let n = if length == 0 { self.cfg.max_draft() } else { length };
                trie.draft(tokens, n.min(limit))
            }
            (SpeculativeConfig::Memory { .. }, None) => Vec::new(),
        }
    }

    /// The next draft length of a sequence whose last draft of `drafted` tokens had `accepted`
    /// accepted (0: not dynamic, the configured length).
    pub fn next_length(&self, drafted: usize, accepted: usize) -> usize {
        match self.cfg {
            SpeculativeConfig::Memory {
                dynamic: true,
                decoding_length,
                ..
            } if drafted > 0 => {
                if accepted == drafted {
                    (2 * drafted).min(decoding_length)
                } else {
                    accepted + 1
                }
            }
            _ => 0,
        }
    }
}

/// N-gram prompt lookup: for n from `max` down to `min`, the most recent earlier occurrence of
/// the last n tokens proposes (up to) the `k` tokens that followed it. (Which occurrence is
/// taken changes only how many tokens are accepted, never which tokens are produced.)
pub fn prompt_lookup(tokens: &[u32], k: usize, min: usize, max: usize) -> Vec<u32> {
    let len = tokens.len();
    if k == 0 {
        return Vec::new();
    }
    for n in (min..=max.min(len.saturating_sub(1))).rev() {
        let suffix = &tokens[len - n..];
        // Latest occurrence that ends before the suffix itself starts overlapping the end.
        for start in (0..len - n).rev() {
            if &tokens[start..start + n] == suffix {
                let from = start + n;
                let to = (from + k).min(len);
                return tokens[from..to].to_vec();
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_decoding_config_clamps_and_checks_gamma() {
        let m = SpeculativeConfig::from_json(&serde_json::json!({
            "method": "memory_decoding", "decoding_length": 40, "dynamic_algo": true
        }))
        .unwrap();
        assert_eq!(m.max_draft(), 16);
        let d = Drafter::new(m);
        assert_eq!((d.next_length(4, 4), d.next_length(4, 1), d.next_length(16, 16)), (8, 2, 16));
    }

    #[test]
    fn lookup_takes_the_longest_then_latest_match() {
        // "1 2 3 9 1 2 3 7 ... 1 2 3" → the 3-gram "1 2 3" last occurred before "7 8".
        let t = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3];
        assert_eq!(prompt_lookup(&t, 2, 1, 3), vec![7, 8]);
        assert_eq!(prompt_lookup(&t, 10, 1, 3), vec![7, 8, 5, 1, 2, 3]);
        // Only unigrams allowed: the last earlier "3" is followed by 7.
        assert_eq!(prompt_lookup(&t, 1, 1, 1), vec![7]);
        // No earlier occurrence of any suffix.
        assert!(prompt_lookup(&[1, 2, 3, 4], 3, 1, 3).is_empty());
        // A repeated token proposes itself (a loop continues).
        assert_eq!(prompt_lookup(&[5, 5, 5], 4, 1, 2), vec![5]);
        assert!(prompt_lookup(&[], 4, 1, 2).is_empty());
    }

    #[test]
    fn config_is_checked_by_field() {
        let ok = SpeculativeConfig::from_json(&serde_json::json!({
            "method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3
        }))
        .unwrap();
        assert_eq!(
            ok,
            SpeculativeConfig::Ngram {
                k: 4,
                min: 1,
                max: 3,
                max_batch: 4
            }
        );
        for (bad, needle) in [
            (serde_json::json!({"method": "eagle"}), "eagle"),
            (
                serde_json::json!({"method": "ngram", "num_speculative_tokens": 0}),
                "num_speculative_tokens",
            ),
            (
                serde_json::json!({"method": "ngram", "prompt_lookup_min": 4, "prompt_lookup_max": 2}),
                "prompt_lookup_min",
            ),
            (
                serde_json::json!({"method": "ngram", "lookahead": 2}),
                "lookahead",
            ),
        ] {
            let e = SpeculativeConfig::from_json(&bad).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
