//! Draft tokens for speculative decoding without a draft model. A decoding sequence may carry a
//! draft of k guessed next tokens into its step; the step computes the known token and the draft
//! together (one weight read for k + 1 positions, which costs little more than one while a step is
//! bound by memory bandwidth), and the sampler keeps the longest prefix of the draft that it would
//! have produced itself plus one token of its own, so the output is exactly plain decoding's.
//!
//! [`SpeculativeConfig::Ngram`] is vLLM's prompt lookup (`{"method": "ngram", ...}`): the
//! longest suffix of the sequence (between `prompt_lookup_min` and `prompt_lookup_max` tokens)
//! that also occurs earlier in the prompt or output proposes the tokens that followed it there.

use serde::Deserialize;

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    method: String,
    num_speculative_tokens: Option<usize>,
    prompt_lookup_min: Option<usize>,
    prompt_lookup_max: Option<usize>,
    max_draft_batch: Option<usize>,
}

impl SpeculativeConfig {
    /// Parse vLLM's JSON form, checking every field; errors name the field.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let w: Wire = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        match w.method.as_str() {
            "ngram" | "prompt_lookup" => {}
            m => return Err(format!("unknown speculative method `{m}` (ngram)")),
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

    /// Most draft tokens a step may carry per sequence.
    pub fn max_draft(&self) -> usize {
        match self {
            SpeculativeConfig::Ngram { k, .. } => *k,
        }
    }

    /// Whether a step with `decoding` decoding sequences drafts at all.
    pub fn drafts_at(&self, decoding: usize) -> bool {
        match self {
            SpeculativeConfig::Ngram { max_batch, .. } => decoding <= *max_batch,
        }
    }

    /// A draft of at most `limit` tokens following `tokens` (empty when nothing matches).
    pub fn propose(&self, tokens: &[u32], limit: usize) -> Vec<u32> {
        match *self {
            SpeculativeConfig::Ngram { k, min, max, .. } => {
                prompt_lookup(tokens, k.min(limit), min, max)
            }
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
