//! Row-wise ops: norms, activations, residual adds. Each follows the rounding points of the
//! PyTorch reference (statistics in f32, one rounding to the activation precision where PyTorch
//! materialises a bf16 tensor).

use super::bf16::Precision;
use super::pool::ThreadPool;

/// Rows per task for row-parallel ops.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads.max(1)).max(1)
}

/// Run `f(row_index, row)` over the rows of `x` ([rows, dim]) in parallel.
pub fn par_rows(
    pool: &ThreadPool,
    x: &mut [f32],
    dim: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let rows = x.len() / dim;
    if rows == 0 {
        return;
    }
    let per = rows_per_task(rows, pool.threads());
    let chunks: Vec<(usize, &mut [f32])> = x
        .chunks_mut(per * dim)
        .enumerate()
        .map(|(i, c)| (i * per, c))
        .collect();
    let cells: Vec<std::sync::Mutex<(usize, &mut [f32])>> =
        chunks.into_iter().map(std::sync::Mutex::new).collect();
    pool.run(cells.len(), &|i| {
        let mut g = cells[i].lock().unwrap_or_else(|e| e.into_inner());
        let (first, ref mut chunk) = *g;
        for (r, row) in chunk.chunks_mut(dim).enumerate() {
            f(first + r, row);
        }
    });
}

/// RMSNorm (Qwen3 text): y = round(x / sqrt(mean(x²) + eps)) · w, with the product rounded too.
pub fn rms_norm(pool: &ThreadPool, x: &mut [f32], dim: usize, w: &[f32], eps: f32, p: Precision) {
    par_rows(pool, x, dim, &|_, row| rms_norm_row(row, w, eps, p));
}

pub fn rms_norm_row(row: &mut [f32], w: &[f32], eps: f32, p: Precision) {
    let ss: f32 = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for (v, wi) in row.iter_mut().zip(w) {
        *v = p.round(wi * p.round(*v * inv));
    }
}

/// LayerNorm with bias (vision). PyTorch's CPU kernel evaluates `(x·rstd + (−mean·rstd))·γ + β`
/// with fused multiply-adds and rounds once; matching that order (with accurate moments) matters
/// for bf16 parity, where a one-ulp difference before rounding flips a bf16 value.
pub fn layer_norm(
    pool: &ThreadPool,
    x: &mut [f32],
    dim: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
    p: Precision,
) {
    par_rows(pool, x, dim, &|_, row| {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let (mean, var) = (mean as f32, var as f32);
        let rstd = 1.0 / (var + eps).sqrt();
        let shift = -mean * rstd;
        for ((v, wi), bi) in row.iter_mut().zip(w).zip(b) {
            *v = p.round(v.mul_add(rstd, shift).mul_add(*wi, *bi));
        }
    });
}

/// `gelu_pytorch_tanh`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (K * (x + 0.044715 * x * x * x)).tanh())
}

/// Exact GELU (`nn.GELU()`), erf form.
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    x * 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[derive(Debug, Clone, Copy)]
pub enum Activation {
    GeluTanh,
    GeluErf,
    Silu,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::GeluTanh => gelu_tanh(x),
            Activation::GeluErf => gelu_erf(x),
            Activation::Silu => silu(x),
        }
    }
}

/// In-place activation with one rounding per element.
pub fn activate(pool: &ThreadPool, x: &mut [f32], act: Activation, p: Precision) {
    let len = x.len();
    let cell = SyncSlice(x.as_mut_ptr(), len);
    pool.run_chunks(len, 1024, &|a, b| {
        // SAFETY: chunks [a, b) are disjoint sub-ranges of the buffer.
        let s = unsafe { cell.range(a, b) };
        for v in s {
            *v = p.round(act.apply(*v));
        }
    });
}

/// SwiGLU combine: out[i] = round(round(silu(gate[i])) · up[i]), `gate_up` holds rows of
/// [gate | up] (width 2·inter) or separate buffers via `silu_mul`.
pub fn silu_mul(gate: &mut [f32], up: &[f32], p: Precision) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = p.round(p.round(silu(*g)) * u);
    }
}

/// Residual add: x += y with one rounding.
pub fn add_inplace(x: &mut [f32], y: &[f32], p: Precision) {
    for (a, b) in x.iter_mut().zip(y) {
        *a = p.round(*a + b);
    }
}

/// Raw pointer + length for handing disjoint sub-slices to pool tasks.
pub(crate) struct SyncSlice(pub *mut f32, pub usize);
// SAFETY: users only hand out disjoint ranges to different tasks.
unsafe impl Sync for SyncSlice {}
unsafe impl Send for SyncSlice {}

impl SyncSlice {
    /// # Safety
    /// Ranges handed to concurrent tasks must not overlap, and `a ≤ b ≤ len`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, a: usize, b: usize) -> &mut [f32] {
        debug_assert!(a <= b && b <= self.1);
        // SAFETY: guaranteed by the caller (disjoint, in bounds).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(a), b - a) }
    }
}
