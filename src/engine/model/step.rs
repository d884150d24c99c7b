//! The serving engine's entry points into the model: per-item vision encoding (batched across
//! requests), visual-feature assembly, and one batched forward step over a paged KV cache.

use super::Qwen3VlModel;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::attention::paged::PagedSeq;
use crate::engine::paged::KvBlocks;
use crate::engine::text::Deepstack;
use crate::engine::vision::VisionOutput;

/// Visual features of one prompt: one row per image/video pad token, in sequence order.
#[derive(Debug, Clone, Default)]
pub struct VisualFeatures {
    /// [n_tokens, hidden].
    pub embeds: Vec<f32>,
    /// Per DeepStack level: [n_tokens, hidden].
    pub deepstack: Vec<Vec<f32>>,
    pub n_tokens: usize,
}

/// The new tokens of one sequence in a batched paged step.
pub struct StepInput<'a> {
    /// Token ids at cache indices start..start+len.
    pub tokens: &'a [u32],
    /// Tokens already in the cache.
    pub start: usize,
    /// (t, h, w) positions of the new tokens.
    pub positions: [&'a [i64]; 3],
    /// The sequence's cache blocks (covering start+len tokens).
    pub blocks: &'a [u32],
    /// The prompt's visual features, for sequences that have them.
    pub visual: Option<VisualSpan<'a>>,
    /// Logits are returned for this many of the last new tokens: 0 for none, 1 for the last
    /// (a prefill or a plain decode), 1 + k when the last k tokens are a draft being verified.
    pub logits: usize,
}

/// Where a sequence's visual features go among its new tokens.
#[derive(Clone, Copy)]
pub struct VisualSpan<'a> {
    pub features: &'a VisualFeatures,
    /// Index of the first feature the new tokens take (= placeholders in the prompt before
    /// `start`).
    pub first: usize,
    /// How many of the new tokens are prompt tokens. Only placeholders among those take
    /// features: a generated or drafted token that happens to be a pad id embeds as an ordinary
    /// token, as in transformers, where pixel values reach the prefill only.
    pub prompt_rows: usize,
}

impl Qwen3VlModel {
    /// Merged visual tokens an image/video grid yields.
    pub fn visual_tokens_for(&self, grid: [usize; 3]) -> usize {
        self.vision.tokens_for(grid)
    }

