//! bf16-weight GEMM on the f32 FMA units: `y = x · Wᵀ (+ b)` with W stored as bf16 (2 bytes per
//! weight, like oneDNN's packed bf16) and widened to f32 in registers. Register tiles exist for
//! AVX-512 and for AVX2 + FMA; both run the same FMA chains, so their results are bit-identical.
//!
//! Why it exists: on CPUs without AMX, oneDNN's bf16 matmul runs on `vdpbf16ps`, and on some of
//! them that instruction is far slower than plain FMA (measured on this project's Xeon VM:
//! 86 GFLOP/s per core for `vdpbf16ps` against 350 for `vfmadd231ps`). There an f32 FMA kernel
//! over bf16 panels does prefill and the vision tower faster (A/B against oneDNN on that VM:
//! prefill 66.7 vs 49 tok/s, vision 3.4 vs 4.4 s). The kernel plan takes it where [`CpuCaps`] measures
//! `vdpbf16ps` below 3/4 of the FMA rate and there is no AMX. On AVX2-only CPUs oneDNN has no
//! bf16 matmul but its reference one, so this kernel is the bf16 path there.
//!
//! [`CpuCaps`]: crate::engine::kernels::runtime::caps::CpuCaps
//!
//! Numerics: in bf16 mode both operands are bf16 values (the input is rounded to bf16 first, as
//! oneDNN does); a product of two bf16 values is exact in f32 and sums are f32, i.e. PyTorch's
//! bf16 matmul up to summation order. Every output element is one FMA chain over k in increasing
//! order starting from zero, whatever the tile shape, the row count or the thread split, so a row's
//! result does not depend on the batch it is computed in (the serving engine relies on that).
//!
//! Layout: chunks of 32 output channels; for each k, the chunk's 32 weights fill one 64-byte line,
//! interleaved so that `line << 16` (the even halves) holds channels 0..16 as f32 and
//! `line & 0xffff0000` (the odd halves) channels 16..32: one load and two integer ops widen 32
//! weights. N is padded to a multiple of 32 with zero weights. On AVX2 each half line (16 values)
//! widens the same way into 8 + 8 channels (lanes 0..8 and 16..24, or 8..16 and 24..32).
//!
//! f16 weights (`--dtype f16`, [`PanelFormat::F16`]) use the same panels, tiles and FMA chains:
//! a line holds the chunk's 32 channels in order, and `vcvtph2ps` (AVX-512F on zmm, F16C on ymm)
//! widens each half exactly, so the 32 weights reach the same accumulators as in bf16. The input
//! is rounded to f16 instead of bf16; a product of two f16 values (11-bit significands) is exact
//! in f32 too, so the result is PyTorch's f16 matmul (f32 accumulation) up to summation order.

use std::cell::RefCell;

#[cfg(target_arch = "x86_64")]
mod avx2;

use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::linear::{RowSource, WeightStore};
use crate::engine::kernels::runtime::pool::ThreadPool;

/// Output channels per chunk (two 16-lane vectors).
pub const CHUNK: usize = 32;
/// Reduction block: a tile's weights for one block (KC × 64 bytes) stay in L1 across row tiles.
const KC: usize = 256;
/// Most rows in one AVX-512 register tile (12 rows × 2 vectors = 24 accumulators).
const MAX_MR: usize = 12;
/// Most rows in one AVX2 register tile (6 rows × 2 vectors = 12 accumulators).
const AVX2_MR: usize = 6;
/// Tasks per compute thread (dynamic claiming balances cores that other processes slow down).
const TASKS_PER_THREAD: usize = 4;

/// The register tiles in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    Avx512,
    Avx2,
}

/// The tiles of the plan's dispatch level ([`level`](crate::engine::kernels::runtime::simd::level)),
/// where this CPU has them. The AVX2 tiles also need F16C (for f16 panels; every AVX2 CPU has it).
fn isa() -> Option<Isa> {
    use crate::engine::kernels::runtime::simd::{level, Level};
    let caps = crate::engine::kernels::runtime::caps::CpuCaps::detect();
    match level() {
        Level::Avx512 if caps.avx512f => Some(Isa::Avx512),
        Level::Avx512 | Level::Avx2 if caps.avx2_fma_f16c => Some(Isa::Avx2),
        _ => None,
    }
}

/// "AVX-512" or "AVX2": the tiles [`Bf16Panels::matmul`] uses under the plan in force.
pub fn tiles_name() -> &'static str {
    match isa() {
        Some(Isa::Avx512) => "AVX-512",
        Some(Isa::Avx2) => "AVX2",
        None => "none",
    }
}

/// Whether the kernel can run on this CPU: AVX-512F or AVX2 + FMA + F16C. It runs under plans
/// whose dispatch level is not the baseline.
pub fn available() -> bool {
    let caps = crate::engine::kernels::runtime::caps::CpuCaps::detect();
    caps.avx512f || caps.avx2_fma_f16c
}

