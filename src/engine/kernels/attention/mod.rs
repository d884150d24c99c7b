//! Scaled dot-product attention over row-major [tokens, heads·head_dim] buffers, following the
//! eager PyTorch path: scores = round(round(q·k)·scale), fp32 softmax, probabilities rounded to
//! the activation precision, then P·V. Scores and P·V are computed a block of queries at a time
//! with GEMMs; the score block is never larger than [QUERY_BLOCK, keys].
//!
//! Kernels ([`Kernel`], chosen by the plan): AMX-BF16 tiles (vision tower 1.12–1.17 → 0.87–0.91 s
//! on the AMX VM), AVX512-BF16 tiles ([`bf16`]: 2B vision 2.40 → 1.73 s when they came), and the
//! f32 GEMMs every CPU runs.

pub mod bf16;
pub mod paged;
pub mod paged_avx512;
pub mod softmax_avx512;

use std::cell::RefCell;
use std::sync::OnceLock;

use self::bf16::{self as words, PackedRight, TILE_COLS, TILE_ROWS};
use super::bf16::{by_precision, Precision};
use super::gemm::portable::gemm_strided;
use super::ops::SyncSlice;
use super::runtime::aligned::AlignedBuf;
use super::runtime::amx::{self, Tiles};
use super::runtime::pool::ThreadPool;
use super::runtime::simd::{exp_f32, multiversion};

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
/// Query rows the AMX path scores at a time: two tile rows, so its score scratch is
/// AMX_ROWS × keys (100 KB for a 784-patch image, inside L2).
const AMX_ROWS: usize = 2 * amx::TILE;

/// Which kernel runs the two attention GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// f32 GEMMs (every precision, every CPU).
    F32,
    /// bf16 mode: AVX512-BF16 `vdpbf16ps` register tiles.
    Bf16Dot,
    /// bf16 mode: AMX-BF16 tiles.
    Bf16Amx,
}

impl Kernel {
    /// The kernel the plan in force picks for precision `p` (the bf16 ones only in bf16 mode).
    pub fn best(p: Precision) -> Kernel {
        match super::runtime::plan::active().attention {
            k if k.runs(p) => k,
            _ => Kernel::F32,
        }
    }

    /// Whether this kernel can run on this CPU for precision `p` (the bf16 ones need bf16 mode).
    pub fn runs(self, p: Precision) -> bool {
        match self {
            Kernel::F32 => true,
            Kernel::Bf16Dot => p == Precision::Bf16 && words::available(),
            Kernel::Bf16Amx => p == Precision::Bf16 && words::available() && amx::available(),
        }
    }

    /// The name `qwen3vl env` prints.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::F32 => "f32",
            Kernel::Bf16Dot => "bf16-dot",
            Kernel::Bf16Amx => "bf16-amx",
        }
    }
}

thread_local! {
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static WORD_BUFFERS: RefCell<WordBuffers> = const { RefCell::new(WordBuffers::new()) };
}

/// Per-thread scratch of the bf16 path: one query block as words, one row tile of scores and
/// of probabilities as words, one output tile.
struct WordBuffers {
    q: AlignedBuf<u32>,
    scores: AlignedBuf<f32>,
    probs: AlignedBuf<u32>,
    out: AlignedBuf<f32>,
}

impl WordBuffers {
    const fn new() -> Self {
        WordBuffers {
            q: AlignedBuf::new(),
            scores: AlignedBuf::new(),
            probs: AlignedBuf::new(),
            out: AlignedBuf::new(),
        }
    }
}

/// out[q rows] = softmax(q·kᵀ·scale + mask)·v for every segment and head, with the fastest
/// kernel here ([`Kernel::best`]).
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
    let kernel = Kernel::best(p);
    attention_with(kernel, pool, shape, q, k, v, segments, scale, p, out)
}

