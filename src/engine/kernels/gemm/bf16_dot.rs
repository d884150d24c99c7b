//! bf16-weight GEMM on AVX512-BF16's `vdpbf16ps`: `y = bf16(x) · Wᵀ (+ b)`, for CPUs without AMX
//! whose bf16 dot product runs at least as fast as f32 FMA per FLOP (AMD Zen 4 / Zen 5; on the Zen
//! 5 VM about twice the FMA FLOP rate; [`super::bf16_fma`] takes the CPUs where it is slow).
//!
//! Why our own instead of oneDNN's `brg:avx512_core_bf16` on those CPUs: one packed layout that
//! serves every row count without re-blocking, so a row's result never depends on its batch; no
//! per-call overhead on small weights (MoE experts: 3–4× faster at 1–4 rows); no per-slice output
//! copies and no OpenMP runtime next to our pool. Zen 5 VM, same binary, alternating with
//! `QWEN3VL_BF16_GEMM=onednn`: 2B vision 1.36 / 1.27 → 1.19 / 1.15 s, prefill 188 / 159 →
//! 208 / 190 tok/s, decode 10.4 / 10.9 → 12.1 / 11.4 tok/s.
//!
//! Numerics: each `vdpbf16ps` lane adds the two exact bf16 × bf16 products of a word pair to its
//! f32 accumulator (Intel documents two sequential roundings and flushed denormals). Whatever the
//! hardware does inside one instruction, every output is one chain of such steps over the
//! reduction pairs in increasing order from zero, whatever the tile shape, row count or thread
//! split: batch-invariant, like the FMA kernel (tested), and bit-exact against transformers on
//! the bf16 text fixtures here.
//!
//! Layout: chunks of 32 output channels; for each reduction pair p, the chunk's 32 words
//! (`W[j][2p]` in the low half, `W[j][2p+1]` in the high half) fill two 64-byte lines, one per
//! 16-channel vector. N is padded to a multiple of 32 and k to a multiple of 2 with zeros. The
//! input is rounded to bf16 and paired into words the same way, row-major: a tile broadcasts from
//! its rows `steps` words apart. (A k-major copy per row tile, one contiguous stream, needed a
//! word-by-word transpose that cost ~3 % of the vision tower; the six row streams showed no
//! cache-set penalty here: 1 thread, M = 784, 1024×4096 weight, 293–342 → 400–414 GOP/s.)

use std::cell::RefCell;

use crate::engine::kernels::runtime::aligned::AlignedBuf;
// What running the tiles rests on, whatever the dispatch level (panels packed before a test
// lowers it keep running on them).
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::attention::bf16::cpu_has_them;
use crate::engine::kernels::linear::{Epilogue, RowSource, WeightStore};
use crate::engine::kernels::runtime::pool::ThreadPool;

/// Output channels per chunk (two 16-lane vectors).
pub const CHUNK: usize = 32;
/// Reduction block in pairs (4096 k values). A tile keeps its accumulators in registers across
/// the whole block: with L1-sized blocks every block re-read and re-wrote all of y, which for the
/// vision tower's 784-row outputs (MBs) went to DRAM (1 thread, M = 784: 310 vs 430 GOP/s). A
/// run of two chunks over one block (≤ 512 KB) stays in L2 while the row tiles pass over it.
const KC: usize = 2048;
/// Most rows in one register tile (6 rows × 4 vectors = 24 accumulators: 6 broadcasts and 4
/// weight loads feed 24 `vdpbf16ps`; 12 × 2 needs 12 broadcasts and ran ~10 % slower).
const MAX_MR: usize = 6;
/// Tasks per compute thread (dynamic claiming balances cores that other processes slow down).
const TASKS_PER_THREAD: usize = 4;

/// Whether the kernel can run here: AVX512F + AVX512_BF16. The kernel plan decides whether it
/// does.
pub fn available() -> bool {
    cpu_has_them()
}

/// A bf16 weight [n, k] packed into 32-channel chunks of word pairs.
pub struct DotPanels {
    n: usize,
    k: usize,
    chunks: usize,
    /// Reduction pairs, k/2 rounded up.
    steps: usize,
    /// chunks × steps × 32 words.
    data: AlignedBuf<u32>,
}

/// `rows` (≤ 32) rows of `k` bf16 bit patterns into one chunk's `steps` lines of 32 words
/// (missing rows and the odd tail stay zero).
fn pack_chunk(bits: &[u16], rows: usize, k: usize, dst: &mut [u32]) {
    for (j, row) in bits.chunks_exact(k).take(rows).enumerate() {
        let mut pairs = row.chunks_exact(2);
        for (p, pair) in pairs.by_ref().enumerate() {
            dst[p * CHUNK + j] = u32::from(pair[0]) | (u32::from(pair[1]) << 16);
        }
        if let [last] = pairs.remainder() {
            dst[(k / 2) * CHUNK + j] = u32::from(*last);
        }
    }
}

