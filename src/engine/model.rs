//! `Qwen3VlModel`: the whole model behind three calls — encode visual inputs, prefill a prompt,
//! decode one token — over a KV cache.

use std::path::Path;

use super::config::Qwen3VlConfig;
use super::error::{EngineError, Result};
use super::kernels::bf16::Precision;
use super::kernels::linear::FastBackend;
use super::kernels::runtime::caps::CpuCaps;
use super::kernels::runtime::env::PlanEnv;
use super::kernels::runtime::plan::{self, KernelPlan, PlanRequest, Resolved};
use super::kernels::runtime::pool::ThreadPool;
use super::kv_cache::KvCache;
use super::loader::Loader;
use super::position::{rope_index, PositionIds, VisionTokens};
use super::text::{Deepstack, TextDecoder};
use super::vision::{VisionOutput, VisionTower};
use super::weights::Checkpoint;

mod step;

pub use step::{StepInput, VisualFeatures, VisualSpan};

pub use super::kernels::runtime::plan::BackendChoice;

/// Weight quantization applied while loading a float checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// Keep the checkpoint's float weights (a msModelSlim checkpoint still loads quantized).
    #[default]
    None,
    /// Text decoder linears (attention, MLP or experts, LM head) to int8 per output channel
    /// with int8 per-token dynamic activations; the vision tower and the router stay float.
    W8A8,
    /// [`Quantization::W8A8`] plus the vision blocks' linears (the patch embedding, mergers and
    /// DeepStack mergers stay float): faster images and video at a small extra error.
    W8A8Vision,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub precision: Precision,
    pub backend: BackendChoice,
    pub quantization: Quantization,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            precision: Precision::Bf16,
            backend: BackendChoice::Auto,
            quantization: Quantization::None,
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
    plan: Resolved,
}

impl Qwen3VlModel {
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<Self> {
        let config = Qwen3VlConfig::from_model_dir(dir)?;
        let ckpt = std::sync::Arc::new(Checkpoint::open(dir)?);
        let quant = super::quant::QuantDescription::load(dir)?;
        // The model's linears follow its own plan (the process plan with this load's backend);
        // every other kernel follows the plan in force when it runs.
        let process = plan::process();
        let request = PlanRequest {
            backend: opts.backend,
            threads: Some(process.plan.threads),
            ..Default::default()
        };
        let plan = KernelPlan::resolve(CpuCaps::detect(), &request, PlanEnv::process())?;
        let backend = super::kernels::gemm::backend_for(&plan.plan);
        let loader = Loader {
            ckpt: &ckpt,
            precision: opts.precision,
            backend: backend.as_deref().map(|b| b as &dyn FastBackend),
            quantize_text: opts.quantization != Quantization::None,
            quantize_vision: opts.quantization == Quantization::W8A8Vision,
            quant: quant.as_ref(),
        };
        let vision = VisionTower::load(&loader, &config.vision_config, config.patch_dim())?;
        let text = TextDecoder::load(&loader, &config, ckpt.clone())?;
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
            plan,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.text.vocab
    }

    pub fn backend_name(&self) -> String {
        self.text.backend_name()
    }

    /// The kernel plan the model was loaded with, with the reason for each choice.
    pub fn plan(&self) -> &Resolved {
        &self.plan
    }

    pub fn new_cache(&self) -> KvCache {
        self.text.new_cache()
    }

    /// Run the vision tower on images (or on video slices).
    pub fn encode_vision(&self, pixels: &[f32], grids: &[[usize; 3]]) -> Result<VisionOutput> {
        // A config transformers loads but cannot run images through (see `vision_defect`).
        if let Some(why) = self.config.vision_defect() {
            return Err(EngineError::input(format!(
                "this checkpoint cannot take images or videos: {why}"
            )));
        }
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
        let levels = self.config.vision_config.deepstack_taps().len();
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

    /// Decode one token at the next cache position; returns its logits `[vocab]`.
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
    /// Read the `forward` contract's input file: `input_ids` I64 `[seq]`; optional `pixel_values`
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

impl From<crate::prompt::ProcessedInputs> for MultimodalInput {
    fn from(p: crate::prompt::ProcessedInputs) -> Self {
        let grids = |g: Vec<[u32; 3]>| g.into_iter().map(|g| g.map(|d| d as usize)).collect();
        MultimodalInput {
            input_ids: p.input_ids,
            pixel_values: p.pixel_values,
            image_grid_thw: grids(p.image_grid_thw),
            pixel_values_videos: p.pixel_values_videos,
            video_grid_thw: grids(p.video_grid_thw),
        }
    }
}
