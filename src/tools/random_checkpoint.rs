//! Random-weight checkpoints with the real Qwen3-VL architectures (for benchmarks and demos —
//! no model hub is reachable here). Written as bf16 safetensors, streamed tensor by tensor so a
//! 2B checkpoint never sits in memory, sharded like the official ones when large.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::engine::config::{ModelKind, Qwen3VlConfig};
use crate::engine::error::{EngineError, Result};

/// Architectures of the released models (spec §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// A few-MB model with the real vocabulary (works with the real tokenizer): demos and tests.
    Tiny,
    B2,
    B4,
    B8,
    B32,
    A3b30,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tiny" => Some(Arch::Tiny),
            "2b" => Some(Arch::B2),
            "4b" => Some(Arch::B4),
            "8b" => Some(Arch::B8),
            "32b" => Some(Arch::B32),
            "30b-a3b" | "30b" => Some(Arch::A3b30),
            _ => None,
        }
    }

    /// The `config.json` of the released checkpoint, with `layers` text layers if given.
    pub fn config_json(self, layers: Option<usize>) -> serde_json::Value {
        // (hidden, layers, heads, kv, inter, tie, v_depth, v_hidden, v_inter, deepstack)
        let (h, l, nh, nkv, inter, tie, vd, vh, vi, ds): (
            usize,
            usize,
            usize,
            usize,
            usize,
            bool,
            usize,
            usize,
            usize,
            [usize; 3],
        ) = match self {
            Arch::Tiny => (128, 4, 4, 2, 256, true, 4, 64, 128, [1, 2, 3]),
            Arch::B2 => (2048, 28, 16, 8, 6144, true, 24, 1024, 4096, [5, 11, 17]),
            Arch::B4 => (2560, 36, 32, 8, 9728, true, 24, 1024, 4096, [5, 11, 17]),
            Arch::B8 => (4096, 36, 32, 8, 12288, false, 27, 1152, 4304, [8, 16, 24]),
            Arch::B32 => (5120, 64, 64, 8, 25600, false, 27, 1152, 4304, [8, 16, 24]),
            Arch::A3b30 => (2048, 48, 32, 4, 6144, false, 27, 1152, 4304, [8, 16, 24]),
        };
        let moe = self == Arch::A3b30;
        // The tiny model keeps head_dim 128 semantics small: 4 heads of 32.
        let (head_dim, section) = if self == Arch::Tiny {
            (32, [6, 5, 5])
        } else {
            (128, [24, 20, 20])
        };
        let mut text = json!({
            "model_type": if moe { "qwen3_vl_moe_text" } else { "qwen3_vl_text" },
            "vocab_size": 151936, "hidden_size": h, "intermediate_size": inter,
            "num_hidden_layers": layers.unwrap_or(l), "num_attention_heads": nh,
            "num_key_value_heads": nkv, "head_dim": head_dim, "rms_norm_eps": 1e-6,
            "rope_theta": 5000000.0, "max_position_embeddings": 262144, "hidden_act": "silu",
            "attention_bias": false, "tie_word_embeddings": tie,
            "rope_scaling": {"rope_type": "default", "mrope_section": section, "mrope_interleaved": true},
            "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "bfloat16"
        });
        if moe {
            let t = text.as_object_mut().expect("object");
            t.insert("num_experts".into(), json!(128));
            t.insert("num_experts_per_tok".into(), json!(8));
            t.insert("moe_intermediate_size".into(), json!(768));
            t.insert("norm_topk_prob".into(), json!(true));
            t.insert("decoder_sparse_step".into(), json!(1));
            t.insert("mlp_only_layers".into(), json!([]));
        }
        json!({
            "architectures": [if moe { "Qwen3VLMoeForConditionalGeneration" } else { "Qwen3VLForConditionalGeneration" }],
            "model_type": if moe { "qwen3_vl_moe" } else { "qwen3_vl" },
            "dtype": "bfloat16",
            "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653,
            "tie_word_embeddings": tie,
            "text_config": text,
            "vision_config": {
                "model_type": if moe { "qwen3_vl_moe" } else { "qwen3_vl" },
                "depth": vd, "hidden_size": vh, "intermediate_size": vi,
                "num_heads": if self == Arch::Tiny { 4 } else { 16 },
                "out_hidden_size": h, "patch_size": 16, "temporal_patch_size": 2,
                "spatial_merge_size": 2, "in_channels": 3, "num_position_embeddings": 2304,
                "hidden_act": "gelu_pytorch_tanh", "deepstack_visual_indexes": ds
            }
        })
    }
}