    /// Encode several visual items (images or video slices, possibly of different requests) in
    /// one tower pass and split the result per item.
    pub fn encode_items(&self, items: &[(&[f32], [usize; 3])]) -> Result<Vec<VisionOutput>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pixels = Vec::with_capacity(items.iter().map(|i| i.0.len()).sum());
        let mut grids = Vec::with_capacity(items.len());
        for (p, g) in items {
            pixels.extend_from_slice(p);
            grids.push(*g);
        }
        let out = self.encode_vision(&pixels, &grids)?;
        let h = self.text.hidden;
        let mut res = Vec::with_capacity(items.len());
        let mut at = 0;
        for (_, g) in items {
            let n = self.vision.tokens_for(*g);
            res.push(VisionOutput {
                embeds: out.embeds[at * h..(at + n) * h].to_vec(),
                deepstack: out
                    .deepstack
                    .iter()
                    .map(|d| d[at * h..(at + n) * h].to_vec())
                    .collect(),
                n_tokens: n,
            });
            at += n;
        }
        Ok(res)
    }

    /// Interleave per-item vision outputs (images in order, videos in order) into the prompt's
    /// visual rows, checking that the pad-token counts match.
    pub fn visual_features(
        &self,
        ids: &[u32],
        images: &[VisionOutput],
        videos: &[VisionOutput],
    ) -> Result<VisualFeatures> {
        let h = self.text.hidden;
        let levels = self.config.vision_config.deepstack_taps().len();
        let n_img: usize = images.iter().map(|o| o.n_tokens).sum();
        let n_vid: usize = videos.iter().map(|o| o.n_tokens).sum();
        let pads_img = ids.iter().filter(|&&t| t == self.tokens.image).count();
        let pads_vid = ids.iter().filter(|&&t| t == self.tokens.video).count();
        if pads_img != n_img || pads_vid != n_vid {
            return Err(EngineError::input(format!(
                "prompt has {pads_img} image and {pads_vid} video pad tokens but the visual inputs give {n_img} and {n_vid} tokens"
            )));
        }
        let mut out = VisualFeatures {
            embeds: Vec::with_capacity((n_img + n_vid) * h),
            deepstack: vec![Vec::with_capacity((n_img + n_vid) * h); levels],
            n_tokens: n_img + n_vid,
        };
        // Cursors: (item, row inside item) for images and videos.
        let (mut ci, mut cv) = ((0usize, 0usize), (0usize, 0usize));
        for &id in ids {
            let (list, cur) = if id == self.tokens.image {
                (images, &mut ci)
            } else if id == self.tokens.video {
                (videos, &mut cv)
            } else {
                continue;
            };
            while list[cur.0].n_tokens == cur.1 {
                *cur = (cur.0 + 1, 0);
            }
            let o = &list[cur.0];
            let r = cur.1;
            out.embeds.extend_from_slice(&o.embeds[r * h..(r + 1) * h]);
            for (d, src) in out.deepstack.iter_mut().zip(&o.deepstack) {
                d.extend_from_slice(&src[r * h..(r + 1) * h]);
            }
            cur.1 += 1;
        }
        Ok(out)
    }

    pub fn is_visual_token(&self, id: u32) -> bool {
        id == self.tokens.image || id == self.tokens.video
    }

    pub fn num_layers(&self) -> usize {
        self.text.num_layers()
    }

    pub fn kv_dim(&self) -> usize {
        self.text.kv_dim()
    }

    /// One batched forward pass over the new tokens of several sequences (prefills and decodes
    /// mixed), reading and writing the paged cache. Returns logits [rows, vocab]: each
    /// sequence's `logits` last rows, in batch order.
    pub fn step(&self, kv: &mut KvBlocks, batch: &[StepInput]) -> Result<Vec<f32>> {
        let h = self.text.hidden;
        let total: usize = batch.iter().map(|b| b.tokens.len()).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(total);
        let mut pos: [Vec<i64>; 3] = [
            Vec::with_capacity(total),
            Vec::with_capacity(total),
            Vec::with_capacity(total),
        ];
        let mut seqs = Vec::with_capacity(batch.len());
        for b in batch {
            if b.positions.iter().any(|p| p.len() != b.tokens.len()) || b.tokens.is_empty() {
                return Err(EngineError::input(
                    "step input: positions must match the (non-empty) new tokens",
                ));
            }
            if b.logits > b.tokens.len() {
                return Err(EngineError::input(
                    "step input: more logits rows asked than new tokens",
                ));
            }
            seqs.push(PagedSeq {
                q0: ids.len(),
                len: b.tokens.len(),
                start: b.start,
                blocks: b.blocks,
            });
            ids.extend_from_slice(b.tokens);
            for (d, src) in pos.iter_mut().zip(b.positions) {
                d.extend_from_slice(src);
            }
        }
        let mut x = self.text.embed(&ids)?;
        let levels = self.config.vision_config.deepstack_taps().len();
        let mut rows = Vec::new();
        let mut deepstack: Vec<Vec<f32>> = vec![Vec::new(); levels];
        for (b, s) in batch.iter().zip(&seqs) {
            let Some(VisualSpan {
                features: feat,
                first: mut vi,
                prompt_rows,
            }) = b.visual
            else {
                continue;
            };
            for (i, &id) in b.tokens.iter().enumerate().take(prompt_rows) {
                if !self.is_visual_token(id) {
                    continue;
                }
                if vi >= feat.n_tokens {
                    return Err(EngineError::input(
                        "more visual pad tokens than visual features",
                    ));
                }
                let r = s.q0 + i;
                x[r * h..(r + 1) * h].copy_from_slice(&feat.embeds[vi * h..(vi + 1) * h]);
                for (d, src) in deepstack.iter_mut().zip(&feat.deepstack) {
                    d.extend_from_slice(&src[vi * h..(vi + 1) * h]);
                }
                rows.push(r);
                vi += 1;
            }
        }
        let ds = Deepstack {
            rows: &rows,
            levels: &deepstack,
        };
        let pos_refs = [&pos[0][..], &pos[1][..], &pos[2][..]];
        let hidden = self.text.forward_paged(
            self.pool,
            kv,
            x,
            pos_refs,
            &seqs,
            (!rows.is_empty()).then_some(&ds),
        )?;
        let mut last = Vec::new();
        for (b, s) in batch.iter().zip(&seqs) {
            for r in s.q0 + s.len - b.logits..s.q0 + s.len {
                last.extend_from_slice(&hidden[r * h..(r + 1) * h]);
            }
        }
        if last.is_empty() {
            return Ok(Vec::new());
        }
        self.text.logits(self.pool, &last)
    }

    /// A paged KV store sized for this model.
    pub fn new_paged_cache(&self, block_size: usize, n_blocks: usize) -> KvBlocks {
        KvBlocks::new(
            self.text.num_layers(),
            self.text.kv_dim(),
            block_size,
            n_blocks,
            self.precision,
        )
    }
}
