//! W8A8 weights held by oneDNN's int8 matmul (`u8 × s8 → s32`) instead of our VNNI panels: the
//! AMX-INT8 tier. On a CPU with AMX, oneDNN runs `tdpbusd` tiles (≈6 TOPS on 2 cores per the
//! spec's measurements, against ≈1 TOPS for AVX512-VNNI); elsewhere it runs its own VNNI kernels.
//! Opt-in (`QWEN3VL_INT8=onednn`, read by the kernel plan): see [`default_engine`] for the
//! measured trade.
//!
//! The source is the same `q + 128` bytes the panels take and the result is the exact int32 sum
//! (AMX and VNNI accumulate u8·s8 products in int32 without saturation), so the epilogue —
//! column sums, scales, bias — and therefore every output bit is the same as with the panels.
//! CPUs with neither (oneDNN's pre-VNNI int8 path saturates 16-bit pair sums) never get here.
//!
//! Weights are column slices (one per compute thread, ≥ 64 channels each), each packed once
//! into oneDNN's blocked layout and run single-threaded by one pool task, like the float path.

use std::cell::RefCell;

use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::gemm::onednn::{OneDnn, PackedWeight, WeightData};
use crate::engine::kernels::runtime::pool::ThreadPool;

/// Which integer GEMM holds a W8A8 weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Engine {
    /// Our panels: AVX512-VNNI tiles or the portable loops.
    Panels,
    /// oneDNN's int8 matmul (AMX-INT8 where present).
    OneDnn,
}

/// The engine new W8A8 weights get: the plan in force's `int8_weights`. The panels unless
/// `QWEN3VL_INT8=onednn` asks for oneDNN (honoured only where it is loaded and the CPU has
/// AVX512-VNNI or AMX, so the integer sums stay exact). Measured on an AMX machine (oneDNN 2.6,
/// 2B W8A8, 2 threads): oneDNN's AMX tiles prefill 1.36× faster than the panels (352 vs 258
/// tok/s) but decode one sequence 1.46× slower (11.8 vs 17.2 tok/s) and 16 streams level (131
/// vs 128); decode dominates a served request, so the panels are the default there too and
/// oneDNN is the prefill-heavy choice.
pub fn default_engine() -> Int8Engine {
    crate::engine::kernels::runtime::plan::active().int8_weights
}

/// Whether oneDNN is loaded and its int8 sums are exact on this CPU (AMX or AVX512-VNNI).
pub fn exact_here() -> bool {
    let vnni = crate::engine::kernels::runtime::caps::CpuCaps::detect().avx512_vnni;
    OneDnn::get().is_some_and(|d| d.has_amx() || vnni)
}

/// Receives one row's int32 sums: `(row, c0, c1, sums)` for output columns [c0, c1).
pub type RowSums<'a> = &'a dyn Fn(usize, usize, usize, &[i32]);

/// An int8 weight [n, k] as oneDNN column slices.
pub struct OneDnnInt8 {
    slices: Vec<(usize, usize, PackedWeight)>,
}

thread_local! {
    // One slice's int32 sums for all rows, reused across calls.
    static ACC: RefCell<Vec<i32>> = const { RefCell::new(Vec::new()) };
}

impl OneDnnInt8 {
    /// Packs row-major int8 weights; `None` where oneDNN is absent, its sums would not be exact,
    /// or it offers only a reference kernel.
    pub fn pack(q: &[i8], n: usize, k: usize) -> Result<Option<Self>> {
        let Some(dnn) = OneDnn::get().filter(|_| exact_here()) else {
            return Ok(None);
        };
        if q.len() != n * k {
            return Err(EngineError::Kernel(format!(
                "int8 weight has {} values, expected {n}×{k}",
                q.len()
            )));
        }
        let threads = ThreadPool::global().threads();
        let parts = threads.min(n / 64).max(1);
        let per = n.div_ceil(parts).div_ceil(64) * 64;
        let mut slices = Vec::with_capacity(parts);
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + per).min(n);
            match PackedWeight::new(dnn, WeightData::S8(&q[n0 * k..n1 * k]), n1 - n0, k) {
                Ok(p) => slices.push((n0, n1, p)),
                Err(e) if e.no_fast_kernel() => return Ok(None),
                Err(e) => return Err(EngineError::Kernel(e.to_string())),
            }
            n0 = n1;
        }
        Ok(Some(OneDnnInt8 { slices }))
    }

    /// Pool tasks of one matmul (one per slice).
    pub fn tasks(&self) -> usize {
        self.slices.len()
    }

    /// Task `t`: the int32 sums of slice `t` for `m` rows of `x` (u8, `[m, k]`), handed row by
    /// row to `epilogue(row, c0, c1, sums)` for output columns [c0, c1).
    pub fn run_task(&self, t: usize, x: &[u8], m: usize, epilogue: RowSums) -> Result<()> {
        let (n0, n1, w) = &self.slices[t];
        let width = n1 - n0;
        ACC.with(|cell| {
            let mut acc = cell.borrow_mut();
            acc.resize(m * width, 0);
            w.matmul_u8(x, m, &mut acc)
                .map_err(|e| EngineError::Kernel(e.to_string()))?;
            for (r, sums) in acc.chunks_exact(width).enumerate() {
                epilogue(r, *n0, *n1, sums);
            }
            Ok(())
        })
    }

    /// The weights back, row-major [n, k].
    pub fn unpack(&self) -> Result<Vec<i8>> {
        let mut out = Vec::new();
        for (_, _, w) in &self.slices {
            let bytes = w
                .plain_bytes()
                .map_err(|e| EngineError::Kernel(e.to_string()))?;
            out.extend(bytes.into_iter().map(|b| b as i8));
        }
        Ok(out)
    }

    pub fn bytes(&self) -> usize {
        self.slices.iter().map(|(_, _, w)| w.packed_bytes()).sum()
    }

    /// oneDNN's implementation name for `m` rows, e.g. `brg:avx512_core_amx`.
    pub fn impl_name(&self, m: usize) -> String {
        self.slices[0]
            .2
            .impl_name(m)
            .unwrap_or_else(|_| "oneDNN".into())
    }
}
