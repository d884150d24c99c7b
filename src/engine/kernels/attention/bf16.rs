//! AVX512-BF16 tiles for [`super`] in bf16 mode. Both attention GEMMs take bf16
//! operands there (q, k after RoPE rounding; probabilities rounded before p·v), so `vdpbf16ps`
//! multiplies them exactly and accumulates in f32 like the f32 path, at twice its rate (2B vision
//! tower 2.40 → 1.73 s when these tiles replaced the f32 GEMMs). The AMX attention runs on the
//! same word layout and packers.
//!
//! Operands are "words": two bf16 values in one u32, the pair a `vdpbf16ps` lane consumes. The
//! left operand is a row of words along the reduction dimension; the right operand is packed as
//! [reduction pair][column] so one 64-byte load feeds 16 output columns.

use crate::engine::kernels::bf16::{interleave_pairs, round_bf16};
use crate::engine::kernels::runtime::aligned::AlignedBuf;
use crate::engine::kernels::runtime::simd::multiversion;

/// Output columns per register tile (4 vectors of 16).
pub const TILE_COLS: usize = 64;
/// Rows per register tile: 6 rows × 4 vectors = 24 accumulators.
pub const TILE_ROWS: usize = 6;
const LANES: usize = 16;

/// Whether the tiles can run: AVX512F + AVX512_BF16 present. The kernel plan decides whether
/// they do ([`super::Kernel::best`]).
pub fn available() -> bool {
    cpu_has_them()
}

/// The CPU has AVX512F + AVX512_BF16 (what the tiles' safety rests on).
pub(crate) fn cpu_has_them() -> bool {
    crate::engine::kernels::runtime::caps::CpuCaps::detect().avx512_bf16
}

/// Two values as one word: `lo` in the low half (the even reduction index).
#[inline(always)]
pub fn word(lo: f32, hi: f32) -> u32 {
    (round_bf16(lo).to_bits() >> 16) | (round_bf16(hi).to_bits() & 0xffff_0000)
}

/// A [rows, cols] block (row `r` at `src[r·stride + col0 ..][..cols]`) packed as the right operand
/// of `Σ_r a[·][r] · m[r][c]`: `word[j·cpad + c] = (m[2j][c], m[2j+1][c])`, zero-padded to `steps`
/// = rows/2 rounded up to a multiple of the packer's `step_align` (1 for these tiles, 16 for AMX
/// tiles) and to `cpad` = cols rounded up to 16.
pub struct PackedRight {
    /// 64-byte aligned, so AMX tile rows (64 bytes at a multiple-of-16 stride) are cache lines.
    pub words: AlignedBuf<u32>,
    /// Row pairs (the reduction steps).
    pub steps: usize,
    /// Padded column count, the stride between steps.
    pub cpad: usize,
}

impl PackedRight {
    /// Pack `m[r][c]` = `src[r·stride + col0 + c]` for r < rows, c < cols.
    pub fn rows_as_reduction(
        src: &[f32],
        stride: usize,
        col0: usize,
        rows: usize,
        cols: usize,
        step_align: usize,
    ) -> Self {
        let steps = rows.div_ceil(2).next_multiple_of(step_align);
        let cpad = cols.div_ceil(LANES) * LANES;
        let mut words = AlignedBuf::zeroed(steps * cpad);
        for (j, out) in words
            .chunks_exact_mut(cpad)
            .enumerate()
            .take(rows.div_ceil(2))
        {
            let r0 = &src[(2 * j) * stride + col0..][..cols];
            if 2 * j + 1 < rows {
                let r1 = &src[(2 * j + 1) * stride + col0..][..cols];
                interleave_pairs(out, r0, r1);
            } else {
                // An odd key count: the last row pairs with zero (once per pack, scalar is fine).
                for (o, &a) in out.iter_mut().zip(r0) {
                    *o = word(a, 0.0);
                }
            }
        }
        PackedRight { words, steps, cpad }
    }

    /// Pack the transpose: `m[r][c]` = `src[c·stride + col0 + r]` for r < rows (the reduction,
    /// e.g. head_dim), c < cols (e.g. keys). Keys-as-columns is the layout q·kᵀ needs.
    pub fn columns_as_reduction(
        src: &[f32],
        stride: usize,
        col0: usize,
        rows: usize,
        cols: usize,
        step_align: usize,
    ) -> Self {
        let steps = rows.div_ceil(2).next_multiple_of(step_align);
        let cpad = cols.div_ceil(LANES) * LANES;
        let mut words = AlignedBuf::zeroed(steps * cpad);
        pack_transposed(src, (stride, col0), rows, cols, &mut words, cpad);
        PackedRight { words, steps, cpad }
    }
}

