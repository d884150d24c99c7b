//! `Qwen3VlModel`: the whole model behind three calls — encode visual inputs, prefill a prompt,
//! decode one token — over a KV cache.

use std::path::Path;

use super::config::Qwen3VlConfig;
use super::error::{EngineError, Result};
use super::kernels::bf16::Precision;
use super::kernels::linear::FastBackend;
use super::kernels::paged_attention::PagedSeq;
use super::kernels::pool::ThreadPool;
use super::kv_cache::KvCache;
use super::loader::Loader;
use super::paged::KvBlocks;
use super::position::{rope_index, PositionIds, VisionTokens};
use super::text::{Deepstack, TextDecoder};
use super::vision::{VisionOutput, VisionTower};
use super::weights::Checkpoint;

/// Which GEMM implementation the model's linears use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// oneDNN for weights large enough to benefit (when the library is present), portable otherwise.
    Auto,
    /// The portable pure-Rust path only.
    Portable,
    /// oneDNN for every weight; an error if oneDNN is not available.
    OneDnn,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub precision: Precision,
    pub backend: BackendChoice,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            precision: Precision::Bf16,
            backend: BackendChoice::Auto,
        }
    }
}

/// One prompt with its visual inputs, as the processor produces them.
#[derive(Debug, Clone, Default)]
pub struct MultimodalInput {
    pub input_ids: Vec<u32>,
    /// [Σ t·h·w, patch_dim] for all images.
    pub pixel_values: Vec<f32>,
    pub image_grid_thw: Vec<[usize; 3]>,
    pub pixel_values_videos: Vec<f32>,
    pub video_grid_thw: Vec<[usize; 3]>,
}

/// A prompt's input embeddings with the visual features injected.
pub struct PromptEmbedding {
    /// [seq, hidden].
    pub embeds: Vec<f32>,
    /// Positions holding image/video tokens, in sequence order.
    pub visual_rows: Vec<usize>,
    /// Per DeepStack level: [visual_rows.len(), hidden].
    pub deepstack: Vec<Vec<f32>>,
}

pub struct PrefillOutput {
    /// [rows, vocab]: every prompt position, or only the last one.
    pub logits: Vec<f32>,
    pub positions: PositionIds,
}

pub struct Qwen3VlModel {
    pub config: Qwen3VlConfig,
    pub precision: Precision,
    vision: VisionTower,
    text: TextDecoder,
    tokens: VisionTokens,
    pool: &'static ThreadPool,
}

