//! Row-wise ops: norms, activations, residual adds. Each follows the rounding points of the
//! PyTorch reference (statistics in f32, one rounding to the activation precision where PyTorch
//! materialises a bf16 tensor).

use super::bf16::{by_precision, Precision};
use super::runtime::pool::ThreadPool;
use super::runtime::simd::{erf_f32, multiversion, sigmoid_f32};

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
    if dim == 0 {
        return;
    }
    let rows = x.len() / dim;
    par_row_blocks(pool, rows, [x], [dim], &|_, _, [x]: [&mut [f32]; 1]| {
        rms_norm_rows(x, dim, w, eps, p)
    });
}

/// Rows whose sums of squares [`rms_norm_rows`] advances side by side.
const NORM_ROWS: usize = 8;

multiversion! {
    /// [`rms_norm_row`] on each row of `x` ([rows, dim]), the same bits: each row's sum of squares
    /// still adds its terms in order, but `NORM_ROWS` rows advance together, so the adds form
    /// that many independent chains instead of one (a lone f32 sum cannot be vectorised without
    /// changing its order, and its add latency made the norms 3.8 % of a prefill).
    pub fn rms_norm_rows(x: &mut [f32], dim: usize, w: &[f32], eps: f32, p: Precision) {
        let mut blocks = x.chunks_exact_mut(NORM_ROWS * dim);
        for block in &mut blocks {
            let mut ss = [0f32; NORM_ROWS];
            for d in 0..dim {
                for (r, s) in ss.iter_mut().enumerate() {
                    let v = block[r * dim + d];
                    *s += v * v;
                }
            }
            for (row, s) in block.chunks_exact_mut(dim).zip(ss) {
                scale_row(row, w, 1.0 / (s / dim as f32 + eps).sqrt(), p);
            }
        }
        for row in blocks.into_remainder().chunks_exact_mut(dim) {
            rms_norm_row(row, w, eps, p);
        }
    }
}

multiversion! {
    pub fn rms_norm_row(row: &mut [f32], w: &[f32], eps: f32, p: Precision) {
        let ss: f32 = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        scale_row(row, w, 1.0 / (ss + eps).sqrt(), p);
    }
}

/// row = round(w · round(row · inv)) in bf16 / f16, w · (row · inv) in f32.
#[inline(always)]
fn scale_row(row: &mut [f32], w: &[f32], inv: f32, p: Precision) {
    by_precision!(p, round => {
        for (v, wi) in row.iter_mut().zip(w) {
            *v = round(wi * round(*v * inv));
        }
    })
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
    par_rows(pool, x, dim, &|_, row| layer_norm_row(row, w, b, eps, p));
}

/// One row normalised in place.
fn layer_norm_row(row: &mut [f32], w: &[f32], b: &[f32], eps: f32, p: Precision) {
    let m = layer_norm_moments(row, eps);
    layer_norm_apply(row, m, w, b, p);
}

/// `out = LayerNorm(x)` row by row ([`layer_norm`] without a separate pass copying x to out).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_into(
    pool: &ThreadPool,
    x: &[f32],
    out: &mut [f32],
    dim: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
    p: Precision,
) {
    assert_eq!(
        x.len(),
        out.len(),
        "layer_norm_into: input and output differ in size"
    );
    let rows = x.len() / dim;
    par_row_blocks(
        pool,
        rows,
        [out],
        [dim],
        &|r0, _, [out]: [&mut [f32]; 1]| {
            for (i, o) in out.chunks_exact_mut(dim).enumerate() {
                o.copy_from_slice(&x[(r0 + i) * dim..][..dim]);
                layer_norm_row(o, w, b, eps, p);
            }
        },
    );
}

/// A block's residual add followed by the next LayerNorm, one pass over each row while it is in
/// L1: `x = round(x + y)`, then `y = LayerNorm(x)` (the same values as [`add_inplace`] then
/// [`layer_norm_into`]).
#[allow(clippy::too_many_arguments)]
pub fn add_layer_norm(
    pool: &ThreadPool,
    x: &mut [f32],
    y: &mut [f32],
    dim: usize,
    w: &[f32],
    b: &[f32],
    eps: f32,
    p: Precision,
) {
    assert_eq!(
        x.len(),
        y.len(),
        "add_layer_norm: residual and branch differ in size"
    );
    let rows = x.len() / dim;
    par_row_blocks(
        pool,
        rows,
        [x, y],
        [dim; 2],
        &|_, _, [x, y]: [&mut [f32]; 2]| {
            for (xr, yr) in x.chunks_exact_mut(dim).zip(y.chunks_exact_mut(dim)) {
                add_inplace(xr, yr, p);
                yr.copy_from_slice(xr);
                layer_norm_row(yr, w, b, eps, p);
            }
        },
    );
}

