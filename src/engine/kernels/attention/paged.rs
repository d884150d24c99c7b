//! Causal attention for the text decoder that reads K/V straight out of a paged cache.
//!
//! Every query row is computed on its own, with a fixed summation order: scores are 16-lane dot
//! products, P·V accumulates keys in index order. So a token's attention output does not depend
//! on how many other rows share the call — batched decode equals single-request decode, a
//! recomputed prefill equals the token-by-token run, and paged equals contiguous bit for bit.
//! Rounding points follow the eager PyTorch path of [`super`]: scores
//! round(round(q·k)·scale), fp32 softmax, P rounded to the activation precision, output rounded.

use std::cell::RefCell;

use super::paged_avx512::{self as blocks, LANES};
use super::AttnShape;
use crate::engine::kernels::bf16::Precision;
use crate::engine::kernels::ops::SyncSlice;
use crate::engine::kernels::runtime::plan::{self, PagedAttention};
use crate::engine::kernels::runtime::pool::ThreadPool;
use crate::engine::kernels::runtime::simd::{exp_f32, multiversion};

/// Key/value rows of one layer: `n_slots × kv_dim` values, f32, bf16 bit patterns or f16.
#[derive(Clone, Copy)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
    F16(&'a [half::f16]),
}

impl KvRows<'_> {
    /// Widen `len` values starting at `at` into `dst`.
    #[inline(always)]
    fn load(&self, at: usize, dst: &mut [f32]) {
        match self {
            KvRows::F32(s) => dst.copy_from_slice(&s[at..at + dst.len()]),
            KvRows::Bf16(s) => {
                let n = dst.len();
                for (d, &b) in dst.iter_mut().zip(&s[at..at + n]) {
                    *d = f32::from_bits((b as u32) << 16);
                }
            }
            KvRows::F16(s) => crate::engine::kernels::bf16::widen_f16(dst, &s[at..at + dst.len()]),
        }
    }
}

/// The query rows of one sequence and where its keys live.
#[derive(Debug, Clone, Copy)]
pub struct PagedSeq<'a> {
    /// First row of this sequence in `q` / `out`.
    pub q0: usize,
    /// New tokens (query rows); their keys are already written at cache indices start..start+len.
    pub len: usize,
    /// Tokens cached before this step: query i sees keys 0..=start+i.
    pub start: usize,
    /// Cache block of every `block_size` keys.
    pub blocks: &'a [u32],
}

/// Queries per task; bounds the score scratch to QUERY_BLOCK × keys.
const QUERY_BLOCK: usize = 32;
/// Keys widened to f32 at a time (shared by all rows of a task). At head size 128 the transposed
/// copy is 16 KB, half of a Zen 4 L1; 64 keys (the whole L1) made the score loop 15 % slower.
const KEY_TILE: usize = 32;
const _: () = assert!(KEY_TILE.is_multiple_of(blocks::KEYS) && KEY_TILE >= blocks::KEYS);

#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    tile: Vec<f32>,
    acc: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// out[rows of each seq] = causal softmax(q·kᵀ·scale)·v over the seq's cached keys.
/// `q`/`out` rows hold n_heads·hd values; cache slots hold n_kv_heads·hd values, slot of key j
/// = blocks[j / block_size]·block_size + j % block_size.
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    pool: &ThreadPool,
    shape: AttnShape,
    q: &[f32],
    k: KvRows,
    v: KvRows,
    block_size: usize,
    seqs: &[PagedSeq],
    scale: f32,
    p: Precision,
    out: &mut [f32],
) {
    run(pool, shape, q, k, v, block_size, seqs, scale, p, true, out)
}

