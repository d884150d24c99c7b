//! `config.json` of Qwen3-VL checkpoints (`qwen3_vl` dense and `qwen3_vl_moe`), mirroring the
//! Hugging Face layout: a top level with nested `text_config` and `vision_config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};
use super::kernels::ops::Activation;
pub use super::rope::RopeKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    #[serde(rename = "qwen3_vl")]
    Dense,
    #[serde(rename = "qwen3_vl_moe")]
    Moe,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(default)]
    pub rope_type: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub legacy_type: Option<String>,
    /// transformers' `Qwen3VLTextRotaryEmbedding` falls back to `[24, 20, 20]` when absent.
    #[serde(default = "default_mrope_section")]
    pub mrope_section: Vec<usize>,
    /// Read for round trips only: transformers 4.57 always interleaves for Qwen3-VL, whatever
    /// this says (see `docs/config-audit.md`).
    #[serde(default = "yes")]
    pub mrope_interleaved: bool,
    /// `linear`, `yarn`, `llama3`: the context extension factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `yarn`: cos/sin scale (inferred from `factor`, `mscale`, `mscale_all_dim` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_fast: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_slow: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mscale_all_dim: Option<f64>,
    /// `yarn` (falls back to `max_position_embeddings`), `llama3` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_max_position_embeddings: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<bool>,
    /// `llama3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_freq_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_freq_factor: Option<f64>,
}

fn yes() -> bool {
    true
}
fn default_mrope_section() -> Vec<usize> {
    vec![24, 20, 20]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// transformers v5 spelling of `rope_scaling` (+ theta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_silu")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    // MoE fields (absent for dense checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_experts_per_tok: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe_intermediate_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_topk_prob: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_sparse_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_only_layers: Option<Vec<usize>>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    5_000_000.0
}
fn default_max_pos() -> usize {
    262_144
}
fn default_silu() -> String {
    "silu".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub out_hidden_size: usize,
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    #[serde(default = "default_two")]
    pub temporal_patch_size: usize,
    #[serde(default = "default_two")]
    pub spatial_merge_size: usize,
    #[serde(default = "default_three")]
    pub in_channels: usize,
    #[serde(default = "default_num_pos")]
    pub num_position_embeddings: usize,
    #[serde(default = "default_gelu_tanh")]
    pub hidden_act: String,
    pub deepstack_visual_indexes: Vec<usize>,
}

/// `ACT2FN` names we implement (transformers' `gelu_new` and `gelu_fast` are further tanh variants,
/// `quick_gelu`, `relu`, … other functions: refused by name).
fn activation_named(name: &str) -> Option<Activation> {
    match name {
        "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
        "gelu" => Some(Activation::GeluErf),
        "silu" | "swish" => Some(Activation::Silu),
        _ => None,
    }
}

impl TextConfig {
    /// The MLP activation named by `text_config.hidden_act` (SiLU in every released model).
    pub fn activation(&self) -> Option<Activation> {
        activation_named(&self.hidden_act)
    }
}

impl VisionConfig {
    /// The vision MLP activation named by `vision_config.hidden_act`.
    pub fn activation(&self) -> Option<Activation> {
        activation_named(&self.hidden_act)
    }

    /// DeepStack taps as (vision block, merger) in block order. transformers runs merger
    /// `deepstack_visual_indexes.index(block)` after each block listed (first occurrence wins),
    /// skips indexes beyond the depth, and feeds the features to the decoder in block order.
    pub fn deepstack_taps(&self) -> Vec<(usize, usize)> {
        let idx = &self.deepstack_visual_indexes;
        (0..self.depth)
            .filter_map(|b| idx.iter().position(|&i| i == b).map(|m| (b, m)))
            .collect()
    }
}

fn default_patch() -> usize {
    16
}
fn default_two() -> usize {
    2
}
fn default_three() -> usize {
    3
}
fn default_num_pos() -> usize {
    2304
}
fn default_gelu_tanh() -> String {
    "gelu_pytorch_tanh".into()
}

/// The whole `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Qwen3VlConfig {
    pub model_type: ModelKind,
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    #[serde(default = "default_image_token")]
    pub image_token_id: u32,
    #[serde(default = "default_video_token")]
    pub video_token_id: u32,
    #[serde(default = "default_vision_start")]
    pub vision_start_token_id: u32,
    #[serde(default = "default_vision_end")]
    pub vision_end_token_id: u32,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
}

fn default_image_token() -> u32 {
    151_655
}
fn default_video_token() -> u32 {
    151_656
}
fn default_vision_start() -> u32 {
    151_652
}
fn default_vision_end() -> u32 {
    151_653
}