/// The 16-bit format of the packed weights (and of the rounded input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelFormat {
    Bf16,
    F16,
}

impl PanelFormat {
    /// The bits of `v` rounded to this format.
    #[inline(always)]
    fn bits(self, v: f32) -> u16 {
        match self {
            PanelFormat::Bf16 => {
                (crate::engine::kernels::bf16::round_bf16(v).to_bits() >> 16) as u16
            }
            PanelFormat::F16 => half::f16::from_f32(v).to_bits(),
        }
    }
}

/// A bf16 (or f16) weight [n, k] packed into 32-channel chunks.
pub struct Bf16Panels {
    n: usize,
    k: usize,
    chunks: usize,
    format: PanelFormat,
    /// chunks × k × 32 bf16 (f16) bit patterns.
    data: Vec<u16>,
}

/// Where chunk lane `j` (0..32) of a row lands inside its 32-value line: bf16 interleaves the
/// halves (widened by shift and mask), f16 keeps channel order (widened by `vcvtph2ps`).
#[inline(always)]
fn lane_slot(j: usize, format: PanelFormat) -> usize {
    match format {
        PanelFormat::F16 => j,
        PanelFormat::Bf16 if j < 16 => 2 * j,
        PanelFormat::Bf16 => 2 * (j - 16) + 1,
    }
}

/// `rows` (≤ 32) rows of `k` values into one chunk's k lines of 32 (missing rows stay zero):
/// each output line is written once, in order.
fn transpose_chunk(bits: &[u16], rows: usize, k: usize, format: PanelFormat, dst: &mut [u16]) {
    let src: Vec<&[u16]> = bits.chunks_exact(k).collect();
    for (kk, line) in dst.chunks_exact_mut(CHUNK).enumerate() {
        for (j, row) in src.iter().enumerate().take(rows) {
            line[lane_slot(j, format)] = row[kk];
        }
    }
}

impl Bf16Panels {
    /// Packs a weight handed over in row blocks (`rows(r0, r1)` = rows [r0, r1) as bf16 or
    /// f32, rounded to bf16), so the source never needs to exist whole next to the packed copy.
    pub fn from_rows(pool: &ThreadPool, n: usize, k: usize, rows: RowSource) -> Result<Self> {
        Self::from_rows_as(pool, n, k, rows, PanelFormat::Bf16)
    }

