//! Turns checkpoint tensors into compute-ready weights in the model precision.

use super::error::Result;
use super::kernels::bf16::Precision;
use super::kernels::linear::{FastBackend, Linear, WeightStore};
use super::weights::Checkpoint;

pub struct Loader<'a> {
    pub ckpt: &'a Checkpoint,
    pub precision: Precision,
    pub backend: Option<&'a dyn FastBackend>,
}

impl<'a> Loader<'a> {
    /// A vector (norm weight, bias, table) as f32 values representable in the model precision.
    pub fn vector(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let mut v = self.ckpt.get_shaped(name, shape)?.to_f32();
        self.ckpt.release(name);
        self.precision.round_slice(&mut v);
        Ok(v)
    }

    /// A weight matrix [n, k] in the model's storage dtype.
    pub fn store(&self, name: &str, shape: &[usize]) -> Result<WeightStore> {
        let t = self.ckpt.get_shaped(name, shape)?;
        let w = match self.precision {
            Precision::F32 => WeightStore::F32(t.to_f32()),
            Precision::Bf16 => WeightStore::Bf16(t.to_bf16()),
        };
        self.ckpt.release(name);
        Ok(w)
    }

    /// `{prefix}.weight` [n, k] (+ `{prefix}.bias` [n]).
    pub fn linear(&self, prefix: &str, n: usize, k: usize, bias: bool) -> Result<Linear> {
        let w = self.store(&format!("{prefix}.weight"), &[n, k])?;
        let b = if bias {
            Some(self.vector(&format!("{prefix}.bias"), &[n])?)
        } else {
            None
        };
        self.linear_from(w, n, k, b)
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

    /// Build a store from f32 values in the model precision.
    pub fn store_from_f32(&self, v: Vec<f32>) -> WeightStore {
        match self.precision {
            Precision::F32 => WeightStore::F32(v),
            Precision::Bf16 => WeightStore::Bf16(v.into_iter().map(half::bf16::from_f32).collect()),
        }
    }
}