impl Qwen3VlConfig {
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("config.json"))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let bad = |msg: String| EngineError::Config {
            path: PathBuf::from(path),
            msg,
        };
        let raw: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        match raw.get("model_type").and_then(|v| v.as_str()) {
            Some("qwen3_vl") | Some("qwen3_vl_moe") => {}
            Some(other) => {
                return Err(bad(format!(
                    "unknown model_type `{other}` (expected `qwen3_vl` or `qwen3_vl_moe`)"
                )))
            }
            None => return Err(bad("missing `model_type`".into())),
        }
        let mut cfg: Qwen3VlConfig = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        cfg.normalise_rope().map_err(bad)?;
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// transformers v5 moves `rope_scaling` + `rope_theta` into `rope_parameters`.
    fn normalise_rope(&mut self) -> std::result::Result<(), String> {
        let t = &mut self.text_config;
        if t.rope_scaling.is_none() {
            if let Some(p) = &t.rope_parameters {
                if let Some(theta) = p.get("rope_theta").and_then(|v| v.as_f64()) {
                    t.rope_theta = theta;
                }
                t.rope_scaling = Some(
                    serde_json::from_value(p.clone())
                        .map_err(|e| format!("text_config.rope_parameters: {e}"))?,
                );
            }
        }
        Ok(())
    }

    /// Rejects only what transformers 4.57.6 cannot build or run either (or builds into a model
    /// with no hidden state); every rule is listed with transformers' behaviour in
    /// `docs/config-audit.md`. Configs whose vision tower transformers builds but cannot run are
    /// loaded, and image/video inputs are refused later ([`Self::vision_defect`]).
    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let positive = [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_key_value_heads", t.num_key_value_heads),
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.head_dim", self.head_dim()),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
            (
                "vision_config.num_position_embeddings",
                v.num_position_embeddings,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !t.num_attention_heads.is_multiple_of(t.num_key_value_heads) {
            return Err(format!(
                "text_config.num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let hd = self.head_dim();
        if !hd.is_multiple_of(2) {
            return Err(format!("text_config.head_dim {hd} must be even"));
        }
        // transformers 4.57.6 reads `rope_scaling.get(...)` unconditionally (AttributeError).
        if t.rope_scaling.is_none() {
            return Err("text_config.rope_scaling is missing (needed for mrope_section)".into());
        }
        // Only entries 1 and 2 are read (and clipped to head_dim/2); fewer than 3 is an
        // IndexError in transformers.
        let section = self.mrope_section();
        if section.len() < 3 {
            return Err(format!(
                "text_config.rope_scaling.mrope_section {section:?} needs at least 3 entries"
            ));
        }
        self.rope_kind()?;
        if t.activation().is_none() {
            return Err(format!(
                "text_config.hidden_act `{}` is not supported (silu, gelu, gelu_pytorch_tanh)",
                t.hidden_act
            ));
        }
        if v.activation().is_none() {
            return Err(format!(
                "vision_config.hidden_act `{}` is not supported (gelu_pytorch_tanh, gelu, silu)",
                v.hidden_act
            ));
        }
        if self.model_type == ModelKind::Moe && t.num_experts.unwrap_or(0) > 0 {
            let e = t.num_experts.unwrap_or(0);
            let k = t.num_experts_per_tok.unwrap_or(0);
            if k == 0 || k > e || t.moe_intermediate_size.unwrap_or(0) == 0 {
                return Err(format!(
                    "text_config: MoE needs num_experts {e} >= num_experts_per_tok {k} >= 1 and moe_intermediate_size >= 1"
                ));
            }
            let mlp_only = t.mlp_only_layers.as_deref().unwrap_or(&[]);
            let sparse_candidate = (0..t.num_hidden_layers).any(|l| !mlp_only.contains(&l));
            if t.decoder_sparse_step == Some(0) && sparse_candidate {
                return Err("text_config.decoder_sparse_step must be positive".into());
            }
        }
        Ok(())
    }

    /// Why this config's vision tower cannot run, if it cannot. transformers 4.57.6 builds such
    /// models and runs text prompts, but raises on every image or video forward; we do the same.
    pub fn vision_defect(&self) -> Option<String> {
        let v = &self.vision_config;
        if !v.hidden_size.is_multiple_of(v.num_heads)
            || !(v.hidden_size / v.num_heads).is_multiple_of(4)
        {
            return Some(format!(
                "vision_config.hidden_size {} / num_heads {} must give a head dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        if v.out_hidden_size != self.text_config.hidden_size {
            return Some(format!(
                "vision_config.out_hidden_size {} != text_config.hidden_size {}",
                v.out_hidden_size, self.text_config.hidden_size
            ));
        }
        None
    }

    /// `rope_scaling.rope_type`, `default` when absent; the legacy `type` key is not read by
    /// transformers' Qwen3-VL rotary embedding either.
    pub fn rope_type(&self) -> &str {
        self.text_config
            .rope_scaling
            .as_ref()
            .and_then(|r| r.rope_type.as_deref())
            .unwrap_or("default")
    }

    /// The RoPE frequency scheme (`rope_type` and its parameters), checked as transformers
    /// reads them: a key it indexes without a default is required here too.
    pub fn rope_kind(&self) -> std::result::Result<RopeKind, String> {
        let r = self.text_config.rope_scaling.as_ref();
        let ty = self.rope_type().to_string();
        let positive = |name: &str, v: Option<f64>| -> std::result::Result<f64, String> {
            match v {
                Some(x) if x.is_finite() && x > 0.0 => Ok(x),
                other => Err(format!(
                    "text_config.rope_scaling.{name} {other:?} must be a positive number for rope_type {ty}"
                )),
            }
        };
        let get = |f: fn(&RopeScaling) -> Option<f64>| r.and_then(f);
        Ok(match ty.as_str() {
            "default" => RopeKind::Default,
            "linear" => RopeKind::Linear {
                factor: positive("factor", get(|r| r.factor))?,
            },
            "yarn" => RopeKind::Yarn {
                factor: positive("factor", get(|r| r.factor))?,
                attention_factor: get(|r| r.attention_factor),
                mscale: get(|r| r.mscale),
                mscale_all_dim: get(|r| r.mscale_all_dim),
                // `get(...) or default`: a 0 falls back as well.
                beta_fast: get(|r| r.beta_fast).filter(|&b| b != 0.0).unwrap_or(32.0),
                beta_slow: get(|r| r.beta_slow).filter(|&b| b != 0.0).unwrap_or(1.0),
                original_max_position_embeddings: positive(
                    "original_max_position_embeddings",
                    get(|r| r.original_max_position_embeddings)
                        .filter(|&m| m != 0.0)
                        .or(Some(self.text_config.max_position_embeddings as f64)),
                )?,
                truncate: r.and_then(|r| r.truncate).unwrap_or(true),
            },
            "llama3" => {
                let low = positive("low_freq_factor", get(|r| r.low_freq_factor))?;
                let high = positive("high_freq_factor", get(|r| r.high_freq_factor))?;
                if low == high {
                    return Err("text_config.rope_scaling: llama3 needs low_freq_factor != high_freq_factor (transformers divides by their difference)".into());
                }
                RopeKind::Llama3 {
                    factor: positive("factor", get(|r| r.factor))?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: positive(
                        "original_max_position_embeddings",
                        get(|r| r.original_max_position_embeddings),
                    )?,
                }
            }
            // `dynamic` recomputes the frequencies from the running sequence length at every
            // forward (already-cached keys keep the old ones), `longrope` needs per-frequency
            // factor lists: neither is implemented, so they are refused by name.
            other => {
                return Err(format!(
                    "text_config.rope_scaling.rope_type `{other}` is not supported (default, linear, yarn and llama3 are)"
                ))
            }
        })
    }

    /// Absent `head_dim`: the dense `Qwen3VLTextConfig` class default is 128, while
    /// `Qwen3VLMoeTextConfig` uses hidden_size / num_attention_heads.
    pub fn head_dim(&self) -> usize {
        let t = &self.text_config;
        t.head_dim.unwrap_or(match self.model_type {
            ModelKind::Dense => 128,
            ModelKind::Moe => t
                .hidden_size
                .checked_div(t.num_attention_heads)
                .unwrap_or(0),
        })
    }

    pub fn mrope_section(&self) -> Vec<usize> {
        match &self.text_config.rope_scaling {
            Some(r) => r.mrope_section.clone(),
            // Unreachable after validate (a config without rope_scaling is rejected).
            None => default_mrope_section(),
        }
    }

    /// Whether the LM head is the embedding matrix. transformers ties on
    /// `text_config.tie_word_embeddings` alone (class default false), so a top-level `true` with
    /// an `lm_head.weight` on disk is untied. A top-level `true` without `text_config`'s value and
    /// without `lm_head.weight` would leave transformers with a randomly initialised head; the
    /// only meaningful reading of that checkpoint is tied.
    pub fn tie_word_embeddings(&self, has_lm_head: bool) -> bool {
        match self.text_config.tie_word_embeddings {
            Some(tie) => tie,
            None => self.tie_word_embeddings.unwrap_or(false) && !has_lm_head,
        }
    }

    /// Whether decoder layer `layer` uses the sparse MoE block.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        if self.model_type != ModelKind::Moe {
            return false;
        }
        let t = &self.text_config;
        // transformers: `num_experts > 0 and (layer + 1) % decoder_sparse_step == 0`, unless the
        // layer is in `mlp_only_layers` (step 0 with a candidate layer is rejected in validate).
        let step = t.decoder_sparse_step.unwrap_or(1).max(1);
        let mlp_only = t.mlp_only_layers.as_deref().unwrap_or(&[]);
        t.num_experts.unwrap_or(0) > 0
            && !mlp_only.contains(&layer)
            && (layer + 1).is_multiple_of(step)
    }

    /// Number of pixel values per patch row: C · T · P · P.
    pub fn patch_dim(&self) -> usize {
        let v = &self.vision_config;
        v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size
    }
}