multiversion! {
    /// words[j·cpad + c] = word(src[c·stride + col0 + 2j], src[c·stride + col0 + 2j + 1]) for
    /// c < cols, 2j < rows (an odd last value pairs with 0). Each block of 16 columns is narrowed
    /// to bf16 halves row by row (contiguous, vectorised), then written transposed, one run of
    /// 16 words per reduction step.
    fn pack_transposed(
        src: &[f32],
        at: (usize, usize),
        rows: usize,
        cols: usize,
        words: &mut [u32],
        cpad: usize,
    ) {
        let (stride, col0) = at;
        let wpr = rows.div_ceil(2);
        let mut block = vec![0u32; LANES * wpr];
        for c0 in (0..cols).step_by(LANES) {
            let n = LANES.min(cols - c0);
            for (ci, b) in block.chunks_exact_mut(wpr).enumerate().take(n) {
                let h = halves(b);
                let s = &src[(c0 + ci) * stride + col0..][..rows];
                for (o, &v) in h.iter_mut().zip(s) {
                    *o = (round_bf16(v).to_bits() >> 16) as u16;
                }
                if rows % 2 == 1 {
                    h[rows] = 0;
                }
            }
            for j in 0..wpr {
                let out = &mut words[j * cpad + c0..][..n];
                for (ci, o) in out.iter_mut().enumerate() {
                    *o = block[ci * wpr + j];
                }
            }
        }
    }
}

/// Left-operand rows as words: `out[i·steps + j] = (x[i][2j], x[i][2j+1])` for `rows` rows of
/// `len` values at `src[i·stride ..]`, zero-padded to `steps` = len/2 rounded up to a multiple
/// of `step_align` and to a multiple of `row_align` rows. Returns `steps`.
pub fn pack_left(
    src: &[f32],
    stride: usize,
    rows: usize,
    len: usize,
    (row_align, step_align): (usize, usize),
    out: &mut AlignedBuf<u32>,
) -> usize {
    let steps = len.div_ceil(2).next_multiple_of(step_align);
    out.reset_zeroed(rows.next_multiple_of(row_align) * steps);
    for (i, o) in out.chunks_exact_mut(steps).enumerate().take(rows) {
        narrow_scaled(&src[i * stride..][..len], 1.0, halves(o));
    }
    steps
}

/// The bf16 halves of words, low half first (x86 is little-endian).
pub fn halves(words: &mut [u32]) -> &mut [u16] {
    // SAFETY: u16 has a smaller alignment than u32 and every bit pattern is valid for both; the
    // view covers exactly the same bytes and borrows `words` mutably for its lifetime.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u16>(), words.len() * 2) }
}

multiversion! {
    /// `out[i]` = bf16 bits of `round(x[i] · s)` for `i < x.len()` (≤ `out.len()`).
    pub fn narrow_scaled(x: &[f32], s: f32, out: &mut [u16]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (round_bf16(v * s).to_bits() >> 16) as u16;
        }
    }
}