/// [`attention`] with a chosen kernel, which must [`Kernel::runs`] here (tests compare them).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    kernel: Kernel,
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
    assert!(
        kernel.runs(p),
        "attention kernel {kernel:?} cannot run here"
    );
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
    if kernel != Kernel::F32 {
        let ctx = WordContext {
            amx: kernel == Kernel::Bf16Amx,
            shape,
            q,
            k,
            v,
            segments,
            scale,
            out: out_cell,
        };
        return attention_words(pool, &ctx, &tasks);
    }
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
            if p.is_half() {
                for r in 0..rows {
                    // SAFETY: same disjoint block as the GEMM above.
                    let o = unsafe { out_cell.range(base + r * qs, base + r * qs + hd) };
                    p.round_slice(o);
                }
            }
        });
    });
}

struct WordContext<'a> {
    /// AMX tiles rather than `vdpbf16ps` ones.
    amx: bool,
    shape: AttnShape,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    segments: &'a [Segment],
    scale: f32,
    out: SyncSlice,
}

/// The bf16 path: same block tasks as the f32 path, its softmax as the AVX-512 kernel (same bits;
/// this path only runs where the tiles, and so AVX-512F, do), both GEMMs as `vdpbf16ps` tiles.
/// Keys and values of every (segment, kv head) are packed once; each block then works one row
/// tile at a time (scores → softmax → probabilities → output) so its scratch stays in L1.
fn attention_words(pool: &ThreadPool, cx: &WordContext, tasks: &[(usize, usize, usize, usize)]) {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = cx.shape;
    let (qs, kvs) = (n_heads * hd, n_kv_heads * hd);
    let group = n_heads / n_kv_heads;
    let n_packs = cx.segments.len() * n_kv_heads;
    let packs: Vec<OnceLock<(PackedRight, PackedRight)>> =
        (0..n_packs).map(|_| OnceLock::new()).collect();
    pool.run(n_packs, &|i| {
        let (s, g) = (cx.segments[i / n_kv_heads], i % n_kv_heads);
        let kb = &cx.k[s.k0 * kvs..];
        let vb = &cx.v[s.k0 * kvs..];
        // AMX tiles reduce over 16 words at a time; zero steps pad the rest.
        let align = if cx.amx { amx::TILE } else { 1 };
        let keys = PackedRight::columns_as_reduction(kb, kvs, g * hd, hd, s.klen, align);
        let values = PackedRight::rows_as_reduction(vb, kvs, g * hd, s.klen, hd, align);
        let _ = packs[i].set((keys, values));
    });
    pool.run(tasks.len(), &|ti| {
        let (si, h, i0, i1) = tasks[ti];
        let s = cx.segments[si];
        let (keys, values) = packs[si * n_kv_heads + h / group]
            .get()
            .expect("every pack task ran");
        let kmax = match s.mask {
            Mask::Full => s.klen,
            Mask::Causal { offset } => (offset + i1).min(s.klen),
        };
        if kmax == 0 {
            return;
        }
        WORD_BUFFERS.with(|cell| {
            let b = &mut *cell.borrow_mut();
            if cx.amx {
                return amx_block(cx, (keys, values), (si, h, i0, i1), kmax, b);
            }
            let rows = i1 - i0;
            let qa = &cx.q[(s.q0 + i0) * qs + h * hd..];
            let qsteps = words::pack_left(qa, qs, rows, hd, (1, 1), &mut b.q);
            let kcols = kmax.div_ceil(16) * 16;
            let psteps = kmax.div_ceil(2);
            b.scores.resize_zeroed(TILE_ROWS * kcols);
            b.probs.resize_zeroed(TILE_ROWS * psteps);
            b.out.resize_zeroed(TILE_ROWS * TILE_COLS);
            for r0 in (0..rows).step_by(TILE_ROWS) {
                let mr = TILE_ROWS.min(rows - r0);
                for n0 in (0..kcols).step_by(TILE_COLS) {
                    let cols = TILE_COLS.min(kcols - n0);
                    let q_tile = &b.q[r0 * qsteps..];
                    let sc = &mut b.scores[n0..];
                    words::tile(
                        q_tile,
                        qsteps,
                        mr,
                        qsteps,
                        &keys.words,
                        keys.cpad,
                        n0,
                        cols,
                        sc,
                        kcols,
                    );
                }
                for r in 0..mr {
                    let row = &mut b.scores[r * kcols..][..kmax];
                    let visible = match s.mask {
                        Mask::Full => kmax,
                        Mask::Causal { offset } => (offset + i0 + r0 + r + 1).min(kmax),
                    };
                    let pr = &mut b.probs[r * psteps..][..psteps];
                    let h = words::halves(pr);
                    softmax_avx512::softmax_to_bf16(row, visible, cx.scale, &mut h[..kmax]);
                    // An odd key count leaves one half of padding (scratch reused across tasks).
                    h[kmax..].iter_mut().for_each(|x| *x = 0);
                }
                for d0 in (0..values.cpad).step_by(TILE_COLS) {
                    let cols = TILE_COLS.min(values.cpad - d0);
                    let (p, v) = (&b.probs[..], &values.words[..]);
                    words::tile(
                        p,
                        psteps,
                        mr,
                        psteps,
                        v,
                        values.cpad,
                        d0,
                        cols,
                        &mut b.out,
                        TILE_COLS,
                    );
                    let width = cols.min(hd - d0);
                    for r in 0..mr {
                        let at = (s.q0 + i0 + r0 + r) * qs + h * hd + d0;
                        // SAFETY: rows [q0+i0, q0+i1) × columns [h·hd, (h+1)·hd) of `out` belong
                        // to this task only; `attention` checked they are inside the buffer.
                        let o = unsafe { cx.out.range(at, at + width) };
                        for (x, &y) in o.iter_mut().zip(&b.out[r * TILE_COLS..][..width]) {
                            *x = Precision::Bf16.round(y);
                        }
                    }
                }
            }
        });
    });
}

