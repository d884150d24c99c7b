//! Sampling, in one place: the logits row of every plan entry that samples goes through its
//! sequence's sampler (penalties, temperature, top-k/p/min-p, seeded draw, logprobs).

use super::plan::StepPlan;
use super::sequence::Sequence;
use crate::engine::sampling::Sampled;

/// One draw per plan entry (`None` for entries that do not sample), from `logits`
/// [plan.rows(), vocab] as the runner returns them.
pub fn sample_step(
    seqs: &mut [Sequence],
    plan: &StepPlan,
    logits: &[f32],
    vocab: usize,
) -> Vec<Option<Sampled>> {
    let mut rows = logits.chunks_exact(vocab);
    plan.work
        .iter()
        .map(|w| {
            if !w.sample {
                return None;
            }
            // The sampler edits its row in place (penalties, temperature, masking).
            let mut row = rows
                .next()
                .expect("one logits row per sampling entry")
                .to_vec();
            Some(seqs[w.seq].sampler.sample(&mut row))
        })
        .collect()
}
