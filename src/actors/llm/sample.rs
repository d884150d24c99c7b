//! Sampling, in one place: the logits rows of every plan entry that samples go through its
//! sequence's sampler (penalties, temperature, top-k/p/min-p, seeded draw, logprobs).
//!
//! With a draft, row j is the distribution of the token after draft[..j]. The sampler draws from
//! row 0, then from row 1 only if that draw equalled draft[0], and so on: every draw is made from
//! exactly the distribution plain decoding would have used at that point, with the sampler's
//! state (penalty counts, seeded generator) advanced once per committed token, so greedy and
//! seeded outputs are token for token those of plain decoding, and the first draw that differs
//! from the draft (or the one after a fully accepted draft) is the step's own token.

use super::plan::StepPlan;
use super::sequence::Sequence;
use crate::engine::sampling::Sampled;

/// The committed draws of each plan entry (empty for entries that do not sample), from
/// `logits` [plan.rows(), vocab] as the runner returns them.
pub fn sample_step(
    seqs: &mut [Sequence],
    plan: &StepPlan,
    logits: &[f32],
    vocab: usize,
) -> Vec<Vec<Sampled>> {
    let mut rows = logits.chunks_exact(vocab);
    plan.work
        .iter()
        .map(|w| {
            if !w.sample {
                return Vec::new();
            }
            let mine: Vec<&[f32]> = rows.by_ref().take(1 + w.draft.len()).collect();
            let sampler = &mut seqs[w.seq].sampler;
            let mut out = Vec::with_capacity(mine.len());
            for (j, row) in mine.into_iter().enumerate() {
                // The sampler edits its row in place (penalties, temperature, masking).
                let mut row = row.to_vec();
                let s = sampler.sample(&mut row);
                let agrees = w.draft.get(j) == Some(&s.token);
                out.push(s);
                if !agrees {
                    break;
                }
            }
            out
        })
        .collect()
}