    /// [`Self::from_rows`] into panels of `format`: rows already in that format keep their
    /// bits, others are rounded to it (nearest-even).
    pub fn from_rows_as(
        pool: &ThreadPool,
        n: usize,
        k: usize,
        rows: RowSource,
        format: PanelFormat,
    ) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(EngineError::Kernel(format!(
                "bf16 panels: empty weight {n}×{k}"
            )));
        }
        let chunks = n.div_ceil(CHUNK);
        let len = chunks * k * CHUNK;
        let mut data: Vec<u16> = Vec::with_capacity(len);
        crate::engine::kernels::runtime::mmap::advise_huge_pages(data.as_mut_ptr().cast(), len * 2);
        data.resize(len, 0);
        let out = crate::engine::kernels::ops::RawRows(data.as_mut_ptr());
        crate::engine::kernels::linear::for_row_blocks(
            n,
            k,
            CHUNK,
            rows,
            "bf16 panels",
            &mut |r0, r1, part| {
                let c0 = r0 / CHUNK;
                pool.run((r1 - r0).div_ceil(CHUNK), &|i| {
                    let c = c0 + i;
                    // SAFETY: chunk c's k·32 values belong to this task only and lie inside `data`
                    // (c < chunks).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.get().add(c * k * CHUNK), k * CHUNK)
                    };
                    let rows_here = ((c + 1) * CHUNK).min(r1) - c * CHUNK;
                    let first = (c * CHUNK - r0) * k;
                    // Bit patterns of this chunk's rows, then one transposing pass over them.
                    let span = first..first + rows_here * k;
                    let bits: Vec<u16> = match (part, format) {
                        (WeightStore::Bf16(w), PanelFormat::Bf16) => {
                            w[span].iter().map(|v| v.to_bits()).collect()
                        }
                        (WeightStore::F16(w), PanelFormat::F16) => {
                            w[span].iter().map(|v| v.to_bits()).collect()
                        }
                        (WeightStore::F32(w), _) => {
                            w[span].iter().map(|&v| format.bits(v)).collect()
                        }
                        (WeightStore::Bf16(w), _) => {
                            w[span].iter().map(|v| format.bits(v.to_f32())).collect()
                        }
                        (WeightStore::F16(w), _) => {
                            w[span].iter().map(|v| format.bits(v.to_f32())).collect()
                        }
                    };
                    transpose_chunk(&bits, rows_here, k, format, dst);
                });
            },
        )?;
        Ok(Bf16Panels {
            n,
            k,
            chunks,
            format,
            data,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    pub fn format(&self) -> PanelFormat {
        self.format
    }

    /// y[m, n] = bf16(x[m, k]) · Wᵀ (+ bias), f32 out. Must only be called when [`available`].
    pub fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<()> {
        let (n, k) = (self.n, self.k);
        // Read once: the dispatch level may change under us (tests lower it), and the input
        // packing must match the tiles that consume it.
        let Some(isa) = isa() else {
            return Err(EngineError::Kernel(
                "bf16 FMA kernel called on a CPU without AVX-512 or AVX2 + FMA".into(),
            ));
        };
        crate::engine::kernels::linear::check_matmul_operands("bf16 FMA", (n, k), x, m, bias, y)?;
        let (mr, _) = plan(isa, m);
        INPUT.with(|cell| {
            let mut a = cell.borrow_mut();
            pack_input(&x[..m * k], m, k, mr, self.format, &mut a);
            let tasks = self.chunks.min(pool.threads() * TASKS_PER_THREAD).max(1);
            let out = crate::engine::kernels::ops::RawRows(y.as_mut_ptr());
            let a = &a[..];
            pool.run(tasks, &|t| {
                let c0 = t * self.chunks / tasks;
                let c1 = (t + 1) * self.chunks / tasks;
                self.task(isa, c0, c1, a, m, bias, &out);
            });
        });
        Ok(())
    }

    /// Output chunks [c0, c1) for all rows.
    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        isa: Isa,
        c0: usize,
        c1: usize,
        a: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &crate::engine::kernels::ops::RawRows<f32>,
    ) {
        let (n, k) = (self.n, self.k);
        let (mr, ns) = plan(isa, m);
        let mut kb = 0;
        while kb < k {
            let kc = KC.min(k - kb);
            let first = kb == 0;
            let last_bias = if kb + kc == k { bias } else { None };
            let mut c = c0;
            while c < c1 {
                let run = ns.min(c1 - c);
                let mut r = 0;
                while r < m {
                    let rows = mr.min(m - r);
                    let t = Tile {
                        // Row tile r/mr starts at r·k in the packed input, k-major inside.
                        a: &a[r * k + kb * rows..],
                        b: &self.data[(c * k + kb) * CHUNK..],
                        chunk_stride: k * CHUNK,
                        kc,
                        // Tile (r, c) writes rows r.., columns 32c.. of y only; tasks own disjoint
                        // chunk ranges.
                        y: out.get().wrapping_add(r * n + c * CHUNK),
                        ldy: n,
                        cols: n - c * CHUNK,
                        first,
                        bias: last_bias.map(|b| &b[c * CHUNK..]),
                        f16: self.format == PanelFormat::F16,
                    };
                    t.run(isa, rows, run);
                    r += rows;
                }
                c += run;
            }
            kb += kc;
        }
    }
}

/// The input rounded to the panels' format and packed tile by tile (tiles of `mr` rows, the last one shorter),
/// each tile k-major: element (r, kk) of the tile starting at row r0 sits at `r0·k + kk·rows + r`.
/// A tile's rows are then one contiguous stream instead of `mr` rows a row stride apart (rows of
/// 8 KiB stride fall into the same L1 set and evict each other).
fn pack_input(x: &[f32], m: usize, k: usize, mr: usize, format: PanelFormat, out: &mut Vec<f32>) {
    let round = match format {
        PanelFormat::Bf16 => crate::engine::kernels::bf16::round_bf16,
        PanelFormat::F16 => crate::engine::kernels::bf16::round_f16,
    };
    out.clear();
    out.resize(m * k, 0.0);
    let mut r0 = 0;
    while r0 < m {
        let rows = mr.min(m - r0);
        let tile = &mut out[r0 * k..(r0 + rows) * k];
        for r in 0..rows {
            let src = &x[(r0 + r) * k..(r0 + r + 1) * k];
            for (kk, &v) in src.iter().enumerate() {
                tile[kk * rows + r] = round(v);
            }
        }
        r0 += rows;
    }
}

