//! Turns checkpoint tensors into compute-ready weights in the model precision.

use super::error::{EngineError, Result};
use super::kernels::bf16::Precision;
use super::kernels::int8::{Int8Linear, Int8Weight};
use super::kernels::linear::{FastBackend, Linear, WeightStore};
use super::kernels::runtime::pool::ThreadPool;
use super::quant::{load_int8_linear, LinearScheme, QuantDescription};
use super::weights::{Checkpoint, StoredDtype};

const FLOATS: [StoredDtype; 3] = [StoredDtype::F32, StoredDtype::Bf16, StoredDtype::F16];

pub struct Loader<'a> {
    pub ckpt: &'a Checkpoint,
    pub precision: Precision,
    pub backend: Option<&'a dyn FastBackend>,
    /// Quantize the text decoder's float linears to W8A8 (per-token dynamic activations) on load.
    pub quantize_text: bool,
    /// Also quantize the vision blocks' linears (qkv, proj, fc1, fc2) to W8A8.
    pub quantize_vision: bool,
    /// The msModelSlim description when the folder holds a quantized checkpoint.
    pub quant: Option<&'a QuantDescription>,
}

impl<'a> Loader<'a> {
    /// A vector (norm weight, bias, table) as f32 values representable in the model precision.
    pub fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.ckpt.get_shaped(name, shape)?;
        t.expect(&FLOATS)?;
        let mut v = t.to_f32();
        self.ckpt.release(name);
        self.precision.round_slice(&mut v);
        Ok(v)
    }

    /// A weight matrix [n, k] in the model's storage dtype.
    pub fn store(&self, name: &str, shape: &[usize]) -> Result<WeightStore> {
        let t = self.ckpt.get_shaped(name, shape)?;
        t.expect(&FLOATS)?;
        let w = match self.precision {
            Precision::F32 => WeightStore::F32(t.to_f32()),
            Precision::Bf16 => WeightStore::Bf16(t.to_bf16()),
            Precision::F16 => WeightStore::F16(t.to_f16()),
        };
        self.ckpt.release(name);
        Ok(w)
    }

    /// Rows [r0, r1) of the float weight `name` [n, k] in the model precision, converted a few
    /// MiB at a time with each part's mapped pages released once copied: building a weight in
    /// parts then never holds the file pages and the copy of the whole weight together.
    fn store_rows(
        &self,
        name: &str,
        n: usize,
        k: usize,
        r0: usize,
        r1: usize,
    ) -> Result<WeightStore> {
        let t = self.ckpt.get_shaped(name, &[n, k])?;
        t.expect(&FLOATS)?;
        let row_bytes = k * t.elem_size();
        let chunk = ((8 << 20) / row_bytes.max(1)).max(1);
        let parts = (r0..r1).step_by(chunk).map(|c0| (c0, (c0 + chunk).min(r1)));
        let store = match self.precision {
            Precision::F32 => {
                let mut v = Vec::with_capacity((r1 - r0) * k);
                for (c0, c1) in parts {
                    t.rows_f32(c0, c1 - c0, k, &mut v);
                    self.ckpt.release_part(name, c0 * row_bytes, c1 * row_bytes);
                }
                WeightStore::F32(v)
            }
            Precision::Bf16 => {
                let mut v = Vec::with_capacity((r1 - r0) * k);
                for (c0, c1) in parts {
                    t.rows_bf16(c0, c1 - c0, k, &mut v);
                    self.ckpt.release_part(name, c0 * row_bytes, c1 * row_bytes);
                }
                WeightStore::Bf16(v)
            }
            Precision::F16 => {
                let mut v = Vec::with_capacity((r1 - r0) * k);
                for (c0, c1) in parts {
                    t.rows_f16(c0, c1 - c0, k, &mut v);
                    self.ckpt.release_part(name, c0 * row_bytes, c1 * row_bytes);
                }
                WeightStore::F16(v)
            }
        };
        Ok(store)
    }

    fn scheme(&self, prefix: &str) -> Result<LinearScheme> {
        match self.quant {
            Some(q) => q.scheme(prefix),
            None => Ok(LinearScheme::Float),
        }
    }

    /// Whether the checkpoint stores the Linear `{prefix}` quantized.
    pub fn is_quantized(&self, prefix: &str) -> Result<bool> {
        Ok(self.scheme(prefix)? != LinearScheme::Float)
    }

    /// The float `{prefix}.weight` [n, k] and, if asked for, `{prefix}.bias` [n].
    fn float_weight(
        &self,
        prefix: &str,
        n: usize,
        k: usize,
        bias: bool,
    ) -> Result<(WeightStore, Option<Vec<f32>>)> {
        let w = self.store(&format!("{prefix}.weight"), &[n, k])?;
        let b = if bias {
            Some(self.vector(&format!("{prefix}.bias"), &[n])?)
        } else {
            None
        };
        Ok((w, b))
    }

    /// `{prefix}.weight` `[n, k]` (+ `{prefix}.bias` `[n]`); int8 when the checkpoint stores it so.
    pub fn linear(&self, prefix: &str, n: usize, k: usize, bias: bool) -> Result<Linear> {
        let scheme = self.scheme(prefix)?;
        if scheme != LinearScheme::Float {
            let q = load_int8_linear(self.ckpt, prefix, n, k, scheme)?;
            return Ok(Linear::from_int8(q, self.precision));
        }
        let name = format!("{prefix}.weight");
        // Shape and dtype errors before any work.
        self.ckpt.get_shaped(&name, &[n, k])?.expect(&FLOATS)?;
        let b = if bias {
            Some(self.vector(&format!("{prefix}.bias"), &[n])?)
        } else {
            None
        };
        let rows = |r0, r1| self.store_rows(&name, n, k, r0, r1);
        let linear = Linear::from_rows(&rows, n, k, b, self.precision, self.backend)?;
        self.ckpt.release(&name);
        Ok(linear)
    }

    pub fn linear_from(
        &self,
        w: WeightStore,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Linear> {
        Linear::new(w, n, k, bias, self.precision, self.backend)
    }

    /// A text-decoder linear: as stored in a quantized checkpoint, W8A8 when quantizing on
    /// load, otherwise as [`Self::linear`].
    pub fn text_linear(&self, prefix: &str, n: usize, k: usize, bias: bool) -> Result<Linear> {
        if !self.quantize_text || self.scheme(prefix)? != LinearScheme::Float {
            return self.linear(prefix, n, k, bias);
        }
        let (w, b) = self.float_weight(prefix, n, k, bias)?;
        self.text_linear_from(w, n, k, b)
    }

    /// A vision-block linear: W8A8 (per-token dynamic) when quantizing the vision tower too.
    pub fn vision_linear(&self, prefix: &str, n: usize, k: usize, bias: bool) -> Result<Linear> {
        if !self.quantize_vision || self.scheme(prefix)? != LinearScheme::Float {
            return self.linear(prefix, n, k, bias);
        }
        let (w, b) = self.float_weight(prefix, n, k, bias)?;
        Linear::quantized(ThreadPool::global(), &w, n, k, b, self.precision)
    }

    /// [`Self::text_linear`] for a weight already in memory (fused experts, tied LM head).
    pub fn text_linear_from(
        &self,
        w: WeightStore,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
    ) -> Result<Linear> {
        if self.quantize_text {
            Linear::quantized(ThreadPool::global(), &w, n, k, bias, self.precision)
        } else {
            self.linear_from(w, n, k, bias)
        }
    }

    /// Several bias-free text linears sharing one input, stacked along the output dimension
    /// (msModelSlim's per-expert `gate_proj` + `up_proj` become one gate‖up GEMM).
    pub fn stacked_text_linear(
        &self,
        prefixes: &[&str],
        n_each: usize,
        k: usize,
    ) -> Result<Linear> {
        let schemes = prefixes
            .iter()
            .map(|p| self.scheme(p))
            .collect::<Result<Vec<_>>>()?;
        let n = n_each * prefixes.len();
        match schemes[0] {
            LinearScheme::Float => {
                if schemes.iter().any(|s| *s != LinearScheme::Float) {
                    return Err(self.mixed(prefixes));
                }
                let mut rows = Vec::with_capacity(n * k);
                for p in prefixes {
                    let name = format!("{p}.weight");
                    let t = self.ckpt.get_shaped(&name, &[n_each, k])?;
                    t.expect(&FLOATS)?;
                    rows.extend(t.to_f32());
                    self.ckpt.release(&name);
                }
                self.text_linear_from(self.store_from_f32(rows), n, k, None)
            }
            LinearScheme::W8A8Dynamic => {
                if schemes.iter().any(|s| *s != LinearScheme::W8A8Dynamic) {
                    return Err(self.mixed(prefixes));
                }
                let (mut q, mut scales, mut bias) = (Vec::with_capacity(n * k), Vec::new(), None);
                for (i, p) in prefixes.iter().enumerate() {
                    let part = load_int8_linear(self.ckpt, p, n_each, k, LinearScheme::W8A8Dynamic)?;
                    q.extend(part.weight().unpack()?);
                    scales.extend_from_slice(part.col_scale());
                    if let Some(b) = part.bias() {
                        bias.get_or_insert_with(|| vec![0f32; n])[i * n_each..(i + 1) * n_each]
                            .copy_from_slice(b);
                    }
                }
                let q = Int8Linear::dynamic(Int8Weight::pack(&q, n, k)?, scales, bias)?;
                Ok(Linear::from_int8(q, self.precision))
            }
            LinearScheme::W8A8Static => Err(EngineError::Quantization {
                dir: self.ckpt.dir().to_path_buf(),
                msg: format!(
                    "{}: stacked static W8A8 experts are not supported (msModelSlim writes experts as W8A8_DYNAMIC)",
                    prefixes.join(", ")
                ),
            }),
        }
    }

    fn mixed(&self, prefixes: &[&str]) -> EngineError {
        EngineError::Quantization {
            dir: self.ckpt.dir().to_path_buf(),
            msg: format!(
                "{} must share one quantization type to be fused",
                prefixes.join(", ")
            ),
        }
    }

    /// Build a store from f32 values in the model precision.
    pub fn store_from_f32(&self, v: Vec<f32>) -> WeightStore {
        match self.precision {
            Precision::F32 => WeightStore::F32(v),
            Precision::Bf16 => WeightStore::Bf16(v.into_iter().map(half::bf16::from_f32).collect()),
            Precision::F16 => {
                let mut w = vec![half::f16::ZERO; v.len()];
                super::kernels::bf16::narrow_f16(&mut w, &v);
                WeightStore::F16(w)
            }
        }
    }
}
