//! The model runner: executes a [`StepPlan`] over the running sequences as one batched model
//! step. It reads the sequences and writes only the KV cache. Draft tokens follow their
//! sequence's known tokens at decode positions (cache index + rope delta on all three axes).

use super::plan::StepPlan;
use super::sequence::Sequence;
use crate::engine::model::{StepInput, VisualSpan};
use crate::engine::paged::KvBlocks;
use crate::engine::{Qwen3VlModel, Result};

/// Compute the planned tokens (and drafts) of every planned sequence in one pass. Returns the
/// logits rows [plan.rows(), vocab]: for each entry that samples, the row of its last known
/// token and one per draft token, in plan order.
pub fn run_step(
    model: &Qwen3VlModel,
    kv: &mut KvBlocks,
    seqs: &[Sequence],
    plan: &StepPlan,
) -> Result<Vec<f32>> {
    struct Owned {
        tokens: Vec<u32>,
        pos: [Vec<i64>; 3],
        visual_before: usize,
    }
    let owned: Vec<Owned> = plan
        .work
        .iter()
        .map(|w| {
            let s = &seqs[w.seq];
            let (a, b) = (w.start, w.start + w.len);
            let mut pos: [Vec<i64>; 3] = Default::default();
            for i in a..b + w.draft.len() {
                let p = s.position(i);
                for d in 0..3 {
                    pos[d].push(p[d]);
                }
            }
            let before = &s.prompt.ids[..a.min(s.prompt_len())];
            Owned {
                tokens: (a..b)
                    .map(|i| s.token(i))
                    .chain(w.draft.iter().copied())
                    .collect(),
                pos,
                visual_before: if s.prompt.features.is_some() {
                    before.iter().filter(|&&t| model.is_visual_token(t)).count()
                } else {
                    0
                },
            }
        })
        .collect();
    let inputs: Vec<StepInput> = plan
        .work
        .iter()
        .zip(&owned)
        .map(|(w, o)| {
            let s = &seqs[w.seq];
            StepInput {
                tokens: &o.tokens,
                start: w.start,
                positions: [&o.pos[0], &o.pos[1], &o.pos[2]],
                blocks: &s.blocks.table,
                visual: s.prompt.features.as_deref().map(|features| VisualSpan {
                    features,
                    first: o.visual_before,
                    prompt_rows: s.prompt_len().saturating_sub(w.start),
                }),
                logits: if w.sample { 1 + w.draft.len() } else { 0 },
            }
        })
        .collect();
    model.step(kv, &inputs)
}
