//! msModelSlim quantized checkpoints (the W8A8 / W8A8_DYNAMIC folders MindIE users have):
//! `quant_model_description.json` tags every tensor with its scheme, and each Linear is loaded
//! according to the tag of its `.weight` — per layer, as vllm-ascend does, never from the global
//! `model_quant_type` (older msModelSlim builds wrote a different one for the same content).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{EngineError, Result};
use super::kernels::int8::{Int8Linear, Int8Weight};
use super::weights::{legacy_name, Checkpoint, StoredDtype};

/// How one Linear is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearScheme {
    Float,
    /// Per-tensor static activations: weight, input_scale, input_offset, quant_bias, deq_scale.
    W8A8Static,
    /// Per-token dynamic activations: weight, weight_scale (, weight_offset, bias).
    W8A8Dynamic,
}

/// The parsed `quant_model_description.json`.
pub struct QuantDescription {
    path: PathBuf,
    tags: HashMap<String, String>,
}

const FILE: &str = "quant_model_description.json";

impl QuantDescription {
    /// Reads the description of a msModelSlim folder; `None` for a float checkpoint.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let mut path = dir.join(FILE);
        if !path.exists() {
            // MindIE's fallback: the legacy `quant_model_description_{type}.json`.
            let legacy = std::fs::read_dir(dir).ok().and_then(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path())).find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("quant_model_description_") && n.ends_with(".json")
                    })
                })
            });
            match legacy {
                Some(p) => path = p,
                None => return Ok(None),
            }
        }
        let bad = |msg: String| EngineError::Quantization {
            dir: dir.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(&path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("{} is not valid JSON: {e}", path.display())))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad(format!("{} is not a JSON object", path.display())))?;
        // Online rotations need run-time Hadamard transforms that the Qwen3-VL recipes never
        // produce; running without them would silently give wrong logits.
        if let Some(q) = obj.get("metadata").and_then(|m| m.get("quarot")) {
            if q.get("heads_rotation").is_some() || q.get("kronecker_rotation").is_some() {
                return Err(bad(
                    "online QuaRot rotations (heads_rotation / kronecker_rotation) are not supported"
                        .into(),
                ));
            }
        }
        let mut tags = HashMap::new();
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                if k.ends_with(".div.mul_scale") {
                    return Err(bad(format!(
                        "`{k}`: non-fused smoothing scales (run-time multiply) are not supported"
                    )));
                }
                tags.insert(k.clone(), s.to_string());
            }
        }
        Ok(Some(QuantDescription { path, tags }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scheme of the Linear `{prefix}.weight`.
    pub fn scheme(&self, prefix: &str) -> Result<LinearScheme> {
        let key = format!("{prefix}.weight");
        let tag = self
            .tags
            .get(&key)
            .or_else(|| legacy_name(&key).and_then(|l| self.tags.get(&l)));
        match tag.map(|s| s.as_str()) {
            None | Some("FLOAT") => Ok(LinearScheme::Float),
            // W8A8S is W8A8 with sparsified weights; W8A8_MIX carries both tensor sets.
            Some("W8A8") | Some("W8A8S") | Some("W8A8_MIX") => Ok(LinearScheme::W8A8Static),
            Some("W8A8_DYNAMIC") => Ok(LinearScheme::W8A8Dynamic),
            Some(other) => Err(EngineError::Quantization {
                dir: self.path.clone(),
                msg: format!(
                    "`{key}` uses quantization type {other}; supported: FLOAT, W8A8, W8A8S, W8A8_MIX, W8A8_DYNAMIC"
                ),
            }),
        }
    }
}

/// Loads the int8 Linear `{prefix}` [n, k] stored with `scheme` (not `Float`).
pub fn load_int8_linear(
    ckpt: &Checkpoint,
    prefix: &str,
    n: usize,
    k: usize,
    scheme: LinearScheme,
) -> Result<Int8Linear> {
    let name = |s: &str| format!("{prefix}.{s}");
    let weight = ckpt.get_shaped(&name("weight"), &[n, k])?;
    let q = weight.to_i8()?;
    ckpt.release(&name("weight"));
    let packed = Int8Weight::pack(&q, n, k)?;
    match scheme {
        LinearScheme::W8A8Static => {
            let scale = scalar(ckpt, &name("input_scale"))?;
            let offset = scalar(ckpt, &name("input_offset"))?;
            if offset.fract() != 0.0 || !(-128.0..=127.0).contains(&offset) {
                return Err(EngineError::Quantization {
                    dir: ckpt.dir().to_path_buf(),
                    msg: format!("`{prefix}.input_offset` is {offset}, not an int8 zero point"),
                });
            }
            let qb = ckpt.get_shaped(&name("quant_bias"), &[n])?.to_i32()?;
            let deq = deq_scale(ckpt, &name("deq_scale"), n)?;
            // `.bias` of a static layer is already folded into quant_bias: never add it again.
            Int8Linear::static_per_tensor(packed, scale, offset as i32, deq, qb)
        }
        LinearScheme::W8A8Dynamic => {
            let s = per_channel(ckpt, &name("weight_scale"), n)?;
            if ckpt.contains(&name("weight_offset")) {
                let off = per_channel(ckpt, &name("weight_offset"), n)?;
                if off.iter().any(|&o| o != 0.0) {
                    return Err(EngineError::Quantization {
                        dir: ckpt.dir().to_path_buf(),
                        msg: format!(
                            "`{prefix}.weight_offset` is non-zero (asymmetric weights are not supported)"
                        ),
                    });
                }
            }
            let bias = if ckpt.contains(&name("bias")) {
                Some(float(ckpt, &name("bias"), &[n])?)
            } else {
                None
            };
            Int8Linear::dynamic(packed, s, bias)
        }
        LinearScheme::Float => Err(EngineError::Kernel(format!(
            "`{prefix}` is a float layer, not an int8 one"
        ))),
    }
}

fn float(ckpt: &Checkpoint, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = ckpt.get_shaped(name, shape)?;
    t.expect(&[StoredDtype::F32, StoredDtype::Bf16, StoredDtype::F16])?;
    Ok(t.to_f32())
}

/// A one-element float tensor ([1] or []); integer-typed offsets (W8A8SC writes int8) also work.
fn scalar(ckpt: &Checkpoint, name: &str) -> Result<f32> {
    let t = ckpt.get(name)?;
    if t.numel() != 1 {
        return Err(EngineError::Shape {
            name: name.to_string(),
            got: t.shape.to_vec(),
            expected: vec![1],
        });
    }
    Ok(t.to_f32()[0])
}

/// `[n]` or `[n, 1]` float values.
fn per_channel(ckpt: &Checkpoint, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = ckpt.get(name)?;
    if t.shape != [n] && t.shape != [n, 1] {
        return Err(EngineError::Shape {
            name: name.to_string(),
            got: t.shape.to_vec(),
            expected: vec![n, 1],
        });
    }
    t.expect(&[StoredDtype::F32, StoredDtype::Bf16, StoredDtype::F16])?;
    Ok(t.to_f32())
}

/// `deq_scale` in any of its encodings: fp32 (bf16 models), bf16, or int64 holding the fp32 bit
/// pattern in its low 32 bits — both the plain reinterpretation and the NPU "quant param"
/// (`npu_trans_quant_param`: mantissa truncated, flag bit 46) decode that way.
fn deq_scale(ckpt: &Checkpoint, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = ckpt.get(name)?;
    if t.numel() != n {
        return Err(EngineError::Shape {
            name: name.to_string(),
            got: t.shape.to_vec(),
            expected: vec![n],
        });
    }
    match t.dtype {
        StoredDtype::I64 => Ok(t
            .to_i64()?
            .into_iter()
            .map(|v| f32::from_bits((v as u64 & 0xFFFF_FFFF) as u32))
            .collect()),
        _ => {
            t.expect(&[StoredDtype::F32, StoredDtype::Bf16, StoredDtype::F16])?;
            Ok(t.to_f32())
        }
    }
}