/// Every tensor of a checkpoint with its shape and how to fill it.
pub fn tensor_list(cfg: &Qwen3VlConfig) -> Vec<(String, Vec<usize>, Fill)> {
    let t = &cfg.text_config;
    let v = &cfg.vision_config;
    let (h, hd) = (t.hidden_size, cfg.head_dim());
    let (vh, unit) = (v.hidden_size, v.spatial_merge_size * v.spatial_merge_size);
    let mut out: Vec<(String, Vec<usize>, Fill)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, fill: Fill| out.push((name, shape, fill));
    let vp = "model.visual";
    add(
        format!("{vp}.patch_embed.proj.weight"),
        vec![
            vh,
            v.in_channels,
            v.temporal_patch_size,
            v.patch_size,
            v.patch_size,
        ],
        Fill::Weight,
    );
    add(format!("{vp}.patch_embed.proj.bias"), vec![vh], Fill::Bias);
    add(
        format!("{vp}.pos_embed.weight"),
        vec![v.num_position_embeddings, vh],
        Fill::Weight,
    );
    for i in 0..v.depth {
        let b = format!("{vp}.blocks.{i}");
        for n in ["norm1", "norm2"] {
            add(format!("{b}.{n}.weight"), vec![vh], Fill::Norm);
            add(format!("{b}.{n}.bias"), vec![vh], Fill::Bias);
        }
        for (n, o, k) in [
            ("attn.qkv", 3 * vh, vh),
            ("attn.proj", vh, vh),
            ("mlp.linear_fc1", v.intermediate_size, vh),
            ("mlp.linear_fc2", vh, v.intermediate_size),
        ] {
            add(format!("{b}.{n}.weight"), vec![o, k], Fill::Weight);
            add(format!("{b}.{n}.bias"), vec![o], Fill::Bias);
        }
    }
    let mergers = std::iter::once((format!("{vp}.merger"), vh)).chain(
        (0..v.deepstack_visual_indexes.len())
            .map(|k| (format!("{vp}.deepstack_merger_list.{k}"), vh * unit)),
    );
    for (m, norm) in mergers {
        add(format!("{m}.norm.weight"), vec![norm], Fill::Norm);
        add(format!("{m}.norm.bias"), vec![norm], Fill::Bias);
        add(
            format!("{m}.linear_fc1.weight"),
            vec![vh * unit, vh * unit],
            Fill::Weight,
        );
        add(format!("{m}.linear_fc1.bias"), vec![vh * unit], Fill::Bias);
        add(
            format!("{m}.linear_fc2.weight"),
            vec![v.out_hidden_size, vh * unit],
            Fill::Weight,
        );
        add(
            format!("{m}.linear_fc2.bias"),
            vec![v.out_hidden_size],
            Fill::Bias,
        );
    }
    let lp = "model.language_model";
    add(
        format!("{lp}.embed_tokens.weight"),
        vec![t.vocab_size, h],
        Fill::Weight,
    );
    for l in 0..t.num_hidden_layers {
        let p = format!("{lp}.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![h], Fill::Norm);
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Fill::Norm,
        );
        let (nh, nkv) = (t.num_attention_heads, t.num_key_value_heads);
        add(
            format!("{p}.self_attn.q_proj.weight"),
            vec![nh * hd, h],
            Fill::Weight,
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            vec![nkv * hd, h],
            Fill::Weight,
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            vec![nkv * hd, h],
            Fill::Weight,
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, nh * hd],
            Fill::Weight,
        );
        add(format!("{p}.self_attn.q_norm.weight"), vec![hd], Fill::Norm);
        add(format!("{p}.self_attn.k_norm.weight"), vec![hd], Fill::Norm);
        if cfg.is_moe_layer(l) {
            let (e, im) = (
                t.num_experts.unwrap_or(0),
                t.moe_intermediate_size.unwrap_or(0),
            );
            add(format!("{p}.mlp.gate.weight"), vec![e, h], Fill::Weight);
            add(
                format!("{p}.mlp.experts.gate_up_proj"),
                vec![e, h, 2 * im],
                Fill::Weight,
            );
            add(
                format!("{p}.mlp.experts.down_proj"),
                vec![e, im, h],
                Fill::Weight,
            );
        } else {
            let im = t.intermediate_size;
            add(
                format!("{p}.mlp.gate_proj.weight"),
                vec![im, h],
                Fill::Weight,
            );
            add(format!("{p}.mlp.up_proj.weight"), vec![im, h], Fill::Weight);
            add(
                format!("{p}.mlp.down_proj.weight"),
                vec![h, im],
                Fill::Weight,
            );
        }
    }
    add(format!("{lp}.norm.weight"), vec![h], Fill::Norm);
    if !cfg.tie_word_embeddings(false) {
        add("lm_head.weight".into(), vec![t.vocab_size, h], Fill::Weight);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Uniform noise with standard deviation `WEIGHT_STD`.
    Weight,
    /// 1 ± small noise.
    Norm,
    /// Small noise.
    Bias,
}

