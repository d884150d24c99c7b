//! Scaled dot-product attention over row-major [tokens, heads·head_dim] buffers, following the
//! eager PyTorch path: scores = round(round(q·k)·scale), fp32 softmax, probabilities rounded to
//! the activation precision, then P·V. Scores and P·V are computed a block of queries at a time
//! with GEMMs; the score block is never larger than [QUERY_BLOCK, keys].

use std::cell::RefCell;

use super::bf16::Precision;
use super::gemm_portable::gemm_strided;
use super::ops::SyncSlice;
use super::pool::ThreadPool;
use super::simd::{exp_f32, multiversion};

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Which keys a query may see.
#[derive(Debug, Clone, Copy)]
pub enum Mask {
    /// Every key of the segment (vision).
    Full,
    /// Query i (0-based inside the segment) sees keys 0..=offset+i (text, with `offset` cached tokens).
    Causal { offset: usize },
}

/// Queries rows [q0, q0+len) attending to key rows [k0, k0+klen).
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub q0: usize,
    pub len: usize,
    pub k0: usize,
    pub klen: usize,
    pub mask: Mask,
}

const QUERY_BLOCK: usize = 64;

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// out[q rows] = softmax(q·kᵀ·scale + mask)·v for every segment and head.
/// `q`/`out` have rows of n_heads·hd values; `k`/`v` rows of n_kv_heads·hd values.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    shape: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &[Segment],
    scale: f32,
    p: Precision,
    out: &mut [f32],
) {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    let group = n_heads / n_kv_heads;
    let qs = n_heads * hd;
    let kvs = n_kv_heads * hd;
    let mut tasks: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (si, s) in segments.iter().enumerate() {
        for h in 0..n_heads {
            let mut i = 0;
            while i < s.len {
                let e = (i + QUERY_BLOCK).min(s.len);
                tasks.push((si, h, i, e));
                i = e;
            }
        }
    }
    assert!(
        out.len()
            >= segments
                .iter()
                .map(|s| (s.q0 + s.len) * qs)
                .max()
                .unwrap_or(0)
    );
    let out_cell = SyncSlice(out.as_mut_ptr(), out.len());
    pool.run(tasks.len(), &|ti| {
        let (si, h, i0, i1) = tasks[ti];
        let s = segments[si];
        let g = h / group;
        let rows = i1 - i0;
        // Keys visible to the last query of the block.
        let kmax = match s.mask {
            Mask::Full => s.klen,
            Mask::Causal { offset } => (offset + i1).min(s.klen),
        };
        if kmax == 0 {
            return;
        }
        SCORES.with(|cell| {
            let mut sc = cell.borrow_mut();
            sc.resize(rows * kmax, 0.0);
            let qa = &q[(s.q0 + i0) * qs + h * hd..];
            let kb = &k[s.k0 * kvs + g * hd..];
            // SAFETY: `sc` is a private buffer of rows × kmax values (row stride kmax).
            unsafe { gemm_strided(rows, kmax, hd, sc.as_mut_ptr(), kmax, qa, qs, 1, kb, 1, kvs) };
            for (r, row) in sc.chunks_exact_mut(kmax).enumerate() {
                let visible = match s.mask {
                    Mask::Full => kmax,
                    Mask::Causal { offset } => (offset + i0 + r + 1).min(kmax),
                };
                softmax_row(row, visible, scale, p);
            }
            let vb = &v[s.k0 * kvs + g * hd..];
            let base = (s.q0 + i0) * qs + h * hd;
            // SAFETY: rows [q0+i0, q0+i1) × columns [h·hd, (h+1)·hd) of `out` belong to this task
            // only; the assert above keeps them inside the buffer.
            unsafe {
                gemm_strided(
                    rows,
                    hd,
                    kmax,
                    out_cell.0.add(base),
                    qs,
                    &sc,
                    kmax,
                    1,
                    vb,
                    kvs,
                    1,
                )
            };
            if p == Precision::Bf16 {
                for r in 0..rows {
                    // SAFETY: same disjoint block as the GEMM above.
                    let o = unsafe { out_cell.range(base + r * qs, base + r * qs + hd) };
                    p.round_slice(o);
                }
            }
        });
    });
}

multiversion! {
    /// Eager-PyTorch softmax of one score row: round(round(s)·scale), f32 softmax over the
    /// visible keys, probabilities rounded; masked keys get probability 0.
    fn softmax_row(row: &mut [f32], visible: usize, scale: f32, p: Precision) {
        // 16 lanes with a fixed reduction order: vectorises (a single running max/sum is a
        // loop-carried dependency the compiler must keep scalar) and stays deterministic.
        const L: usize = 16;
        let vis = &mut row[..visible];
        for x in vis.iter_mut() {
            *x = p.round(p.round(*x) * scale);
        }
        let mut lanes = [f32::NEG_INFINITY; L];
        let mut chunks = vis.chunks_exact(L);
        for c in &mut chunks {
            for i in 0..L {
                lanes[i] = lanes[i].max(c[i]);
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(lanes.iter())
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut acc = [0f32; L];
        let mut chunks = vis.chunks_exact_mut(L);
        for c in &mut chunks {
            for i in 0..L {
                c[i] = exp_f32(c[i] - max);
                acc[i] += c[i];
            }
        }
        let mut sum = 0f32;
        for x in chunks.into_remainder() {
            *x = exp_f32(*x - max);
            sum += *x;
        }
        let sum = acc.iter().fold(sum, |a, &b| a + b);
        for x in vis.iter_mut() {
            *x = p.round(*x / sum);
        }
        row[visible..].iter_mut().for_each(|x| *x = 0.0);
    }
}
