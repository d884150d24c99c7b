//! `config.json` of Qwen3-VL checkpoints (`qwen3_vl` dense and `qwen3_vl_moe`), mirroring the
//! Hugging Face layout: a top level with nested `text_config` and `vision_config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{EngineError, Result};

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
    pub mrope_section: Vec<usize>,
    #[serde(default = "yes")]
    pub mrope_interleaved: bool,
}

fn yes() -> bool {
    true
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

    fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let positive = [
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.num_key_value_heads", t.num_key_value_heads),
            ("text_config.vocab_size", t.vocab_size),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if !t.num_attention_heads.is_multiple_of(t.num_key_value_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads, t.num_key_value_heads
            ));
        }
        let hd = self.head_dim();
        if !hd.is_multiple_of(2) {
            return Err(format!("head_dim {hd} must be even"));
        }
        let section = self.mrope_section();
        if section.len() != 3 || section.iter().sum::<usize>() != hd / 2 {
            return Err(format!(
                "rope_scaling.mrope_section {section:?} must have 3 entries summing to head_dim/2 = {}",
                hd / 2
            ));
        }
        if section[1] * 3 > hd / 2 || section[2] * 3 > hd / 2 {
            return Err(format!(
                "mrope_section {section:?} does not fit the interleaved layout for head_dim {hd}"
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_heads)
            || !(v.hidden_size / v.num_heads).is_multiple_of(4)
        {
            return Err(format!(
                "vision hidden_size {} / num_heads {} must give a head dim divisible by 4",
                v.hidden_size, v.num_heads
            ));
        }
        let side = (v.num_position_embeddings as f64).sqrt() as usize;
        if side * side != v.num_position_embeddings {
            return Err(format!(
                "vision num_position_embeddings {} is not a square",
                v.num_position_embeddings
            ));
        }
        if let Some(&bad) = v.deepstack_visual_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(format!(
                "deepstack_visual_indexes contains {bad} but vision depth is {}",
                v.depth
            ));
        }
        if v.out_hidden_size != t.hidden_size {
            return Err(format!(
                "vision out_hidden_size {} != text hidden_size {}",
                v.out_hidden_size, t.hidden_size
            ));
        }
        if self.model_type == ModelKind::Moe {
            let e = t.num_experts.unwrap_or(0);
            let k = t.num_experts_per_tok.unwrap_or(0);
            if e == 0 || k == 0 || k > e || t.moe_intermediate_size.unwrap_or(0) == 0 {
                return Err("MoE config needs num_experts ≥ num_experts_per_tok ≥ 1 and moe_intermediate_size".into());
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        let t = &self.text_config;
        t.head_dim.unwrap_or(t.hidden_size / t.num_attention_heads)
    }

    pub fn mrope_section(&self) -> Vec<usize> {
        match &self.text_config.rope_scaling {
            Some(r) => r.mrope_section.clone(),
            // Without rope_scaling every slot is temporal: plain 1-D RoPE.
            None => vec![self.head_dim() / 2, 0, 0],
        }
    }

    pub fn mrope_interleaved(&self) -> bool {
        self.text_config
            .rope_scaling
            .as_ref()
            .map(|r| r.mrope_interleaved)
            .unwrap_or(true)
    }

    /// `tie_word_embeddings` is read from `text_config` first (that is what transformers ties on),
    /// then the top level.
    pub fn tie_word_embeddings(&self) -> bool {
        self.text_config
            .tie_word_embeddings
            .or(self.tie_word_embeddings)
            .unwrap_or(false)
    }

    /// Whether decoder layer `layer` uses the sparse MoE block.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        if self.model_type != ModelKind::Moe {
            return false;
        }
        let t = &self.text_config;
        let step = t.decoder_sparse_step.unwrap_or(1).max(1);
        let mlp_only = t.mlp_only_layers.as_deref().unwrap_or(&[]);
        !mlp_only.contains(&layer) && (layer + 1).is_multiple_of(step)
    }

    /// Number of pixel values per patch row: C · T · P · P.
    pub fn patch_dim(&self) -> usize {
        let v = &self.vision_config;
        v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size
    }
}
