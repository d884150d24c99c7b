//! `qwen3vl quantize`: writes a float Qwen3-VL checkpoint as a msModelSlim-format W8A8_DYNAMIC
//! folder — the layout MindIE users already have, so one loader path serves both.
//!
//! Quantized (int8 per output channel, `weight_scale` `[N,1]`, zero `weight_offset`, per-token
//! activations at run time): every text-decoder Linear — attention, dense MLP, MoE experts
//! (unstacked into msModelSlim's per-expert 2-D names) — and the LM head (written as
//! `lm_head.weight` even for a tied model; the embedding stays float). Everything else (vision
//! tower, norms, router, embedding) is copied byte for byte and tagged FLOAT.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::engine::config::Qwen3VlConfig;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::int8::quantize_row;
use crate::engine::weights::Checkpoint;

const SHARD_BYTES: usize = 4 << 30;
const DYNAMIC: &str = "W8A8_DYNAMIC";

/// Where the float values of one quantized weight come from.
#[derive(Clone, Debug)]
enum Source {
    /// A 2-D [out, in] tensor.
    Matrix(String),
    /// Expert `e` of a fused (E, in, out) tensor, columns [c0, c0 + n) transposed to [n, in].
    FusedExpert { tensor: String, e: usize, c0: usize },
}

#[derive(Clone, Debug)]
enum Item {
    Copy(String),
    Weight(Source),
    Scale,
    Offset,
}

struct Planned {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    item: Item,
    tag: &'static str,
}

/// What was written.
#[derive(Debug)]
pub struct QuantizeReport {
    pub quantized_linears: usize,
    pub float_tensors: usize,
    pub bytes: usize,
    pub files: Vec<PathBuf>,
}

/// Quantizes `src` into the new folder `dst` (created; must not hold a checkpoint already).
pub fn quantize_checkpoint(src: &Path, dst: &Path) -> Result<QuantizeReport> {
    let cfg = Qwen3VlConfig::from_model_dir(src)?;
    let ckpt = Checkpoint::open(src)?;
    if crate::engine::quant::QuantDescription::load(src)?.is_some() {
        return Err(EngineError::Quantization {
            dir: src.to_path_buf(),
            msg: "the checkpoint is already quantized".into(),
        });
    }
    let plan = plan(&cfg, &ckpt)?;
    std::fs::create_dir_all(dst).map_err(|source| EngineError::Io {
        path: dst.to_path_buf(),
        source,
    })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { path, source }
    };
    // Shards in plan order; each tensor is produced once, right when it is written.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut bytes = 0;
    for (i, p) in plan.iter().enumerate() {
        let n = nbytes(p);
        if bytes + n > SHARD_BYTES && !shards.last().expect("shard").is_empty() {
            shards.push(Vec::new());
            bytes = 0;
        }
        shards.last_mut().expect("shard").push(i);
        bytes += n;
    }
    let count = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut files = Vec::new();
    let mut scales: Vec<f32> = Vec::new();
    let mut fused: Option<(String, Vec<f32>)> = None;
    let mut total = 0;
    for (si, shard) in shards.iter().enumerate() {
        let fname = if count == 1 {
            "quant_model_weights.safetensors".to_string()
        } else {
            format!(
                "quant_model_weights-{:05}-of-{count:05}.safetensors",
                si + 1
            )
        };
        let path = dst.join(&fname);
        let mut header = serde_json::Map::new();
        let mut off = 0;
        for &i in shard {
            let p = &plan[i];
            let n = nbytes(p);
            header.insert(
                p.name.clone(),
                json!({"dtype": p.dtype, "shape": p.shape, "data_offsets": [off, off + n]}),
            );
            weight_map.insert(p.name.clone(), fname.clone());
            off += n;
        }
        let mut h = serde_json::to_vec(&header).expect("json");
        while !h.len().is_multiple_of(8) {
            h.push(b' ');
        }
        let mut w = BufWriter::with_capacity(1 << 22, File::create(&path).map_err(io(&path))?);
        w.write_all(&(h.len() as u64).to_le_bytes())
            .map_err(io(&path))?;
        w.write_all(&h).map_err(io(&path))?;
        for &i in shard {
            let p = &plan[i];
            let data = produce(&ckpt, p, &mut scales, &mut fused)?;
            debug_assert_eq!(data.len(), nbytes(p), "{}", p.name);
            w.write_all(&data).map_err(io(&path))?;
        }
        w.flush().map_err(io(&path))?;
        total += 8 + h.len() + off;
        files.push(path);
    }
    if count > 1 {
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = dst.join("quant_model_weights.safetensors.index.json");
        std::fs::write(&path, serde_json::to_string_pretty(&index).expect("json"))
            .map_err(io(&path))?;
    }
    let mut desc = serde_json::Map::new();
    desc.insert("version".into(), json!("1.0.0"));
    desc.insert("model_quant_type".into(), json!(DYNAMIC));
    desc.insert("group_size".into(), json!(0));
    desc.insert("metadata".into(), json!({}));
    desc.insert("optional".into(), json!({}));
    for p in &plan {
        desc.insert(p.name.clone(), json!(p.tag));
    }
    let path = dst.join("quant_model_description.json");
    std::fs::write(&path, serde_json::to_string_pretty(&desc).expect("json")).map_err(io(&path))?;
    copy_side_files(src, dst)?;
    Ok(QuantizeReport {
        quantized_linears: plan
            .iter()
            .filter(|p| matches!(p.item, Item::Weight(_)))
            .count(),
        float_tensors: plan
            .iter()
            .filter(|p| matches!(p.item, Item::Copy(_)))
            .count(),
        bytes: total,
        files,
    })
}

