//! Portable GEMM: the `gemm` crate (AVX-512 when the CPU has it, selected at run time), split over
//! output columns on the compute pool. bf16 and f16 weights are widened to f32 (exactly) one column
//! block at a time so the whole matrix is never converted.
//!
//! What every x86-64 CPU runs, weights below the plan's size bound (where a packed kernel's
//! per-call cost dominates) and the reference the other backends are tested against
//! (`tests/kernel_plans.rs`).

use half::{bf16, f16};

use crate::engine::kernels::runtime::pool::ThreadPool;
use crate::engine::kernels::runtime::simd::multiversion;

/// Columns per task: a block of bf16 weight rows widened to f32 stays L2-resident.
const BLOCK_N: usize = 64;

/// y[m, n0..n1] = x[m, k] · w[n0..n1, k]ᵀ for an f32 weight slice (row-major [n1-n0, k]).
fn gemm_block_f32(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n_block: usize,
    y: *mut f32,
    ldy: usize,
) {
    debug_assert!(x.len() >= m * k && w.len() >= n_block * k);
    // SAFETY: dst points at y[0, n0] inside a buffer of m rows with stride ldy ≥ n0 + n_block, and
    // each task writes a disjoint column range; lhs/rhs strides describe x [m,k] row-major and wᵀ
    // (element (kk, j) at w[j*k + kk]); sizes were checked by the caller.
    unsafe {
        gemm::gemm(
            m,
            n_block,
            k,
            y,
            1,
            ldy as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint column ranges of the output.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// y[m, n] = x[m, k] · wᵀ with f32 weights [n, k].
pub fn matmul_f32(
    pool: &ThreadPool,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    y: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
    let out = SendPtr(y.as_mut_ptr());
    pool.run_chunks(n, BLOCK_N, &|n0, n1| {
        let out = &out;
        // Offsetting inside the same allocation; see gemm_block_f32 for the write contract.
        let dst = out.0.wrapping_add(n0);
        gemm_block_f32(x, m, k, &w[n0 * k..n1 * k], n1 - n0, dst, n);
    });
}

/// y[m, n] = x[m, k] · wᵀ with bf16 weights [n, k], f32 accumulation.
pub fn matmul_bf16(
    pool: &ThreadPool,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[bf16],
    n: usize,
    y: &mut [f32],
) {
    matmul_widened(pool, x, m, k, w, n, y, crate::engine::kernels::bf16::widen)
}

/// y[m, n] = x[m, k] · wᵀ with f16 weights [n, k], f32 accumulation.
pub fn matmul_f16(
    pool: &ThreadPool,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f16],
    n: usize,
    y: &mut [f32],
) {
    matmul_widened(
        pool,
        x,
        m,
        k,
        w,
        n,
        y,
        crate::engine::kernels::bf16::widen_f16,
    )
}

/// y[m, n] = x[m, k] · wᵀ with 16-bit weights that `widen` turns into f32 exactly.
#[allow(clippy::too_many_arguments)]
fn matmul_widened<T: Sync>(
    pool: &ThreadPool,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[T],
    n: usize,
    y: &mut [f32],
    widen: fn(&mut [f32], &[T]),
) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
    let out = SendPtr(y.as_mut_ptr());
    pool.run_chunks(n, BLOCK_N, &|n0, n1| {
        let out = &out;
        let mut wide = vec![0f32; BLOCK_N * k];
        let mut j = n0;
        while j < n1 {
            let jb = (j + BLOCK_N).min(n1);
            let rows = jb - j;
            widen(&mut wide[..rows * k], &w[j * k..jb * k]);
            if m == 1 {
                // GEMV: a plain dot product per column beats gemm's packing overhead.
                for r in 0..rows {
                    let dot = dot_f32(&x[..k], &wide[r * k..(r + 1) * k]);
                    // SAFETY: column j + r < n is owned by this task (disjoint ranges).
                    unsafe { *out.0.add(j + r) = dot };
                }
            } else {
                gemm_block_f32(x, m, k, &wide[..rows * k], rows, out.0.wrapping_add(j), n);
            }
            j = jb;
        }
    });
}

multiversion! {
/// f32 dot product with 16 independent accumulators (vectorises well; the same summation order
/// on every ISA).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 16];
    let chunks = n / 16;
    for c in 0..chunks {
        let (pa, pb) = (&a[c * 16..c * 16 + 16], &b[c * 16..c * 16 + 16]);
        for i in 0..16 {
            acc[i] += pa[i] * pb[i];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 16..n {
        tail += a[i] * b[i];
    }
    acc.iter().sum::<f32>() + tail
}
}

/// C[m, n] = A[m, k] · B[k, n] for arbitrary element strides (row stride `rs`, column stride `cs`).
///
/// # Safety
/// `dst` must be valid for writes at every `dst + i·dst_rs + j` (i < m, j < n), and no other thread
/// may access those elements during the call. `a` and `b` bounds are checked.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    b_rs: usize,
    b_cs: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(k == 0 || (last(m, k, a_rs, a_cs) < a.len() && last(k, n, b_rs, b_cs) < b.len()));
    // SAFETY: operand reads are in bounds (checked above); dst validity is the caller's contract.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
