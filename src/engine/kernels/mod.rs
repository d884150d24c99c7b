//! The kernel layer: every numeric op the model needs, behind a narrow interface (linear,
//! attention, norms, rope, activations) so other backends can be added without touching model
//! code. All `unsafe` code of the crate lives under this module.

pub mod attention;
pub mod bf16;
pub mod gemm_portable;
pub mod linear;
pub mod onednn;
pub mod onednn_sys;
pub mod ops;
pub mod pool;

use crate::engine::error::{EngineError, Result};
use linear::{FastBackend, FastMatmul, WeightStore};
use onednn::{OneDnn, OneDnnError, PackedWeight, WeightData};

/// Weights smaller than this (elements) stay on the portable path under automatic selection:
/// oneDNN's per-call cost (primitive lookup, OpenMP region) dominates on tiny matrices.
pub const AUTO_MIN_ELEMENTS: usize = 1 << 18;

/// The oneDNN backend when the library is present; `min_elements` keeps smaller weights portable.
pub fn onednn_backend(min_elements: usize) -> Option<Box<dyn FastBackend>> {
    configure_openmp();
    OneDnn::get().map(|dnn| Box::new(OneDnnBackend { dnn, min_elements }) as Box<dyn FastBackend>)
}

/// libgomp (oneDNN's runtime) reads its environment once, when oneDNN is loaded. Give it our
/// thread count and a short spin so its idle workers do not steal cores from the compute pool
/// between matmuls. Explicit user settings win.
fn configure_openmp() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            std::env::set_var(
                "OMP_NUM_THREADS",
                pool::ThreadPool::global().threads().to_string(),
            );
        }
        if std::env::var_os("OMP_WAIT_POLICY").is_none()
            && std::env::var_os("GOMP_SPINCOUNT").is_none()
        {
            std::env::set_var("GOMP_SPINCOUNT", "20000");
        }
    });
}

struct OneDnnBackend {
    dnn: &'static OneDnn,
    min_elements: usize,
}

impl FastBackend for OneDnnBackend {
    fn prepare(&self, w: &WeightStore, n: usize, k: usize) -> Result<Option<Box<dyn FastMatmul>>> {
        if n * k < self.min_elements {
            return Ok(None);
        }
        let data = match w {
            WeightStore::F32(v) => WeightData::F32(v),
            WeightStore::Bf16(v) => WeightData::Bf16(v),
        };
        match PackedWeight::new(self.dnn, data, n, k) {
            Ok(p) => Ok(Some(Box::new(p))),
            // oneDNN's reference kernels are slower than the portable path.
            Err(OneDnnError::ReferenceOnly { .. }) => Ok(None),
            Err(e) => Err(EngineError::Kernel(e.to_string())),
        }
    }

    fn name(&self) -> String {
        self.dnn.describe()
    }
}

impl FastMatmul for PackedWeight {
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        PackedWeight::matmul(self, x, m, bias, y).map_err(|e| EngineError::Kernel(e.to_string()))
    }

    fn name(&self) -> String {
        match self.impl_name(1) {
            Ok(s) => format!("oneDNN {s}"),
            Err(_) => "oneDNN".into(),
        }
    }
}