fn nbytes(p: &Planned) -> usize {
    let elem = match p.dtype {
        "I8" => 1,
        "BF16" | "F16" => 2,
        "I64" | "F64" => 8,
        _ => 4,
    };
    elem * p.shape.iter().product::<usize>()
}

/// The list of output tensors: quantized text linears (weight, scale, offset) and float copies.
fn plan(cfg: &Qwen3VlConfig, ckpt: &Checkpoint) -> Result<Vec<Planned>> {
    let t = &cfg.text_config;
    let (h, hd) = (t.hidden_size, cfg.head_dim());
    let (nh, nkv) = (t.num_attention_heads, t.num_key_value_heads);
    let mut out = Vec::new();
    let mut consumed = std::collections::HashSet::new();
    let push_linear = |out: &mut Vec<Planned>, prefix: String, n: usize, k: usize, src| {
        let w = Planned {
            name: format!("{prefix}.weight"),
            dtype: "I8",
            shape: vec![n, k],
            item: Item::Weight(src),
            tag: DYNAMIC,
        };
        out.push(w);
        for (suffix, item) in [
            ("weight_scale", Item::Scale),
            ("weight_offset", Item::Offset),
        ] {
            out.push(Planned {
                name: format!("{prefix}.{suffix}"),
                dtype: "F32",
                shape: vec![n, 1],
                item,
                tag: DYNAMIC,
            });
        }
    };
    let canonical = |name: &str| -> Result<String> { Ok(ckpt.get(name)?.name.to_string()) };
    let pre = "model.language_model";
    for i in 0..t.num_hidden_layers {
        let p = format!("{pre}.layers.{i}");
        let mut dense = vec![
            (format!("{p}.self_attn.q_proj"), nh * hd, h),
            (format!("{p}.self_attn.k_proj"), nkv * hd, h),
            (format!("{p}.self_attn.v_proj"), nkv * hd, h),
            (format!("{p}.self_attn.o_proj"), h, nh * hd),
        ];
        if cfg.is_moe_layer(i) {
            let (e_count, im) = (
                t.num_experts.unwrap_or(0),
                t.moe_intermediate_size.unwrap_or(0),
            );
            let gu = canonical(&format!("{p}.mlp.experts.gate_up_proj"))?;
            let dn = canonical(&format!("{p}.mlp.experts.down_proj"))?;
            ckpt.get_shaped(&gu, &[e_count, h, 2 * im])?;
            ckpt.get_shaped(&dn, &[e_count, im, h])?;
            for e in 0..e_count {
                let ep = format!("{p}.mlp.experts.{e}");
                for (name, c0) in [("gate_proj", 0), ("up_proj", im)] {
                    let src = Source::FusedExpert {
                        tensor: gu.clone(),
                        e,
                        c0,
                    };
                    push_linear(&mut out, format!("{ep}.{name}"), im, h, src);
                }
                let src = Source::FusedExpert {
                    tensor: dn.clone(),
                    e,
                    c0: 0,
                };
                push_linear(&mut out, format!("{ep}.down_proj"), h, im, src);
            }
            consumed.insert(gu);
            consumed.insert(dn);
        } else {
            let im = t.intermediate_size;
            dense.push((format!("{p}.mlp.gate_proj"), im, h));
            dense.push((format!("{p}.mlp.up_proj"), im, h));
            dense.push((format!("{p}.mlp.down_proj"), h, im));
        }
        for (prefix, n, k) in dense {
            let w = canonical(&format!("{prefix}.weight"))?;
            ckpt.get_shaped(&w, &[n, k])?;
            if ckpt.contains(&format!("{prefix}.bias")) {
                // The bias stays float and is added after dequantization (W8A8_DYNAMIC).
                let b = canonical(&format!("{prefix}.bias"))?;
                out.push(copy(ckpt, &b, &format!("{prefix}.bias"))?);
                consumed.insert(b);
            }
            push_linear(&mut out, prefix, n, k, Source::Matrix(w.clone()));
            consumed.insert(w);
        }
    }
    let head = if ckpt.contains("lm_head.weight") {
        let w = canonical("lm_head.weight")?;
        consumed.insert(w.clone());
        w
    } else {
        canonical(&format!("{pre}.embed_tokens.weight"))?
    };
    ckpt.get_shaped(&head, &[t.vocab_size, h])?;
    push_linear(
        &mut out,
        "lm_head".into(),
        t.vocab_size,
        h,
        Source::Matrix(head),
    );
    let mut rest: Vec<&str> = ckpt.names().filter(|n| !consumed.contains(*n)).collect();
    rest.sort();
    for name in rest {
        out.push(copy(ckpt, name, name)?);
    }
    Ok(out)
}