/// [`paged_attention`], with the blocked score and P·V loops (`blocked`) or the plain per-key
/// ones; both give the same bits (tested), the blocked ones are faster where many rows share a
/// key tile (prefill).
#[allow(clippy::too_many_arguments)]
fn run(
    pool: &ThreadPool,
    shape: AttnShape,
    q: &[f32],
    k: KvRows,
    v: KvRows,
    block_size: usize,
    seqs: &[PagedSeq],
    scale: f32,
    p: Precision,
    blocked: bool,
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
    for (si, s) in seqs.iter().enumerate() {
        assert!(
            s.blocks.len() * block_size >= s.start + s.len,
            "block table too short"
        );
        // One task per KV head: the query heads sharing it (GQA) widen each key tile once.
        for g in 0..n_kv_heads {
            let mut i = 0;
            while i < s.len {
                let e = (i + QUERY_BLOCK).min(s.len);
                tasks.push((si, g, i, e));
                i = e;
            }
        }
    }
    let need = seqs.iter().map(|s| (s.q0 + s.len) * qs).max().unwrap_or(0);
    assert!(out.len() >= need && q.len() >= need);
    let out_cell = SyncSlice(out.as_mut_ptr(), out.len());
    let job = Job {
        q,
        k,
        v,
        block_size,
        scale,
        p,
        qs,
        kvs,
        hd,
        group,
        blocked,
        out: &out_cell,
    };
    pool.run(tasks.len(), &|ti| {
        let (si, g, i0, i1) = tasks[ti];
        SCRATCH.with(|cell| attend(&job, &seqs[si], g, i0, i1, &mut cell.borrow_mut()));
    });
}

/// Everything a task reads, shared by all tasks of one call.
struct Job<'a> {
    q: &'a [f32],
    k: KvRows<'a>,
    v: KvRows<'a>,
    block_size: usize,
    scale: f32,
    p: Precision,
    qs: usize,
    kvs: usize,
    hd: usize,
    group: usize,
    /// Use the blocked loops where they apply (see [`run`]).
    blocked: bool,
    out: &'a SyncSlice,
}