thread_local! {
    // The packed bf16-rounded input, reused across calls (decode runs hundreds of linears per token).
    static INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows per tile and chunks per tile for `m` rows. AVX-512: 24 accumulators, more chunks when
/// there are few rows so that several independent FMA chains hide the latency. AVX2 (16
/// registers): up to 6 rows over one chunk, run as half-chunk tiles of 12 accumulators.
fn plan(isa: Isa, m: usize) -> (usize, usize) {
    match (isa, m) {
        (Isa::Avx2, _) => (m.min(AVX2_MR), 1),
        (Isa::Avx512, 1) => (1, 8),
        (Isa::Avx512, 2) => (2, 6),
        (Isa::Avx512, 3) => (3, 4),
        (Isa::Avx512, 4) => (4, 3),
        (Isa::Avx512, 5 | 6) => (m, 2),
        (Isa::Avx512, _) => (m.min(MAX_MR), 1),
    }
}

/// One register tile's operands: `rows` rows of the packed input from reduction offset kb (k-major,
/// `rows` values per step), `chunks` chunks of packed weights at the same offset, written into `y` (row stride `ldy`) masked to `cols` columns.
#[derive(Clone, Copy)]
struct Tile<'a> {
    a: &'a [f32],
    b: &'a [u16],
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
    /// f16 panels (channel order, `vcvtph2ps`) rather than bf16 ones.
    f16: bool,
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

    fn run(&self, isa: Isa, rows: usize, chunks: usize) {
        assert!((1..=MAX_MR).contains(&rows) && chunks >= 1);
        assert!(self.a.len() >= rows * self.kc);
        assert!(self.b.len() >= (chunks - 1) * self.chunk_stride + self.kc * CHUNK);
        assert!(self.cols >= 1);
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx2 {
            avx2::run(self, rows, chunks);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            macro_rules! go {
                ($(($r:literal, $v:literal)),*) => {
                    match (rows, 2 * chunks) {
                        // SAFETY: `available()` (checked by the caller) guarantees AVX-512F; the
                        // asserts above bound every read of `a` and `b`; `y` is written only
                        // through masks limited to `cols` columns of `rows` rows that the caller
                        // owns.
                        $(($r, $v) => unsafe {
                            if self.f16 {
                                imp::tile::<$r, $v, true>(self)
                            } else {
                                imp::tile::<$r, $v, false>(self)
                            }
                        },)*
                        _ => {
                            // Shapes without their own instance: one chunk at a time.
                            for s in 0..chunks {
                                let t = self.chunk(s);
                                if t.cols > 0 {
                                    t.run(isa, rows, 1);
                                }
                            }
                        }
                    }
                };
            }
            go!(
                (1, 2),
                (2, 2),
                (3, 2),
                (4, 2),
                (5, 2),
                (6, 2),
                (7, 2),
                (8, 2),
                (9, 2),
                (10, 2),
                (11, 2),
                (12, 2),
                (1, 16),
                (2, 12),
                (3, 8),
                (4, 6),
                (5, 4),
                (6, 4)
            )
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{Tile, CHUNK};
    use crate::engine::kernels::gemm::chunk_acc;

    /// MR rows × NV vectors (NV/2 chunks) of accumulators; `F16`: f16 panels.
    ///
    /// # Safety
    /// AVX-512F must be present; `t.a` / `t.b` must hold the tile's operands (checked by
    /// [`Tile::run`]); `t.y` must be writable for MR rows of `min(cols, NV·16)` columns.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const MR: usize, const NV: usize, const F16: bool>(t: &Tile) {
        let high = _mm512_set1_epi32(0xffff_0000u32 as i32);
        // SAFETY: AVX-512F is present; `t.y` holds this tile's outputs (the caller's contract).
        let mut acc = unsafe { chunk_acc::start::<MR, NV>(!t.first, t.y, t.ldy, t.cols) };
        let (a, b) = (t.a.as_ptr(), t.b.as_ptr());
        for kk in 0..t.kc {
            for s in 0..NV / 2 {
                let line = b.wrapping_add(s * t.chunk_stride + kk * CHUNK);
                let (lo, hi) = if F16 {
                    // SAFETY: chunk s, step kk (32 values) lies inside `t.b` (asserted by the
                    // caller); the two loads read its halves.
                    unsafe {
                        (
                            _mm512_cvtph_ps(_mm256_loadu_si256(line.cast())),
                            _mm512_cvtph_ps(_mm256_loadu_si256(line.add(16).cast())),
                        )
                    }
                } else {
                    // SAFETY: as above, one load of the whole line.
                    let w = unsafe { _mm512_loadu_si512(line.cast()) };
                    (
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w)),
                        _mm512_castsi512_ps(_mm512_and_si512(w, high)),
                    )
                };
                for (r, row) in acc.iter_mut().enumerate() {
                    // SAFETY: step kk < kc, row r < MR: inside `t.a` (asserted by the caller).
                    let x = _mm512_set1_ps(unsafe { *a.add(kk * MR + r) });
                    row[2 * s] = _mm512_fmadd_ps(x, lo, row[2 * s]);
                    row[2 * s + 1] = _mm512_fmadd_ps(x, hi, row[2 * s + 1]);
                }
            }
        }
        // SAFETY: as for `start`; a bias holds at least `cols` values.
        unsafe {
            chunk_acc::finish(
                &acc,
                t.y,
                t.ldy,
                t.cols,
                t.bias,
                crate::engine::kernels::linear::Epilogue::None,
            )
        };
    }
}