impl DotPanels {
    /// Packs a weight handed over in row blocks (`rows(r0, r1)` = rows [r0, r1) as bf16 or f32,
    /// rounded to bf16), so the source never needs to exist whole next to the packed copy.
    pub fn from_rows(pool: &ThreadPool, n: usize, k: usize, rows: RowSource) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(EngineError::Kernel(format!(
                "bf16 dot panels: empty weight {n}×{k}"
            )));
        }
        let chunks = n.div_ceil(CHUNK);
        let steps = k.div_ceil(2);
        let per_chunk = steps * CHUNK;
        let mut data = AlignedBuf::<u32>::zeroed_huge(chunks * per_chunk);
        let out = crate::engine::kernels::ops::RawRows(data.as_mut_ptr());
        crate::engine::kernels::linear::for_row_blocks(
            n,
            k,
            CHUNK,
            rows,
            "bf16 dot panels",
            &mut |r0, r1, part| {
                let c0 = r0 / CHUNK;
                pool.run((r1 - r0).div_ceil(CHUNK), &|i| {
                    let c = c0 + i;
                    // SAFETY: chunk c's words belong to this task only and lie inside `data`
                    // (c < chunks).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.get().add(c * per_chunk), per_chunk)
                    };
                    let rows_here = ((c + 1) * CHUNK).min(r1) - c * CHUNK;
                    let first = (c * CHUNK - r0) * k;
                    let bits: Vec<u16> = match part {
                        WeightStore::Bf16(w) => w[first..first + rows_here * k]
                            .iter()
                            .map(|v| v.to_bits())
                            .collect(),
                        WeightStore::F32(w) => w[first..first + rows_here * k]
                            .iter()
                            .map(|&v| {
                                (crate::engine::kernels::bf16::round_bf16(v).to_bits() >> 16) as u16
                            })
                            .collect(),
                        // A bf16 unit: f16 weights are never routed here (the backends send
                        // them to the f16 FMA panels); called directly, they round to bf16.
                        WeightStore::F16(w) => w[first..first + rows_here * k]
                            .iter()
                            .map(|v| {
                                (crate::engine::kernels::bf16::round_bf16(v.to_f32()).to_bits()
                                    >> 16) as u16
                            })
                            .collect(),
                    };
                    pack_chunk(&bits, rows_here, k, dst);
                });
            },
        )?;
        Ok(DotPanels {
            n,
            k,
            chunks,
            steps,
            data,
        })
    }

    /// y[m, n] = bf16(x[m, k]) · Wᵀ (+ bias), f32 out.
    pub fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<()> {
        self.matmul_fused(pool, x, m, bias, Epilogue::None, y)
    }

    /// [`Self::matmul`] with `epilogue` applied to each output tile as it is stored.
    pub fn matmul_fused(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        epilogue: Epilogue,
        y: &mut [f32],
    ) -> Result<()> {
        if !cpu_has_them() {
            return Err(EngineError::Kernel(
                "bf16 dot kernel called on a CPU without AVX-512F + AVX512_BF16".into(),
            ));
        }
        let (n, k) = (self.n, self.k);
        crate::engine::kernels::linear::check_matmul_operands("bf16 dot", (n, k), x, m, bias, y)?;
        INPUT.with(|cell| {
            let mut a = cell.borrow_mut();
            pack_input(pool, &x[..m * k], m, k, &mut a);
            let tasks = self.chunks.min(pool.threads() * TASKS_PER_THREAD).max(1);
            let out = crate::engine::kernels::ops::RawRows(y.as_mut_ptr());
            let a = &a[..];
            pool.run(tasks, &|t| {
                let c0 = t * self.chunks / tasks;
                let c1 = (t + 1) * self.chunks / tasks;
                self.task(c0, c1, a, m, (bias, epilogue), &out);
            });
        });
        Ok(())
    }

    /// Output chunks [c0, c1) for all rows.
    fn task(
        &self,
        c0: usize,
        c1: usize,
        a: &[u32],
        m: usize,
        (bias, epilogue): (Option<&[f32]>, Epilogue),
        out: &crate::engine::kernels::ops::RawRows<f32>,
    ) {
        let (n, steps) = (self.n, self.steps);
        let (mr, ns) = plan(m);
        let tiles = m.div_ceil(mr);
        let mut kb = 0;
        while kb < steps {
            let kc = KC.min(steps - kb);
            let first = kb == 0;
            let last = kb + kc == steps;
            let last_bias = if last { bias } else { None };
            let last_epilogue = if last { epilogue } else { Epilogue::None };
            let mut c = c0;
            while c < c1 {
                let run = ns.min(c1 - c);
                let mut r = 0;
                for i in 0..tiles {
                    let rows = tile_rows(m, tiles, i);
                    let t = Tile {
                        // Rows r.. of the packed input from pair kb on, `steps` words apart.
                        a: &a[r * steps + kb..],
                        lda: steps,
                        b: &self.data[(c * steps + kb) * CHUNK..],
                        chunk_stride: steps * CHUNK,
                        kc,
                        // Tile (r, c) writes rows r.., columns 32c.. of y only; tasks own disjoint
                        // chunk ranges.
                        y: out.get().wrapping_add(r * n + c * CHUNK),
                        ldy: n,
                        cols: n - c * CHUNK,
                        first,
                        bias: last_bias.map(|b| &b[c * CHUNK..]),
                        epilogue: last_epilogue,
                    };
                    t.run(rows, run);
                    r += rows;
                }
                c += run;
            }
            kb += kc;
        }
    }
}