/// c[i·c_stride + n] = Σ_{j < steps} a[i·a_stride + j] ⋅ b[j·b_stride + col0 + n] for i < rows
/// (≤ [`TILE_ROWS`]) and n < cols (a multiple of 16, ≤ [`TILE_COLS`]); `⋅` is the two-product
/// bf16 dot of a word pair, accumulated in f32. Must only be called when [`available`] is true.
#[allow(clippy::too_many_arguments)]
pub fn tile(
    a: &[u32],
    a_stride: usize,
    rows: usize,
    steps: usize,
    b: &[u32],
    b_stride: usize,
    col0: usize,
    cols: usize,
    c: &mut [f32],
    c_stride: usize,
) {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(
        cpu_has_them(),
        "bf16 tile called on a CPU without AVX512_BF16"
    );
    assert!((1..=TILE_ROWS).contains(&rows));
    assert!(cols.is_multiple_of(LANES) && (LANES..=TILE_COLS).contains(&cols));
    assert!(steps >= 1 && a_stride >= steps && a.len() >= (rows - 1) * a_stride + steps);
    assert!(col0 + cols <= b_stride && b.len() >= (steps - 1) * b_stride + col0 + cols);
    assert!(c_stride >= cols && c.len() >= (rows - 1) * c_stride + cols);
    #[cfg(target_arch = "x86_64")]
    {
        let nv = cols / LANES;
        let (ap, bp, cp) = (a.as_ptr(), b[col0..].as_ptr(), c.as_mut_ptr());
        macro_rules! go {
            ($($r:literal),*) => {
                match (rows, nv) {
                    $(
                        ($r, 1) => imp::tile::<$r, 1>(ap, a_stride, steps, bp, b_stride, cp, c_stride),
                        ($r, 2) => imp::tile::<$r, 2>(ap, a_stride, steps, bp, b_stride, cp, c_stride),
                        ($r, 3) => imp::tile::<$r, 3>(ap, a_stride, steps, bp, b_stride, cp, c_stride),
                        ($r, 4) => imp::tile::<$r, 4>(ap, a_stride, steps, bp, b_stride, cp, c_stride),
                    )*
                    _ => unreachable!("checked above"),
                }
            };
        }
        // SAFETY: `available()` guarantees AVX512F/AVX512_BF16; the asserts above keep every read
        // of `a` (rows × steps words at a_stride), of `b` (steps × cols words at b_stride from
        // col0) and every write of `c` (rows × cols at c_stride) inside the slices.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, b, c, a_stride, b_stride, c_stride, col0, steps);
        unreachable!("available() is false off x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX512F/AVX512_BF16; `a` readable for MR rows of `steps` words at
    /// `a_stride`, `b` for `steps` rows of NV·16 words at `b_stride`, `c` writable for MR rows of
    /// NV·16 values at `c_stride`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn tile<const MR: usize, const NV: usize>(
        a: *const u32,
        a_stride: usize,
        steps: usize,
        b: *const u32,
        b_stride: usize,
        c: *mut f32,
        c_stride: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        for j in 0..steps {
            let mut w = [_mm512_setzero_si512(); NV];
            for (v, wv) in w.iter_mut().enumerate() {
                // SAFETY: step j, columns [16v, 16v+16) are inside the caller's b rows.
                *wv = unsafe { _mm512_loadu_si512(b.add(j * b_stride + 16 * v).cast()) };
            }
            for (i, ai) in acc.iter_mut().enumerate() {
                // SAFETY: row i < MR, word j < steps: inside the caller's a rows.
                let x = _mm512_set1_epi32(unsafe { *a.add(i * a_stride + j) } as i32);
                // SAFETY: __m512i and __m512bh are both 64 plain bytes.
                let x: __m512bh = unsafe { std::mem::transmute::<__m512i, __m512bh>(x) };
                for (aiv, wv) in ai.iter_mut().zip(&w) {
                    // SAFETY: as above, a bit-level reinterpretation of 64 bytes.
                    let y: __m512bh = unsafe { std::mem::transmute::<__m512i, __m512bh>(*wv) };
                    *aiv = _mm512_dpbf16_ps(*aiv, x, y);
                }
            }
        }
        for (i, ai) in acc.iter().enumerate() {
            for (v, aiv) in ai.iter().enumerate() {
                // SAFETY: row i < MR, columns [16v, 16v+16) < NV·16: inside the caller's c rows.
                unsafe { _mm512_storeu_ps(c.add(i * c_stride + 16 * v), *aiv) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both packers equal the definition word by word (odd row and column counts, a column
    /// offset, padding zero), whatever the dispatch level of their vectorised parts.
    #[test]
    fn packers_equal_the_definition() {
        use crate::engine::kernels::runtime::plan::{active, KernelPlan};
        use crate::engine::kernels::runtime::simd::Level;
        let (stride, col0) = (83usize, 5usize);
        let src: Vec<f32> = (0..stride * 75)
            .map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 0.0137)
            .collect();
        for (rows, cols) in [(64usize, 75usize), (7, 33), (1, 1), (16, 16), (75, 64)] {
            for level in [None, Some(Level::Avx2), Some(Level::Base)] {
                let (by_rows, by_cols) =
                    level.map_or_else(active, KernelPlan::at_level).run(|| {
                        (
                            PackedRight::rows_as_reduction(&src, stride, col0, rows, cols, 1),
                            PackedRight::columns_as_reduction(&src, stride, col0, rows, cols, 16),
                        )
                    });
                for (p, m) in [(&by_rows, 0), (&by_cols, 1)] {
                    let at = |r: usize, c: usize| {
                        if r >= rows {
                            0.0
                        } else if m == 0 {
                            src[r * stride + col0 + c]
                        } else {
                            src[c * stride + col0 + r]
                        }
                    };
                    assert_eq!(p.cpad, cols.div_ceil(16) * 16);
                    for j in 0..p.steps {
                        for c in 0..p.cpad {
                            let want = if c < cols && 2 * j < rows {
                                word(at(2 * j, c), at(2 * j + 1, c))
                            } else {
                                0
                            };
                            let got = p.words[j * p.cpad + c];
                            assert_eq!(got, want, "{rows}×{cols} m{m} {level:?}: step {j} col {c}");
                        }
                    }
                }
            }
        }
    }
}