multiversion! {
    /// (rstd, −mean·rstd) of one row. The moments are summed in f64 (accurate whatever the row's
    /// offset), over 16 lanes with a fixed combination order so the sums vectorise and stay
    /// deterministic (a single running f64 sum is a 4-cycle dependency per value).
    fn layer_norm_moments(row: &[f32], eps: f32) -> (f32, f32) {
        const L: usize = 16;
        let n = row.len() as f64;
        let mut chunks = row.chunks_exact(L);
        let mut acc = [0f64; L];
        for c in &mut chunks {
            for i in 0..L {
                acc[i] += c[i] as f64;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
        let mean = (acc.iter().sum::<f64>() + tail) / n;
        let mut chunks = row.chunks_exact(L);
        let mut acc = [0f64; L];
        for c in &mut chunks {
            for i in 0..L {
                let d = c[i] as f64 - mean;
                acc[i] += d * d;
            }
        }
        let tail: f64 = chunks.remainder().iter().map(|&v| (v as f64 - mean) * (v as f64 - mean)).sum();
        let var = (acc.iter().sum::<f64>() + tail) / n;
        let (mean, var) = (mean as f32, var as f32);
        let rstd = 1.0 / (var + eps).sqrt();
        (rstd, -mean * rstd)
    }
}

multiversion! {
    fn layer_norm_apply(row: &mut [f32], m: (f32, f32), w: &[f32], b: &[f32], p: Precision) {
        let (rstd, shift) = m;
        by_precision!(p, round => {
            for ((v, wi), bi) in row.iter_mut().zip(w).zip(b) {
                *v = round(v.mul_add(rstd, shift).mul_add(*wi, *bi));
            }
        })
    }
}

/// `gelu_pytorch_tanh`: 0.5·x·(1 + tanh(u)) computed as x·sigmoid(2u) (the same function,
/// without tanh's cancellation near zero and without a libm call).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const K: f32 = 0.797_884_6; // sqrt(2/pi)
    let u = K * (x + 0.044715 * (x * x * x));
    x * sigmoid_f32(2.0 * u)
}

/// Exact GELU (`nn.GELU()`), erf form.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf_f32(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x * sigmoid_f32(x)
}

#[derive(Debug, Clone, Copy)]
pub enum Activation {
    GeluTanh,
    GeluErf,
    Silu,
}

impl Activation {
    #[inline(always)]
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
        activate_slice(unsafe { cell.range(a, b) }, act, p);
    });
}

/// `activate(round(x))`: a bf16 / f16 linear's rounding and its activation in one pass over `x`
/// (the same bits as [`round_par`] then [`activate`], element by element).
pub fn round_then_activate(pool: &ThreadPool, x: &mut [f32], act: Activation, p: Precision) {
    if !p.is_half() {
        return activate(pool, x, act, p);
    }
    let len = x.len();
    let cell = SyncSlice(x.as_mut_ptr(), len);
    pool.run_chunks(len, 1024, &|a, b| {
        // SAFETY: chunks [a, b) are disjoint sub-ranges of the buffer.
        round_then_activate_slice(unsafe { cell.range(a, b) }, act, p);
    });
}

multiversion! {
    fn round_then_activate_slice(s: &mut [f32], act: Activation, p: Precision) {
        by_precision!(p, r => match act {
            Activation::GeluTanh => s.iter_mut().for_each(|v| *v = r(gelu_tanh(r(*v)))),
            Activation::GeluErf => s.iter_mut().for_each(|v| *v = r(gelu_erf(r(*v)))),
            Activation::Silu => s.iter_mut().for_each(|v| *v = r(silu(r(*v)))),
        })
    }
}

multiversion! {
    fn activate_slice(s: &mut [f32], act: Activation, p: Precision) {
        // One loop per activation so each vectorises without a per-element branch.
        macro_rules! each {
            ($f:expr) => {
                by_precision!(p, r => s.iter_mut().for_each(|v| *v = r($f(*v))))
            };
        }
        match act {
            Activation::GeluTanh => each!(gelu_tanh),
            Activation::GeluErf => each!(gelu_erf),
            Activation::Silu => each!(silu),
        }
    }
}

multiversion! {
    /// Rotate-half RoPE on one head in place: v = v·cos + rotate_half(v)·sin, rotate_half(v) =
    /// (−v[half..], v[..half]). `each_op` rounds every product and the sum (PyTorch's bf16 text
    /// path), otherwise only the result (the vision path's f32 upcast). Branch-free halves so
    /// the loops vectorise.
    pub fn rotate_half(v: &mut [f32], cos: &[f32], sin: &[f32], p: Precision, each_op: bool) {
        let half = v.len() / 2;
        let (lo, hi) = v.split_at_mut(half);
        let (c_lo, c_hi) = cos[..2 * half].split_at(half);
        let (s_lo, s_hi) = sin[..2 * half].split_at(half);
        macro_rules! each {
            ($r:expr, $each:expr) => {
                for j in 0..half {
                    let (a, b) = (lo[j], hi[j]);
                    if $each {
                        lo[j] = $r($r(a * c_lo[j]) + $r(-b * s_lo[j]));
                        hi[j] = $r($r(b * c_hi[j]) + $r(a * s_hi[j]));
                    } else {
                        lo[j] = $r(a * c_lo[j] + -b * s_lo[j]);
                        hi[j] = $r(b * c_hi[j] + a * s_hi[j]);
                    }
                }
            };
        }
        by_precision!(p, r => if each_op { each!(r, true) } else { each!(r, false) })
    }
}

