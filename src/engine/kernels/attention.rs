//! Scaled dot-product attention over row-major [tokens, heads·head_dim] buffers, following the
//! eager PyTorch path: scores = round(round(q·k)·scale), fp32 softmax, probabilities rounded to
//! the activation precision, then P·V.

use super::bf16::Precision;
use super::gemm_portable::dot_f32;
use super::ops::SyncSlice;
use super::pool::ThreadPool;

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
    /// Query i (0-based inside the call) sees keys 0..=offset+i (text, with `offset` cached tokens).
    Causal { offset: usize },
}

/// A block of queries attending to a block of keys: queries rows [q0, q0+len) and keys rows
/// [k0, k0+klen) of the given buffers.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub q0: usize,
    pub len: usize,
    pub k0: usize,
    pub klen: usize,
    pub mask: Mask,
}

const QUERY_BLOCK: usize = 32;

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
    let q_stride = n_heads * hd;
    let kv_stride = n_kv_heads * hd;
    // Tasks: (segment, head, query block).
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
    let out_cell = SyncSlice(out.as_mut_ptr(), out.len());
    pool.run(tasks.len(), &|ti| {
        let (si, h, i0, i1) = tasks[ti];
        let s = segments[si];
        let g = h / group;
        let mut scores = vec![0f32; s.klen];
        let mut acc = vec![0f32; hd];
        for i in i0..i1 {
            let qrow = &q[(s.q0 + i) * q_stride + h * hd..][..hd];
            let visible = match s.mask {
                Mask::Full => s.klen,
                Mask::Causal { offset } => (offset + i + 1).min(s.klen),
            };
            let mut max = f32::NEG_INFINITY;
            for (j, sc) in scores[..visible].iter_mut().enumerate() {
                let krow = &k[(s.k0 + j) * kv_stride + g * hd..][..hd];
                let dot = p.round(dot_f32(qrow, krow));
                *sc = p.round(dot * scale);
                max = max.max(*sc);
            }
            let mut sum = 0f32;
            for sc in scores[..visible].iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (j, sc) in scores[..visible].iter().enumerate() {
                let pj = p.round(sc / sum);
                let vrow = &v[(s.k0 + j) * kv_stride + g * hd..][..hd];
                for (a, vv) in acc.iter_mut().zip(vrow) {
                    *a += pj * vv;
                }
            }
            let base = (s.q0 + i) * q_stride + h * hd;
            // SAFETY: each (row, head) slot of `out` is written by exactly one task.
            let orow = unsafe { out_cell.range(base, base + hd) };
            for (o, a) in orow.iter_mut().zip(&acc) {
                *o = p.round(*a);
            }
        }
    });
}