/// One query block of the AMX path: [`AMX_ROWS`] rows at a time, scores over all visible keys
/// as one tile matmul, softmax, probabilities as words, then P·V as a second tile matmul. Rows
/// and reductions are zero-padded to whole tiles; padded rows are computed and dropped.
fn amx_block(
    cx: &WordContext,
    (keys, values): (&PackedRight, &PackedRight),
    (si, h, i0, i1): (usize, usize, usize, usize),
    kmax: usize,
    b: &mut WordBuffers,
) {
    let s = cx.segments[si];
    let hd = cx.shape.head_dim;
    let qs = cx.shape.n_heads * hd;
    let tiles = Tiles::new().expect("the AMX kernel is only chosen where tiles run");
    let rows = i1 - i0;
    let rows_pad = rows.next_multiple_of(amx::TILE);
    let qa = &cx.q[(s.q0 + i0) * qs + h * hd..];
    let qsteps = words::pack_left(qa, qs, rows, hd, (amx::TILE, amx::TILE), &mut b.q);
    debug_assert_eq!(qsteps, keys.steps);
    let kcols = kmax.next_multiple_of(amx::TILE);
    let psteps = kmax.div_ceil(2).next_multiple_of(amx::TILE);
    let vcols = values.cpad;
    b.scores.resize_zeroed(AMX_ROWS * kcols);
    b.probs.resize_zeroed(AMX_ROWS * psteps);
    b.out.resize_zeroed(AMX_ROWS * vcols);
    for r0 in (0..rows_pad).step_by(AMX_ROWS) {
        let tile_rows = AMX_ROWS.min(rows_pad - r0);
        let live = tile_rows.min(rows - r0);
        let q_rows = &b.q[r0 * qsteps..];
        let (kw, kstride) = (&keys.words[..], keys.cpad);
        tiles.matmul(
            q_rows,
            qsteps,
            tile_rows,
            qsteps,
            kw,
            kstride,
            kcols,
            &mut b.scores,
            kcols,
        );
        for r in 0..tile_rows {
            let pr = &mut b.probs[r * psteps..][..psteps];
            if r >= live {
                pr.fill(0);
                continue;
            }
            let row = &mut b.scores[r * kcols..][..kmax];
            let visible = match s.mask {
                Mask::Full => kmax,
                Mask::Causal { offset } => (offset + i0 + r0 + r + 1).min(kmax),
            };
            let halves = words::halves(pr);
            softmax_avx512::softmax_to_bf16(row, visible, cx.scale, &mut halves[..kmax]);
            halves[kmax..].iter_mut().for_each(|x| *x = 0);
        }
        let (vw, vstride) = (&values.words[..], values.cpad);
        tiles.matmul(
            &b.probs, psteps, tile_rows, psteps, vw, vstride, vcols, &mut b.out, vcols,
        );
        for r in 0..live {
            let at = (s.q0 + i0 + r0 + r) * qs + h * hd;
            // SAFETY: rows [q0+i0, q0+i1) × columns [h·hd, (h+1)·hd) of `out` belong to this
            // task only; `attention_with` checked they are inside the buffer.
            let o = unsafe { cx.out.range(at, at + hd) };
            for (x, &y) in o.iter_mut().zip(&b.out[r * vcols..][..hd]) {
                *x = Precision::Bf16.round(y);
            }
        }
    }
}

