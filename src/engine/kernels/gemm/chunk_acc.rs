//! The f32 accumulator tiles shared by the bf16 GEMMs that lay weights out in 32-channel chunks
//! ([`super::bf16_fma`]'s AVX-512 tiles and [`super::bf16_dot`]): MR rows × NV 16-lane
//! vectors, vector v at columns (v/2)·32 + (v%2)·16 of the tile, masked to its valid columns.
//! Both kernels start a tile from zero or from the partial sums in y, and end it by adding the
//! bias, applying an [`Epilogue`] and storing.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use crate::engine::kernels::avx512_math::{gelu_tanh, round_bf16};
use crate::engine::kernels::linear::Epilogue;

/// Output channels per chunk (two 16-lane vectors).
const CHUNK: usize = 32;

/// Column offset of accumulator vector `v` (chunk v/2, low or high half).
#[inline(always)]
fn col(v: usize) -> usize {
    (v / 2) * CHUNK + (v % 2) * 16
}

/// Lanes of vector `v` that fall inside the tile's first `cols` columns.
#[inline(always)]
fn mask(cols: usize, v: usize) -> __mmask16 {
    let left = cols.saturating_sub(col(v)).min(16);
    ((1u32 << left) - 1) as __mmask16
}

/// The tile's starting accumulators: zeros, or (`partial`) the sums already in `y` (row stride
/// `ldy`, `cols` valid columns).
///
/// # Safety
/// AVX-512F must be present; with `partial`, `y` must be readable for MR rows of
/// `min(cols, NV·16)` columns.
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn start<const MR: usize, const NV: usize>(
    partial: bool,
    y: *const f32,
    ldy: usize,
    cols: usize,
) -> [[__m512; NV]; MR] {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    if partial {
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                // SAFETY: masked lanes are not read, the others lie in the caller's rows.
                *a = unsafe {
                    _mm512_maskz_loadu_ps(mask(cols, v), y.wrapping_add(r * ldy + col(v)))
                };
            }
        }
    }
    acc
}

/// Adds `bias` (when given; at least `cols` values), applies `epilogue` and stores the tile
/// into `y`.
///
/// # Safety
/// AVX-512F must be present; `y` must be writable for MR rows (stride `ldy`) of
/// `min(cols, NV·16)` columns.
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn finish<const MR: usize, const NV: usize>(
    acc: &[[__m512; NV]; MR],
    y: *mut f32,
    ldy: usize,
    cols: usize,
    bias: Option<&[f32]>,
    epilogue: Epilogue,
) {
    for (r, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            let m = mask(cols, v);
            let a = match bias {
                // SAFETY: masked lanes are not read; unmasked ones are < cols ≤ bias length.
                Some(b) => _mm512_add_ps(a, unsafe {
                    _mm512_maskz_loadu_ps(m, b.as_ptr().wrapping_add(col(v)))
                }),
                None => a,
            };
            let a = match epilogue {
                Epilogue::None => a,
                Epilogue::RoundBf16 => round_bf16(a),
                Epilogue::GeluTanhBf16 => round_bf16(gelu_tanh(round_bf16(a))),
            };
            // SAFETY: masked store into the caller's rows.
            unsafe { _mm512_mask_storeu_ps(y.wrapping_add(r * ldy + col(v)), m, a) };
        }
    }
}
