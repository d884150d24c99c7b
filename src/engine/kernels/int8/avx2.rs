//! AVX2 tiles for the int8 GEMM in [`super`], for CPUs without AVX512-VNNI.
//!
//! `vpmaddubsw` (u8 × s8 → i16 pairs) would be the obvious instruction, but its i16 sums saturate
//! for u8 activations near 255 against weights near ±128, so results would differ from VNNI. Here
//! both operands are widened to i16 and multiplied with `vpmaddwd` (i16 × i16 → i32 pairs), which
//! is exact: the int32 accumulators equal the VNNI and portable ones, so outputs are bit-identical
//! across tiers. The activations arrive widened once per call (`a`: i16, row-major, `kp` per row);
//! each 16-byte quarter of a weight group (4 channels × 4 k) is widened in a register and used by
//! the rows of the pass. On an AVX2-only Zen 3 VM: 214 GOP/s at 4096 × 1024, M = 128 (the bf16
//! FMA panels: 112); 2B W8A8 decode 13.6 tok/s against 6.35 in bf16.

use super::{PANEL, STRIP_PANELS, TILE_ROWS};

/// Whether the AVX2 tiles can run: AVX2 present. The kernel plan's
/// [`Int8Gemm`](crate::engine::kernels::runtime::plan::Int8Gemm) decides whether they do.
pub fn available() -> bool {
    crate::engine::kernels::runtime::caps::CpuCaps::detect().avx2
}

/// `acc[i·64 + c] = Σ_k a[i·kp + k] · w[c][k]` for `rows` ≤ 6 rows and `np` ≤ 4 panels, with `a`
/// holding the u8 activations widened to i16. Panics on a CPU without AVX2.
pub fn tile(
    a: &[i16],
    kp: usize,
    rows: usize,
    b: &[i8],
    np: usize,
    groups: usize,
    acc: &mut [i32; TILE_ROWS * PANEL * STRIP_PANELS],
) {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(available(), "AVX2 int8 tile called on a CPU without AVX2");
    assert!((1..=TILE_ROWS).contains(&rows) && (1..=STRIP_PANELS).contains(&np));
    assert!(a.len() >= rows * kp && kp >= groups * 4);
    assert!(b.len() >= np * groups * PANEL * 4);
    #[cfg(target_arch = "x86_64")]
    for p in 0..np {
        let panel = &b[p * groups * PANEL * 4..];
        let mut r = 0;
        while r < rows {
            let pair = (rows - r).min(2);
            let out = &mut acc[r * PANEL * STRIP_PANELS + p * PANEL..];
            // SAFETY: `available()` guarantees AVX2; the asserts above keep rows r..r+pair of `a`
            // (kp ≥ 4·groups values each) and this panel's groups·64 bytes of `b` in bounds, and
            // `out` holds `pair` rows of 64 sums from its start.
            unsafe {
                if pair == 2 {
                    imp::rows::<2>(a[r * kp..].as_ptr(), kp, panel.as_ptr(), groups, out);
                } else {
                    imp::rows::<1>(a[r * kp..].as_ptr(), kp, panel.as_ptr(), groups, out);
                }
            }
            r += pair;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{PANEL, STRIP_PANELS};

    /// R rows × one panel. Accumulator q of a row holds channels 4q..4q+4 as two partial sums
    /// each (k pairs 0-1 and 2-3 of every group); they are added pairwise at the end.
    ///
    /// # Safety
    /// AVX2 must be present; `a` must be readable for R rows of `kp` ≥ 4·groups i16 values, `b`
    /// for groups·64 bytes, and `out` must hold (R − 1)·64 + 16 values.
    #[target_feature(enable = "avx2")]
    pub unsafe fn rows<const R: usize>(
        a: *const i16,
        kp: usize,
        b: *const i8,
        groups: usize,
        out: &mut [i32],
    ) {
        assert!(out.len() >= (R - 1) * PANEL * STRIP_PANELS + PANEL);
        let mut acc = [[_mm256_setzero_si256(); 4]; R];
        for g in 0..groups {
            let mut x = [_mm256_setzero_si256(); R];
            for (r, xr) in x.iter_mut().enumerate() {
                // SAFETY: the 4 values of group g in row r are inside `a` (4·g + 4 ≤ kp).
                let word = unsafe { (a.add(r * kp + 4 * g) as *const i64).read_unaligned() };
                *xr = _mm256_set1_epi64x(word);
            }
            for q in 0..4 {
                // SAFETY: group g's quarter q is inside the panel's groups·64 bytes.
                let w8 = unsafe { _mm_loadu_si128(b.add(g * 64 + q * 16).cast()) };
                let w = _mm256_cvtepi8_epi16(w8);
                for (row, xr) in acc.iter_mut().zip(&x) {
                    row[q] = _mm256_add_epi32(row[q], _mm256_madd_epi16(w, *xr));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            // hadd within 128-bit lanes gives channels [0 1 4 5 | 2 3 6 7] of each pair of
            // accumulators; the qword permute puts them in order.
            let lo = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(row[0], row[1]));
            let hi = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(row[2], row[3]));
            let dst = &mut out[r * PANEL * STRIP_PANELS..][..PANEL];
            // SAFETY: `dst` holds 16 i32 values: two unaligned 32-byte stores.
            unsafe {
                _mm256_storeu_si256(dst.as_mut_ptr().cast(), lo);
                _mm256_storeu_si256(dst.as_mut_ptr().add(8).cast(), hi);
            }
        }
    }
}