/// The input rounded to bf16 words, row-major: word p of row r, (x[r][2p], x[r][2p+1]), sits at
/// `r·steps + p`. Rows are packed on all cores when there are many.
fn pack_input(pool: &ThreadPool, x: &[f32], m: usize, k: usize, out: &mut AlignedBuf<u32>) {
    let steps = k.div_ceil(2);
    // Every word is written below (an odd k's last half as zero), so old contents need no
    // clearing.
    out.resize_zeroed(m * steps);
    if m * k < 1 << 15 {
        for (dst, src) in out.chunks_exact_mut(steps).zip(x.chunks_exact(k)) {
            crate::engine::kernels::bf16::narrow_pairs(dst, src);
        }
        return;
    }
    let dst = crate::engine::kernels::ops::RawRows(out.as_mut_ptr());
    pool.run_chunks(m, 1, &|r0, r1| {
        // SAFETY: run_chunks hands out disjoint row ranges [r0, r1) ⊆ [0, m); `out` holds
        // m·steps words.
        let rows =
            unsafe { std::slice::from_raw_parts_mut(dst.get().add(r0 * steps), (r1 - r0) * steps) };
        for (d, src) in rows
            .chunks_exact_mut(steps)
            .zip(x[r0 * k..r1 * k].chunks_exact(k))
        {
            crate::engine::kernels::bf16::narrow_pairs(d, src);
        }
    });
}

thread_local! {
    // The packed input, reused across calls (decode runs hundreds of linears per token).
    static INPUT: RefCell<AlignedBuf<u32>> = const { RefCell::new(AlignedBuf::new()) };
}

/// Rows of row tile `i` when `m` rows are split into `tiles` tiles as evenly as possible: the
/// remainder spread over the first tiles instead of one short last tile (128 rows as 18 × 6 +
/// 4 × 5, not 21 × 6 + 2: a 2-row tile has 8 accumulator chains, too few to hide the
/// `vdpbf16ps` latency, and took 3 % of a 2B prefill for 1.6 % of its rows).
fn tile_rows(m: usize, tiles: usize, i: usize) -> usize {
    m / tiles + usize::from(i < m % tiles)
}

/// Most rows per tile and chunks per tile for `m` rows: 24 accumulators (16 for one row), more chunks
/// when there are few rows so that enough independent chains hide the latency.
fn plan(m: usize) -> (usize, usize) {
    match m {
        1 => (1, 8),
        2 => (2, 6),
        3 => (3, 4),
        4 => (4, 3),
        _ => (m.min(MAX_MR), 2),
    }
}

/// One register tile's operands: `rows` rows of the packed input from pair offset kb (`lda`
/// words apart), `chunks` chunks of packed weights at the same offset, written into `y`
/// (row stride `ldy`) masked to `cols` columns.
#[derive(Clone, Copy)]
struct Tile<'a> {
    a: &'a [u32],
    /// Words from one input row to the next.
    lda: usize,
    b: &'a [u32],
    chunk_stride: usize,
    kc: usize,
    y: *mut f32,
    ldy: usize,
    /// Valid output columns from the tile's first column on (the tail chunk is partial).
    cols: usize,
    /// Start from zero (first reduction block) instead of the partial sums in `y`.
    first: bool,
    /// Added after the last reduction block.
    bias: Option<&'a [f32]>,
    /// Applied after the last reduction block (`None` before it).
    epilogue: Epilogue,
}