multiversion! {
    // Dispatched: the dot products, axpys and roundings vectorise to the CPU's widest ISA
    // (bit-identical across levels: no FMA contraction, fixed summation order).
    /// Query rows [i0, i1) of sequence `s`, every query head of KV head `g`.
    fn attend(job: &Job<'_>, s: &PagedSeq<'_>, g: usize, i0: usize, i1: usize, scratch: &mut Scratch) {
        let Job { q, k, v, block_size, scale, p, qs, kvs, hd, group, blocked, out } = *job;
        let slot = |j: usize| -> usize {
            (s.blocks[j / block_size] as usize * block_size + j % block_size) * kvs
        };
        let rows = i1 - i0;
        // Keys visible to the last query of the block.
        let kmax = s.start + i1;
        // Row index inside the task for query head g·group + hh, query row r.
        let lines = group * rows;
        let Scratch { scores, tile, acc } = scratch;
        scores.resize(lines * kmax, 0.0);
        tile.resize(2 * KEY_TILE * hd, 0.0);
        // The transposed tile costs hd scattered stores per key; worth it only when enough rows
        // share it. Either way the scores are bit-identical.
        let use_blocks = blocked
            && plan::active().paged_attention == PagedAttention::Avx512
            && blocks::available();
        let transposed = use_blocks && hd.is_multiple_of(LANES) && lines >= MIN_BLOCKED_LINES;
        // Scores, one key tile at a time.
        let mut j0 = 0;
        while j0 < kmax {
            let j1 = (j0 + KEY_TILE).min(kmax);
            // Row-wise keys in the first half of `tile`; the transposed copy (one staging row
            // each) in the second.
            let (rowwise, kt) = tile.split_at_mut(KEY_TILE * hd);
            for j in j0..j1 {
                if transposed {
                    let row = &mut rowwise[..hd];
                    k.load(slot(j) + g * hd, row);
                    for (d, &x) in row.iter().enumerate() {
                        kt[d * KEY_TILE + j - j0] = x;
                    }
                } else {
                    k.load(slot(j) + g * hd, &mut rowwise[(j - j0) * hd..(j - j0 + 1) * hd]);
                }
            }
            // Query row and last visible key + 1 (within this tile) of a line.
            let line_at = |line: usize| {
                let (hh, r) = (line / rows, line % rows);
                let qrow = &q[(s.q0 + i0 + r) * qs + (g * group + hh) * hd..][..hd];
                (qrow, j1.min(s.start + i0 + r + 1))
            };
            if transposed {
                // Up to LINES lines at a time share each key load.
                for l0 in (0..lines).step_by(blocks::LINES) {
                    let nl = blocks::LINES.min(lines - l0);
                    let mut q_rows: [&[f32]; blocks::LINES] = [&[]; blocks::LINES];
                    let mut ends = [j0; blocks::LINES];
                    for li in 0..nl {
                        (q_rows[li], ends[li]) = line_at(l0 + li);
                    }
                    let last = ends[..nl].iter().copied().max().unwrap_or(j0);
                    let mut jb = j0;
                    while jb < last {
                        let tile = &kt[jb - j0..];
                        let d = blocks::dots_lines(&q_rows[..nl], tile, KEY_TILE, scale, p);
                        for (li, &end) in ends[..nl].iter().enumerate() {
                            let n = end.saturating_sub(jb).min(blocks::KEYS);
                            let at = (l0 + li) * kmax + jb;
                            scores[at..at + n].copy_from_slice(&d[li][..n]);
                        }
                        jb += blocks::KEYS;
                    }
                }
            } else {
                for line in 0..lines {
                    let (qrow, end) = line_at(line);
                    let srow = &mut scores[line * kmax..(line + 1) * kmax];
                    for j in j0..end {
                        let d = dot(qrow, &rowwise[(j - j0) * hd..(j - j0 + 1) * hd]);
                        srow[j] = p.round(p.round(d) * scale);
                    }
                }
            }
            j0 = j1;
        }
        // Softmax per row over its visible keys (scaled by 1/Σ, as PyTorch's CPU softmax).
        let visible = |line: usize| s.start + i0 + line % rows + 1;
        for line in 0..lines {
            let row = &mut scores[line * kmax..line * kmax + visible(line)];
            let max = lane_max(row);
            for x in row.iter_mut() {
                *x = exp_f32(*x - max);
            }
        }
        // Each row's sum is a running sum in key order: not 16 partial sums, because the eager
        // PyTorch path reduces long rows in a lane tree whose shape depends on the mask's full
        // width (the batch), short ones in key order, and the key order is what keeps the bf16
        // text path bit-exact on the fixtures. One such chain waits on every add, so SUM_ROWS
        // rows advance side by side (each still in its own key order).
        for l0 in (0..lines).step_by(SUM_ROWS) {
            let n = SUM_ROWS.min(lines - l0);
            let mut sums = [0f32; SUM_ROWS];
            let mut common = 0;
            if n == SUM_ROWS {
                // A fixed count of rows, so the sums stay in registers.
                common = (l0..l0 + n).map(visible).min().unwrap_or(0);
                let rows: [&[f32]; SUM_ROWS] =
                    std::array::from_fn(|li| &scores[(l0 + li) * kmax..][..common]);
                for j in 0..common {
                    for (sum, row) in sums.iter_mut().zip(&rows) {
                        *sum += row[j];
                    }
                }
            }
            for (li, &sum) in sums[..n].iter().enumerate() {
                let row = &mut scores[(l0 + li) * kmax..(l0 + li) * kmax + visible(l0 + li)];
                let inv = 1.0 / row[common..].iter().fold(sum, |a, &x| a + x);
                for x in row.iter_mut() {
                    *x = p.round(*x * inv);
                }
            }
        }
        // P·V, keys in index order.
        acc.clear();
        acc.resize(lines * hd, 0.0);
        let mut j0 = 0;
        while j0 < kmax {
            let j1 = (j0 + KEY_TILE).min(kmax);
            for j in j0..j1 {
                v.load(slot(j) + g * hd, &mut tile[(j - j0) * hd..(j - j0 + 1) * hd]);
            }
            for line in 0..lines {
                let visible = s.start + i0 + line % rows + 1;
                let prow = &scores[line * kmax..(line + 1) * kmax];
                let arow = &mut acc[line * hd..(line + 1) * hd];
                let (p_tile, n_keys) = (&prow[j0..], j1.min(visible).saturating_sub(j0));
                match hd {
                    64 | 128 if use_blocks => blocks::axpy_keys(arow, p_tile, tile, n_keys),
                    _ => {
                        for j in 0..n_keys {
                            axpy(arow, p_tile[j], &tile[j * hd..(j + 1) * hd]);
                        }
                    }
                }
            }
            j0 = j1;
        }
        for line in 0..lines {
            let (hh, r) = (line / rows, line % rows);
            let base = (s.q0 + i0 + r) * qs + (g * group + hh) * hd;
            // SAFETY: row q0+i0+r, columns of head g·group+hh of `out` belong to this task only
            // (tasks partition (seq rows × KV heads), a KV head owns its query heads); the
            // caller's assert keeps them in bounds.
            let o = unsafe { out.range(base, base + hd) };
            for (d, &a) in o.iter_mut().zip(&acc[line * hd..(line + 1) * hd]) {
                *d = p.round(a);
            }
        }
    }
}