impl Qwen3VlModel {
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<Self> {
        let config = Qwen3VlConfig::from_model_dir(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        let backend = match opts.backend {
            BackendChoice::Auto => {
                super::kernels::onednn_backend(super::kernels::AUTO_MIN_ELEMENTS)
            }
            BackendChoice::Portable => None,
            BackendChoice::OneDnn => Some(super::kernels::onednn_backend(0).ok_or_else(|| {
                EngineError::Kernel(format!(
                    "oneDNN requested but unavailable: {}",
                    super::kernels::onednn::OneDnn::get_or_reason()
                        .err()
                        .unwrap_or("unknown reason")
                ))
            })?),
        };
        let loader = Loader {
            ckpt: &ckpt,
            precision: opts.precision,
            backend: backend.as_deref().map(|b| b as &dyn FastBackend),
        };
        let vision = VisionTower::load(&loader, &config.vision_config, config.patch_dim())?;
        let text = TextDecoder::load(&loader, &config)?;
        let tokens = VisionTokens {
            image: config.image_token_id,
            video: config.video_token_id,
            vision_start: config.vision_start_token_id,
        };
        Ok(Qwen3VlModel {
            config,
            precision: opts.precision,
            vision,
            text,
            tokens,
            pool: ThreadPool::global(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.text.vocab
    }

    pub fn backend_name(&self) -> String {
        self.text.backend_name()
    }

    pub fn new_cache(&self) -> KvCache {
        self.text.new_cache()
    }

    /// Run the vision tower on images (or on video slices).
    pub fn encode_vision(&self, pixels: &[f32], grids: &[[usize; 3]]) -> Result<VisionOutput> {
        self.vision.forward(self.pool, pixels, grids)
    }

    /// Position ids of a prompt.
    pub fn positions(&self, input: &MultimodalInput) -> Result<PositionIds> {
        rope_index(
            &input.input_ids,
            self.tokens,
            &input.image_grid_thw,
            &input.video_grid_thw,
            self.config.vision_config.spatial_merge_size,
        )
    }

    /// Embed a prompt: token embeddings with visual tokens scattered in, plus the DeepStack
    /// features of the visual rows (images and videos interleaved in sequence order).
    pub fn embed_prompt(&self, input: &MultimodalInput) -> Result<PromptEmbedding> {
        let h = self.text.hidden;
        let ids = &input.input_ids;
        let mut x = self.text.embed(ids)?;
        let image = (!input.image_grid_thw.is_empty())
            .then(|| self.encode_vision(&input.pixel_values, &input.image_grid_thw))
            .transpose()?;
        let video = (!input.video_grid_thw.is_empty())
            .then(|| self.encode_vision(&input.pixel_values_videos, &input.video_grid_thw))
            .transpose()?;
        if image.is_none() && !input.pixel_values.is_empty() {
            return Err(EngineError::input(
                "pixel_values given without image_grid_thw",
            ));
        }
        if video.is_none() && !input.pixel_values_videos.is_empty() {
            return Err(EngineError::input(
                "pixel_values_videos given without video_grid_thw",
            ));
        }
        let levels = self.config.vision_config.deepstack_visual_indexes.len();
        let mut rows = Vec::new();
        let mut deepstack: Vec<Vec<f32>> = vec![Vec::new(); levels];
        let (mut ni, mut nv) = (0usize, 0usize);
        for (pos, &id) in ids.iter().enumerate() {
            let (out, n) = if id == self.tokens.image {
                (&image, &mut ni)
            } else if id == self.tokens.video {
                (&video, &mut nv)
            } else {
                continue;
            };
            let kind = if id == self.tokens.image {
                "image"
            } else {
                "video"
            };
            let out = out.as_ref().ok_or_else(|| {
                EngineError::input(format!("prompt has {kind} pad tokens but no {kind} inputs"))
            })?;
            if *n >= out.n_tokens {
                return Err(EngineError::input(format!(
                    "prompt has more {kind} pad tokens than the {} {kind} features",
                    out.n_tokens
                )));
            }
            x[pos * h..(pos + 1) * h].copy_from_slice(&out.embeds[*n * h..(*n + 1) * h]);
            for (l, d) in deepstack.iter_mut().enumerate() {
                d.extend_from_slice(&out.deepstack[l][*n * h..(*n + 1) * h]);
            }
            rows.push(pos);
            *n += 1;
        }
        for (out, n, kind) in [(&image, ni, "image"), (&video, nv, "video")] {
            if let Some(o) = out {
                if o.n_tokens != n {
                    return Err(EngineError::input(format!(
                        "{kind} features give {} tokens but the prompt has {n} {kind} pad tokens",
                        o.n_tokens
                    )));
                }
            }
        }
        Ok(PromptEmbedding {
            embeds: x,
            visual_rows: rows,
            deepstack,
        })
    }

    /// Prefill a prompt into an empty cache; returns logits for every position (`all_logits`)
    /// or just the last one.
    pub fn prefill(
        &self,
        cache: &mut KvCache,
        input: &MultimodalInput,
        all_logits: bool,
    ) -> Result<PrefillOutput> {
        if input.input_ids.is_empty() {
            return Err(EngineError::input("empty prompt"));
        }
        if !cache.is_empty() {
            return Err(EngineError::input("prefill needs an empty KV cache"));
        }
        let positions = self.positions(input)?;
        let PromptEmbedding {
            embeds: x,
            visual_rows: rows,
            deepstack,
        } = self.embed_prompt(input)?;
        let ds = Deepstack {
            rows: &rows,
            levels: &deepstack,
        };
        let hidden = self.text.forward(
            self.pool,
            cache,
            x,
            positions.as_refs(),
            (!rows.is_empty()).then_some(&ds),
        )?;
        let h = self.text.hidden;
        let rows_for_logits = if all_logits {
            &hidden[..]
        } else {
            &hidden[hidden.len() - h..]
        };
        Ok(PrefillOutput {
            logits: self.text.logits(self.pool, rows_for_logits)?,
            positions,
        })
    }

    /// Decode one token at the next cache position; returns its logits [vocab].
    pub fn decode(&self, cache: &mut KvCache, token: u32, rope_delta: i64) -> Result<Vec<f32>> {
        let x = self.text.embed(&[token])?;
        let p = cache.len() as i64 + rope_delta;
        let pos = [p];
        let hidden = self
            .text
            .forward(self.pool, cache, x, [&pos, &pos, &pos], None)?;
        self.text.logits(self.pool, &hidden)
    }

    /// Greedy generation of exactly `n` tokens after the prompt (no stop tokens).
    pub fn generate_greedy(
        &self,
        input: &MultimodalInput,
        n: usize,
    ) -> Result<(PrefillOutput, Vec<u32>)> {
        let mut cache = self.new_cache();
        let out = self.prefill(&mut cache, input, true)?;
        let v = self.vocab_size();
        let mut tokens = Vec::with_capacity(n);
        let mut last = out.logits[out.logits.len() - v..].to_vec();
        for i in 0..n {
            let t = argmax(&last) as u32;
            tokens.push(t);
            if i + 1 < n {
                last = self.decode(&mut cache, t, out.positions.rope_delta)?;
            }
        }
        Ok((out, tokens))
    }
}

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
    /// Features of the prompt's visual tokens and the index of the first one among `tokens`
    /// (= pad tokens before `start`).
    pub visual: Option<(&'a VisualFeatures, usize)>,
    /// Whether to return logits for the last new token.
    pub logits: bool,
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
        let levels = self.config.vision_config.deepstack_visual_indexes.len();
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
    /// mixed), reading and writing the paged cache. Returns logits [rows, vocab] for the
    /// sequences that asked for them, in batch order.
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
        let levels = self.config.vision_config.deepstack_visual_indexes.len();
        let mut rows = Vec::new();
        let mut deepstack: Vec<Vec<f32>> = vec![Vec::new(); levels];
        for (b, s) in batch.iter().zip(&seqs) {
            let Some((feat, mut vi)) = b.visual else {
                continue;
            };
            for (i, &id) in b.tokens.iter().enumerate() {
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
            if b.logits {
                let r = s.q0 + s.len - 1;
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

/// Index of the first maximum (as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in xs.iter().enumerate() {
        if v > xs[best] {
            best = i;
        }
    }
    best
}

impl MultimodalInput {
    /// Read the `forward` contract's input file: `input_ids` I64 [seq]; optional `pixel_values`
    /// F32 [Np, patch_dim] + `image_grid_thw` I64 [n, 3]; optional `pixel_values_videos` +
    /// `video_grid_thw`.
    pub fn from_tensor_file(f: &super::tensor_file::TensorFile, patch_dim: usize) -> Result<Self> {
        let (_, ids) = f
            .i64("input_ids", 1)?
            .ok_or_else(|| EngineError::input("`input_ids` (I64 [seq]) is missing"))?;
        let input_ids = ids
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| {
                    EngineError::input(format!("token id {i} is negative or too large"))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        let mut out = MultimodalInput {
            input_ids,
            ..Default::default()
        };
        for (pix, grid, kind) in [
            ("pixel_values", "image_grid_thw", "image"),
            ("pixel_values_videos", "video_grid_thw", "video"),
        ] {
            let p = f.f32(pix, 2)?;
            let g = f.i64(grid, 2)?;
            let (pixels, grids) = match (p, g) {
                (None, None) => continue,
                (Some((ps, pv)), Some((gs, gv))) => {
                    if ps[1] != patch_dim {
                        return Err(EngineError::input(format!(
                            "`{pix}` rows have {} values, expected {patch_dim}",
                            ps[1]
                        )));
                    }
                    if gs[1] != 3 {
                        return Err(EngineError::input(format!(
                            "`{grid}` must be [n, 3], got {gs:?}"
                        )));
                    }
                    let grids = gv
                        .chunks_exact(3)
                        .map(|c| {
                            let g = [c[0], c[1], c[2]];
                            if g.iter().any(|&d| d <= 0 || d > 1 << 20) {
                                Err(EngineError::input(format!(
                                    "`{grid}` entry {g:?} is out of range"
                                )))
                            } else {
                                Ok(g.map(|d| d as usize))
                            }
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (pv, grids)
                }
                _ => {
                    return Err(EngineError::input(format!(
                        "{kind} inputs need both `{pix}` and `{grid}`"
                    )))
                }
            };
            if kind == "image" {
                out.pixel_values = pixels;
                out.image_grid_thw = grids;
            } else {
                out.pixel_values_videos = pixels;
                out.video_grid_thw = grids;
            }
        }
        Ok(out)
    }
}