/// `buf` as `len` zeros, keeping its allocation (activation buffers reused across steps).
pub fn zeroed(buf: &mut Vec<f32>, len: usize) {
    buf.clear();
    buf.resize(len, 0.0);
}

/// `buf` as `len` values for an output that is written whole before it is read (a linear's y:
/// every GEMM path stores each element, none accumulates into what was there), keeping its
/// allocation without clearing it: the memset of [`zeroed`] was 2 % of a prefill.
pub fn sized(buf: &mut Vec<f32>, len: usize) {
    buf.resize(len, 0.0);
}

multiversion! {
    /// SwiGLU combine: `gate[i] = round(round(silu(gate[i])) · up[i])`.
    pub fn silu_mul(gate: &mut [f32], up: &[f32], p: Precision) {
        by_precision!(p, r => {
            for (g, u) in gate.iter_mut().zip(up) {
                *g = r(r(silu(*g)) * u);
            }
        })
    }
}

/// GLU combine with any supported activation: `gate[i] = round(round(act(gate[i])) · up[i])`, the
/// two roundings transformers' `act_fn(gate_proj(x)) * up_proj(x)` makes; SiLU takes the
/// vectorised [`silu_mul`] (same bits).
pub fn act_mul(gate: &mut [f32], up: &[f32], act: Activation, p: Precision) {
    match act {
        Activation::Silu => silu_mul(gate, up, p),
        other => {
            for (g, u) in gate.iter_mut().zip(up) {
                *g = p.round(p.round(other.apply(*g)) * u);
            }
        }
    }
}

multiversion! {
    /// Residual add: x += y with one rounding.
    pub fn add_inplace(x: &mut [f32], y: &[f32], p: Precision) {
        by_precision!(p, r => {
            for (a, b) in x.iter_mut().zip(y) {
                *a = r(*a + b);
            }
        })
    }
}

/// Residual add x += y (rounded to `p`) on all cores; rows of `width` values (element-wise, so
/// the same bits as one pass).
pub fn residual_add(pool: &ThreadPool, x: &mut [f32], y: &[f32], width: usize, p: Precision) {
    let rows = x.len() / width;
    par_row_blocks(pool, rows, [x], [width], &|r0, r1, [x]: [&mut [f32]; 1]| {
        add_inplace(x, &y[r0 * width..r1 * width], p)
    });
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

/// A buffer's base pointer shared with pool tasks that write disjoint rows of it.
pub(crate) struct RawRows<T>(pub(crate) *mut T);
// SAFETY: only used for disjoint row ranges, see the call sites.
unsafe impl<T> Sync for RawRows<T> {}

impl<T> RawRows<T> {
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}

/// Rows below which [`par_row_blocks`] stays on the calling thread (a pool round trip costs more).
const PAR_MIN_VALUES: usize = 1 << 15;

/// The work of [`par_row_blocks`]: first row, end row, the buffers' rows.
pub type RowBlockFn<'a, const N: usize> = dyn Fn(usize, usize, [&mut [f32]; N]) + Sync + 'a;

/// `f(r0, r1, parts)` over disjoint row ranges [r0, r1) of `rows` rows, in parallel on `pool`:
/// `parts[i]` is rows [r0, r1) of `bufs[i]`, which has `widths[i]` values per row. For the
/// element-wise steps between GEMMs (residual adds, RoPE, rounding), which otherwise leave all
/// but one core idle.
pub fn par_row_blocks<const N: usize>(
    pool: &ThreadPool,
    rows: usize,
    bufs: [&mut [f32]; N],
    widths: [usize; N],
    f: &RowBlockFn<'_, N>,
) {
    for (b, &w) in bufs.iter().zip(&widths) {
        assert!(
            b.len() >= rows * w,
            "buffer shorter than {rows} rows of {w}"
        );
    }
    let total: usize = widths.iter().sum::<usize>() * rows;
    if total < PAR_MIN_VALUES || pool.threads() == 1 {
        let mut i = 0;
        let parts = bufs.map(|b| {
            i += 1;
            &mut b[..rows * widths[i - 1]]
        });
        return f(0, rows, parts);
    }
    let cells = bufs.map(|b| SyncSlice(b.as_mut_ptr(), b.len()));
    pool.run_chunks(rows, 1, &|a, b| {
        // SAFETY: run_chunks hands out disjoint row ranges [a, b) ⊆ [0, rows), so the value
        // ranges of each buffer are disjoint between tasks and inside it (asserted above).
        let parts =
            std::array::from_fn(|i| unsafe { cells[i].range(a * widths[i], b * widths[i]) });
        f(a, b, parts)
    });
}

/// `p.round_slice(xs)` on all cores.
pub fn round_par(pool: &ThreadPool, xs: &mut [f32], p: Precision) {
    if p.is_half() {
        let n = xs.len();
        par_row_blocks(pool, n, [xs], [1], &|_, _, [x]: [&mut [f32]; 1]| {
            p.round_slice(x)
        });
    }
}

#[cfg(test)]
mod tests;