impl Tile<'_> {
    /// The same tile restricted to its chunk `s` (columns 32s.. of the tile).
    fn chunk(&self, s: usize) -> Tile<'_> {
        Tile {
            b: &self.b[s * self.chunk_stride..],
            y: self.y.wrapping_add(s * CHUNK),
            cols: self.cols.saturating_sub(s * CHUNK),
            bias: self.bias.map(|b| &b[(s * CHUNK).min(b.len())..]),
            ..*self
        }
    }

    fn run(&self, rows: usize, chunks: usize) {
        assert!((1..=MAX_MR).contains(&rows) && chunks >= 1);
        assert!(self.a.len() >= (rows - 1) * self.lda + self.kc);
        assert!(self.b.len() >= (chunks - 1) * self.chunk_stride + self.kc * CHUNK);
        assert!(self.cols >= 1);
        assert!(cpu_has_them());
        #[cfg(target_arch = "x86_64")]
        {
            macro_rules! go {
                ($(($r:literal, $v:literal)),*) => {
                    match (rows, 2 * chunks) {
                        // SAFETY: `cpu_has_them()` (asserted above) guarantees AVX-512F and
                        // AVX512_BF16; the asserts above bound every read of `a` and `b`; `y` is
                        // written only through masks limited to `cols` columns of `rows` rows
                        // that the caller owns.
                        $(($r, $v) => unsafe { imp::tile::<$r, $v>(self) },)*
                        _ => {
                            // Shapes without their own instance: one chunk at a time.
                            for s in 0..chunks {
                                let t = self.chunk(s);
                                if t.cols > 0 {
                                    t.run(rows, 1);
                                }
                            }
                        }
                    }
                };
            }
            // Every (rows, vectors) a plan can ask for, including a task's last, shorter run of
            // chunks (with one row, a run of 4 chunks falling back to 1-chunk tiles left 2
            // accumulator chains: latency-bound, MoE decode 38 → 30 tok/s).
            go!(
                (1, 2),
                (2, 2),
                (3, 2),
                (4, 2),
                (5, 2),
                (6, 2),
                (1, 4),
                (2, 4),
                (3, 4),
                (4, 4),
                (5, 4),
                (6, 4),
                (1, 6),
                (2, 6),
                (3, 6),
                (4, 6),
                (1, 8),
                (2, 8),
                (3, 8),
                (1, 10),
                (2, 10),
                (1, 12),
                (2, 12),
                (1, 14),
                (1, 16)
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{Tile, CHUNK};
    use crate::engine::kernels::gemm::chunk_acc;

    #[inline(always)]
    fn as_bh(v: __m512i) -> __m512bh {
        // SAFETY: both types are 64 plain bytes; every bit pattern is a valid value of either.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
    }

    /// MR rows × NV vectors (NV/2 chunks) of accumulators.
    ///
    /// # Safety
    /// AVX-512F and AVX512_BF16 must be present; `t.a` / `t.b` must hold the tile's operands
    /// (checked by [`Tile::run`]); `t.y` must be writable for MR rows of `min(cols, NV·16)`
    /// columns.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
        // SAFETY: AVX-512F is present; `t.y` holds this tile's outputs (the caller's contract).
        let mut acc = unsafe { chunk_acc::start::<MR, NV>(!t.first, t.y, t.ldy, t.cols) };
        let (a, b) = (t.a.as_ptr(), t.b.as_ptr());
        for p in 0..t.kc {
            // MR broadcasts, then one weight vector at a time: MR·NV + MR + 1 ≤ 31 registers
            // for every instance (all NV weight vectors at once spill the 2 × 12 tile).
            let mut x = [as_bh(_mm512_setzero_si512()); MR];
            for (r, xr) in x.iter_mut().enumerate() {
                // SAFETY: step p < kc, row r < MR: inside `t.a` (asserted by the caller).
                *xr = as_bh(_mm512_set1_epi32(unsafe { *a.add(r * t.lda + p) } as i32));
            }
            for v in 0..NV {
                // SAFETY: chunk v/2, step p lies inside `t.b` (asserted by the caller).
                let w = as_bh(unsafe {
                    _mm512_loadu_si512(
                        b.add((v / 2) * t.chunk_stride + p * CHUNK + (v % 2) * 16)
                            .cast(),
                    )
                });
                for (row, &xr) in acc.iter_mut().zip(&x) {
                    row[v] = _mm512_dpbf16_ps(row[v], xr, w);
                }
            }
        }
        // SAFETY: as for `start`; a bias holds at least `cols` values.
        unsafe { chunk_acc::finish(&acc, t.y, t.ldy, t.cols, t.bias, t.epilogue) };
    }
}
