//! `Linear`: y = x · Wᵀ (+ b), the one op that carries almost all of the FLOPs.
//!
//! Weights keep the PyTorch layout [out, in]. A fast backend (oneDNN today, others later) may
//! take over a weight at load time through [`FastMatmul`]; otherwise the portable GEMM runs.

use half::bf16;

use super::bf16::Precision;
use super::gemm_portable;
use super::pool::ThreadPool;
use crate::engine::error::{EngineError, Result};

/// Weight storage in the model's precision.
#[derive(Clone)]
pub enum WeightStore {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
}

/// A matmul implementation that owns a (re-laid-out) copy of one weight.
pub trait FastMatmul: Send + Sync {
    /// y[m, n] = x[m, k] · Wᵀ (+ bias) with f32 accumulation, produced in f32.
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()>;
    fn name(&self) -> String;
}

/// Builds a fast path for a weight, or returns None to keep the portable path.
pub trait FastBackend: Send + Sync {
    fn prepare(&self, w: &WeightStore, n: usize, k: usize) -> Result<Option<Box<dyn FastMatmul>>>;
    fn name(&self) -> String;
}

pub struct Linear {
    pub n: usize,
    pub k: usize,
    /// Portable copy; dropped when a fast backend owns the weight.
    weight: Option<WeightStore>,
    fast: Option<Box<dyn FastMatmul>>,
    bias: Option<Vec<f32>>,
    precision: Precision,
}

impl Linear {
    pub fn new(
        weight: WeightStore,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
        backend: Option<&dyn FastBackend>,
    ) -> Result<Self> {
        let len = match &weight {
            WeightStore::F32(w) => w.len(),
            WeightStore::Bf16(w) => w.len(),
        };
        if len != n * k {
            return Err(EngineError::Kernel(format!(
                "linear weight has {len} values, expected {n}×{k}"
            )));
        }
        let mut bias = bias;
        if let Some(b) = &mut bias {
            if b.len() != n {
                return Err(EngineError::Kernel(format!(
                    "linear bias has {} values, expected {n}",
                    b.len()
                )));
            }
            // A bf16 model's bias is a bf16 tensor.
            precision.round_slice(b);
        }
        let fast = match backend {
            Some(be) => be.prepare(&weight, n, k)?,
            None => None,
        };
        Ok(Linear {
            n,
            k,
            weight: if fast.is_some() { None } else { Some(weight) },
            fast,
            bias,
            precision,
        })
    }

    pub fn backend_name(&self) -> String {
        match &self.fast {
            Some(f) => f.name(),
            None => "portable".into(),
        }
    }

    /// y[m, n] = x[m, k] · Wᵀ + b, rounded to the model precision (one rounding, as PyTorch's
    /// bf16 addmm does).
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
        if x.len() < m * self.k || y.len() < m * self.n {
            return Err(EngineError::Kernel(format!(
                "linear {}×{}: input {} / output {} too small for m = {m}",
                self.n,
                self.k,
                x.len(),
                y.len()
            )));
        }
        let y = &mut y[..m * self.n];
        if let Some(f) = &self.fast {
            f.matmul(&x[..m * self.k], m, self.bias.as_deref(), y)?;
        } else {
            match self.weight.as_ref().expect("portable weight present") {
                WeightStore::F32(w) => gemm_portable::matmul_f32(pool, x, m, self.k, w, self.n, y),
                WeightStore::Bf16(w) => {
                    gemm_portable::matmul_bf16(pool, x, m, self.k, w, self.n, y)
                }
            }
            if let Some(b) = &self.bias {
                for row in y.chunks_exact_mut(self.n) {
                    for (v, bb) in row.iter_mut().zip(b) {
                        *v += bb;
                    }
                }
            }
        }
        self.precision.round_slice(y);
        Ok(())
    }

    /// Convenience: allocate the output.
    pub fn apply(&self, pool: &ThreadPool, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let mut y = vec![0f32; m * self.n];
        self.forward(pool, x, m, &mut y)?;
        Ok(y)
    }
}