/// Large enough that a random model's logits are not flat (so greedy output varies).
const WEIGHT_STD: f32 = 0.05;
const SHARD_BYTES: usize = 4 << 30;

/// Write `config.json`, `generation_config.json` and random bf16 weights for `arch` into `out`.
pub fn write_random_checkpoint(
    arch: Arch,
    layers: Option<usize>,
    out: &Path,
    seed: u64,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|source| EngineError::Io {
        path: out.into(),
        source,
    })?;
    let cfg_json = arch.config_json(layers);
    let cfg_path = out.join("config.json");
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|source| EngineError::Io {
            path: path.into(),
            source,
        })
    };
    write(
        &cfg_path,
        serde_json::to_string_pretty(&cfg_json).expect("json"),
    )?;
    write(
        &out.join("generation_config.json"),
        serde_json::to_string_pretty(&json!({
            "bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643],
            "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.0
        }))
        .expect("json"),
    )?;
    let cfg = Qwen3VlConfig::from_file(&cfg_path)?;
    debug_assert!(cfg.model_type == ModelKind::Moe || arch != Arch::A3b30);
    let tensors = tensor_list(&cfg);
    // Greedy sharding in tensor order.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut bytes = 0usize;
    for (i, (_, shape, _)) in tensors.iter().enumerate() {
        let n = shape.iter().product::<usize>() * 2;
        if bytes + n > SHARD_BYTES && !shards.last().expect("shard").is_empty() {
            shards.push(Vec::new());
            bytes = 0;
        }
        shards.last_mut().expect("shard").push(i);
        bytes += n;
    }
    let count = shards.len();
    let mut rng = Rng::new(seed);
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    for (si, shard) in shards.iter().enumerate() {
        let name = if count == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{count:05}.safetensors", si + 1)
        };
        let path = out.join(&name);
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut offset = 0usize;
        for &i in shard {
            let (tname, shape, _) = &tensors[i];
            let n = shape.iter().product::<usize>() * 2;
            header.insert(
                tname.clone(),
                json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}),
            );
            weight_map.insert(tname.clone(), json!(name));
            offset += n;
        }
        let mut head = serde_json::to_vec(&header).expect("json");
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let file = File::create(&path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = BufWriter::with_capacity(1 << 22, file);
        let io = |e: std::io::Error| EngineError::Io {
            path: path.clone(),
            source: e,
        };
        w.write_all(&(head.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&head).map_err(io)?;
        let mut buf = Vec::with_capacity(1 << 21);
        for &i in shard {
            let (_, shape, fill) = &tensors[i];
            let mut left: usize = shape.iter().product();
            while left > 0 {
                let n = left.min(1 << 20);
                buf.clear();
                for _ in 0..n {
                    let u = rng.uniform_pm1();
                    let v = match fill {
                        Fill::Weight => u * WEIGHT_STD * 1.732_050_8,
                        Fill::Norm => 1.0 + 0.05 * u,
                        Fill::Bias => 0.02 * u,
                    };
                    buf.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes());
                }
                w.write_all(&buf).map_err(io)?;
                left -= n;
            }
        }
        w.flush().map_err(io)?;
        files.push(path.clone());
    }
    if count > 1 {
        write(
            &out.join("model.safetensors.index.json"),
            serde_json::to_string_pretty(&json!({"metadata": {}, "weight_map": weight_map}))
                .expect("json"),
        )?;
    }
    Ok(files)
}

/// xoshiro256** — fast, deterministic, good enough for random weights.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let r = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }

    /// Uniform in [-1, 1).
    fn uniform_pm1(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}
