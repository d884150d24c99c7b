//! The model runner: turns the scheduler's running sequences into one batched model step.

use super::sequence::Sequence;
use crate::engine::model::StepInput;
use crate::engine::paged::KvBlocks;
use crate::engine::{Qwen3VlModel, Result};

/// Compute tokens [computed, computed + step_tokens) of every sequence in one pass. Returns
/// logits [seqs, vocab] in sequence order: a row for each sequence whose step completes it
/// (zeros for sequences that are idle or mid-prefill).
pub fn run_step(
    model: &Qwen3VlModel,
    kv: &mut KvBlocks,
    seqs: &[Sequence],
    vocab: usize,
) -> Result<Vec<f32>> {
    let active: Vec<&Sequence> = seqs.iter().filter(|s| s.step_tokens > 0).collect();
    struct Owned {
        tokens: Vec<u32>,
        pos: [Vec<i64>; 3],
        visual_before: usize,
    }
    let owned: Vec<Owned> = active
        .iter()
        .map(|s| {
            let (a, b) = (s.computed, s.computed + s.step_tokens);
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
    let inputs: Vec<StepInput> = active
        .iter()
        .zip(&owned)
        .map(|(s, o)| StepInput {
            tokens: &o.tokens,
            start: s.computed,
            positions: [&o.pos[0], &o.pos[1], &o.pos[2]],
            blocks: &s.blocks.table,
            visual: s.prompt.features.as_deref().map(|f| (f, o.visual_before)),
            logits: s.computed + s.step_tokens == s.total_len(),
        })
        .collect();
    let rows = model.step(kv, &inputs)?;
    // Spread the rows back to one per sequence.
    let mut out = vec![0f32; seqs.len() * vocab];
    let mut r = 0;
    for (i, s) in seqs.iter().enumerate() {
        if s.step_tokens > 0 && s.computed + s.step_tokens == s.total_len() {
            out[i * vocab..(i + 1) * vocab].copy_from_slice(&rows[r * vocab..(r + 1) * vocab]);
            r += 1;
        }
    }
    Ok(out)
}