fn copy(ckpt: &Checkpoint, src: &str, dst: &str) -> Result<Planned> {
    let t = ckpt.get(src)?;
    Ok(Planned {
        name: dst.to_string(),
        dtype: t.dtype.name(),
        shape: t.shape.to_vec(),
        item: Item::Copy(src.to_string()),
        tag: "FLOAT",
    })
}

/// The bytes of one planned tensor. A weight leaves its scales in `scales` for the
/// `weight_scale` entry that follows it; a fused expert tensor is converted once for all experts.
fn produce(
    ckpt: &Checkpoint,
    p: &Planned,
    scales: &mut Vec<f32>,
    fused: &mut Option<(String, Vec<f32>)>,
) -> Result<Vec<u8>> {
    match &p.item {
        Item::Copy(src) => {
            let bytes = ckpt.get(src)?.bytes().to_vec();
            ckpt.release(src);
            Ok(bytes)
        }
        Item::Scale => Ok(scales.iter().flat_map(|s| s.to_le_bytes()).collect()),
        Item::Offset => Ok(vec![0u8; 4 * p.shape[0]]),
        Item::Weight(src) => {
            let (n, k) = (p.shape[0], p.shape[1]);
            let rows = match src {
                Source::Matrix(name) => {
                    let v = ckpt.get(name)?.to_f32();
                    ckpt.release(name);
                    v
                }
                Source::FusedExpert { tensor, e, c0 } => {
                    let t = ckpt.get(tensor)?;
                    let (kin, width) = (t.shape[1], t.shape[2]);
                    if fused.as_ref().is_none_or(|(n, _)| n != tensor) {
                        *fused = Some((tensor.clone(), t.to_f32()));
                    }
                    let all = &fused.as_ref().expect("just filled").1;
                    let m = &all[e * kin * width..(e + 1) * kin * width];
                    let mut v = vec![0f32; n * k];
                    for r in 0..n {
                        for c in 0..k {
                            v[r * k + c] = m[c * width + c0 + r];
                        }
                    }
                    v
                }
            };
            let mut q = vec![0i8; n * k];
            scales.clear();
            for (r, (wr, qr)) in rows.chunks_exact(k).zip(q.chunks_exact_mut(k)).enumerate() {
                let s = quantize_row(wr, qr);
                if s.is_nan() {
                    return Err(EngineError::Quantization {
                        dir: ckpt.dir().to_path_buf(),
                        msg: format!("`{}` row {r} holds a non-finite value", p.name),
                    });
                }
                scales.push(s);
            }
            Ok(q.into_iter().map(|v| v as u8).collect())
        }
    }
}

/// config.json, generation config, tokenizer and processor files travel with the weights.
fn copy_side_files(src: &Path, dst: &Path) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|source| EngineError::Io {
        path: src.to_path_buf(),
        source,
    })?;
    for e in rd.flatten() {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let keep = path.is_file()
            && !name.ends_with(".safetensors")
            && name != "model.safetensors.index.json"
            && (name.ends_with(".json") || name.ends_with(".jinja") || name.ends_with(".txt"));
        if keep {
            std::fs::copy(&path, dst.join(name)).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