/// Softmax rows whose key-order sums run side by side.
const SUM_ROWS: usize = 8;

/// Rows sharing a key tile from which the transposed score loop pays off.
const MIN_BLOCKED_LINES: usize = 4;

/// max over `xs` (−∞ when empty), 16 lanes at a time; max is exact, so any order gives the same
/// value (NaN scores cannot occur: q and k are finite).
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    let m = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    tail.iter().copied().fold(m, f32::max)
}

/// Dot product with 16 independent accumulators, reduced in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
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

#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rnd(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The dispatched (AVX-512 / AVX2) and baseline builds of the task body agree bit for bit.
    #[test]
    fn isa_levels_are_bit_identical() {
        use crate::engine::kernels::runtime::plan::KernelPlan;
        use crate::engine::kernels::runtime::simd::Level;
        let pool = ThreadPool::new(2);
        let shape = AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
        };
        let (kvs, qs, n) = (128, 256, 37);
        let mut seed = 11;
        let k = rnd(n * kvs, &mut seed);
        let v = rnd(n * kvs, &mut seed);
        let q = rnd(n * qs, &mut seed);
        let blocks: Vec<u32> = vec![0];
        let seq = PagedSeq {
            q0: 0,
            len: n,
            start: 0,
            blocks: &blocks,
        };
        let run = |p: Precision| {
            let mut out = vec![0f32; n * qs];
            let (kr, vr) = (KvRows::F32(&k), KvRows::F32(&v));
            paged_attention(
                &pool,
                shape,
                &q,
                kr,
                vr,
                1 << 20,
                &[seq],
                0.125,
                p,
                &mut out,
            );
            out
        };
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            let best = run(p);
            let base = KernelPlan::at_level(Level::Base).run(|| run(p));
            assert!(best
                .iter()
                .zip(&base)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    /// The blocked loops (transposed key tile for the scores, register-held P·V accumulators)
    /// give the plain loops' bits: both head sizes that have a blocked P·V, f32 and bf16 caches,
    /// both precisions, cached prefixes, tiles cut short by the causal mask and by the sequence.
    #[test]
    fn blocked_loops_match_the_plain_ones_bit_for_bit() {
        let pool = ThreadPool::new(2);
        for hd in [128, 64, 48] {
            let shape = AttnShape {
                n_heads: 4,
                n_kv_heads: 2,
                head_dim: hd,
            };
            let (kvs, qs) = (2 * hd, 4 * hd);
            let (cached, rows) = (29, 77);
            let n = cached + rows;
            let mut seed = hd as u64;
            let k = rnd(n * kvs, &mut seed);
            let v = rnd(n * kvs, &mut seed);
            let q = rnd(2 * rows * qs, &mut seed);
            let kb: Vec<u16> = k.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
            let vb: Vec<u16> = v.iter().map(|x| (x.to_bits() >> 16) as u16).collect();
            let kh: Vec<half::f16> = k.iter().map(|&x| half::f16::from_f32(x)).collect();
            let vh: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
            let blocks: Vec<u32> = vec![0];
            // One prefill with a cached prefix, and a 3-row chunk (fewer rows than the blocked
            // score loop wants) after it.
            let seqs = [
                PagedSeq {
                    q0: 0,
                    len: rows,
                    start: cached,
                    blocks: &blocks,
                },
                PagedSeq {
                    q0: rows,
                    len: 3,
                    start: n - 3,
                    blocks: &blocks,
                },
            ];
            for cache in [Precision::F32, Precision::Bf16, Precision::F16] {
                for p in [Precision::F32, Precision::Bf16, Precision::F16] {
                    let go = |blocked: bool| {
                        let mut out = vec![0f32; 2 * rows * qs];
                        let (kr, vr) = match cache {
                            Precision::Bf16 => (KvRows::Bf16(&kb), KvRows::Bf16(&vb)),
                            Precision::F16 => (KvRows::F16(&kh), KvRows::F16(&vh)),
                            Precision::F32 => (KvRows::F32(&k), KvRows::F32(&v)),
                        };
                        run(
                            &pool,
                            shape,
                            &q,
                            kr,
                            vr,
                            1 << 20,
                            &seqs,
                            0.09,
                            p,
                            blocked,
                            &mut out,
                        );
                        out
                    };
                    let (fast, plain) = (go(true), go(false));
                    assert!(
                        fast.iter()
                            .zip(&plain)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "hd {hd}, {cache:?} cache, {p:?}"
                    );
                    assert!(fast[..(rows + 3) * qs].iter().all(|x| x.is_finite()));
                }
            }
        }
    }

    /// The same keys laid out contiguously or scattered over shuffled blocks give identical
    /// outputs, and a row's output does not depend on the rows computed with it.
    #[test]
    fn paged_layout_and_batching_do_not_change_results() {
        let pool = ThreadPool::new(2);
        let shape = AttnShape {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 32,
        };
        let (kvs, qs, n) = (64, 128, 45);
        let mut seed = 7;
        let k = rnd(n * kvs, &mut seed);
        let v = rnd(n * kvs, &mut seed);
        let q = rnd(n * qs, &mut seed);
        let p = Precision::F32;
        let contiguous: Vec<u32> = vec![0];
        let mut full = vec![0f32; n * qs];
        let seq = PagedSeq {
            q0: 0,
            len: n,
            start: 0,
            blocks: &contiguous,
        };
        let (kr, vr) = (KvRows::F32(&k), KvRows::F32(&v));
        paged_attention(
            &pool,
            shape,
            &q,
            kr,
            vr,
            1 << 20,
            &[seq],
            0.17,
            p,
            &mut full,
        );
        // Block size 8, blocks shuffled: logical block b lives in physical block perm[b].
        let bs = 8;
        let perm: Vec<u32> = vec![3, 0, 5, 1, 4, 2];
        let mut kp = vec![0f32; 6 * bs * kvs];
        let mut vp = vec![0f32; 6 * bs * kvs];
        for j in 0..n {
            let dst = (perm[j / bs] as usize * bs + j % bs) * kvs;
            kp[dst..dst + kvs].copy_from_slice(&k[j * kvs..(j + 1) * kvs]);
            vp[dst..dst + kvs].copy_from_slice(&v[j * kvs..(j + 1) * kvs]);
        }
        // Last row alone (decode of token n-1).
        let mut one = vec![0f32; qs];
        let seq = PagedSeq {
            q0: 0,
            len: 1,
            start: n - 1,
            blocks: &perm,
        };
        paged_attention(
            &pool,
            shape,
            &q[(n - 1) * qs..],
            KvRows::F32(&kp),
            KvRows::F32(&vp),
            bs,
            &[seq],
            0.17,
            p,
            &mut one,
        );
        assert_eq!(one, full[(n - 1) * qs..]);
    }
}