/// Eager-PyTorch softmax of one score row in place: probabilities rounded to the activation
/// precision, masked keys 0.
fn softmax_row(row: &mut [f32], visible: usize, scale: f32, p: Precision) {
    let inv = softmax_numerators(row, visible, scale, p);
    normalize(&mut row[..visible], inv, p);
}

multiversion! {
    /// The softmax numerators of one score row, in place: round(round(s)·scale), then
    /// exp(x − max) over the visible keys; masked keys become 0. Returns 1/Σ: PyTorch's CPU
    /// softmax also scales by the reciprocal rather than dividing.
    fn softmax_numerators(row: &mut [f32], visible: usize, scale: f32, p: Precision) -> f32 {
        by_precision!(p, round => softmax_numerators_with(row, visible, scale, round))
    }
}

/// [`softmax_numerators`] with the precision's rounding function (one copy per precision, so
/// the loops carry no branch on it).
#[inline(always)]
fn softmax_numerators_with<R: Fn(f32) -> f32>(
    row: &mut [f32],
    visible: usize,
    scale: f32,
    round: R,
) -> f32 {
    // 16 lanes with a fixed reduction order: vectorises (a single running max/sum is a
    // loop-carried dependency the compiler must keep scalar) and stays deterministic.
    const L: usize = 16;
    let (vis, masked) = row.split_at_mut(visible);
    masked.iter_mut().for_each(|x| *x = 0.0);
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = vis.chunks_exact_mut(L);
    for c in &mut chunks {
        for i in 0..L {
            c[i] = round(round(c[i]) * scale);
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    let mut max = f32::NEG_INFINITY;
    for x in chunks.into_remainder() {
        *x = round(round(*x) * scale);
        max = max.max(*x);
    }
    let max = lanes.iter().fold(max, |a, &b| a.max(b));
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
    1.0 / acc.iter().fold(sum, |a, &b| a + b)
}

multiversion! {
    fn normalize(xs: &mut [f32], inv: f32, p: Precision) {
        by_precision!(p, round => {
            for x in xs {
                *x = round(*x * inv);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 softmax gives the portable loops' bits: rows of every length mod 16, masked
    /// tails, ties, zeros and large magnitudes (saturating exp), and a NaN row.
    #[test]
    fn softmax_kernel_equals_the_portable_loops() {
        if !softmax_avx512::available() {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        for len in (1..=70).chain([783, 784, 1000]) {
            for visible in [len, len / 2 + 1, 1] {
                for amp in [0.01f32, 3.0, 400.0] {
                    let mut row: Vec<f32> = (0..len)
                        .map(|i| ((i * 7919 + len * 31) % 2003) as f32 / 1001.0 - 1.0)
                        .map(|x| {
                            if len % 5 == 0 && x > 0.5 {
                                0.75
                            } else {
                                x * amp
                            }
                        })
                        .collect();
                    if len == 70 && amp > 100.0 {
                        row[3] = f32::NAN;
                    }
                    let mut want_row = row.clone();
                    let mut want = vec![0u16; len];
                    let inv = softmax_numerators(&mut want_row, visible, 0.125, Precision::Bf16);
                    words::narrow_scaled(&want_row, inv, &mut want);
                    let mut got = vec![0u16; len];
                    softmax_avx512::softmax_to_bf16(&mut row, visible, 0.125, &mut got);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&row),
                        bits(&want_row),
                        "{len}/{visible}/{amp}: numerators"
                    );
                    assert_eq!(got, want, "{len}/{visible}/{amp}: probabilities");
                }
            }
        }
    }
}
