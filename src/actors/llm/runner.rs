//! The model runner: turns the scheduler's running sequences into one batched model step.

use super::sequence::Sequence;
use crate::engine::model::StepInput;
use crate::engine::paged::KvBlocks;
use crate::engine::{Qwen3VlModel, Result};

/// Compute tokens [computed, total) of every sequence in one pass; logits [seqs, vocab].
pub fn run_step(model: &Qwen3VlModel, kv: &mut KvBlocks, seqs: &[Sequence]) -> Result<Vec<f32>> {
    struct Owned {
        tokens: Vec<u32>,
        pos: [Vec<i64>; 3],
        visual_before: usize,
    }
    let owned: Vec<Owned> = seqs
        .iter()
        .map(|s| {
            let (a, b) = (s.computed, s.total_len());
            let mut pos: [Vec<i64>; 3] = Default::default();
            for i in a..b {
                let p = s.position(i);
                for d in 0..3 {
                    pos[d].push(p[d]);
                }
            }
            let before = &s.prompt.ids[..a.min(s.prompt_len())];
            Owned {
                tokens: (a..b).map(|i| s.token(i)).collect(),
                pos,
                visual_before: if s.prompt.features.is_some() {
                    before.iter().filter(|&&t| model.is_visual_token(t)).count()
                } else {
                    0
                },
            }
        })
        .collect();
    let inputs: Vec<StepInput> = seqs
        .iter()
        .zip(&owned)
        .map(|(s, o)| StepInput {
            tokens: &o.tokens,
            start: s.computed,
            positions: [&o.pos[0], &o.pos[1], &o.pos[2]],
            blocks: &s.blocks.table,
            visual: s.prompt.features.as_deref().map(|f| (f, o.visual_before)),
            logits: true,
        })
        .collect();
    model.step(kv, &inputs)
}
