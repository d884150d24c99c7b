//! AVX2 + FMA register tiles for [`super::Bf16Panels`]: 16 ymm registers, so up to 6 rows × 16
//! channels (12 accumulators) per pass. Each 32-byte half of a 64-byte chunk line widens into two
//! 8-channel vectors (lanes 0..8 and 16..24 of the chunk, or 8..16 and 24..32) with the same shift
//! and mask as the AVX-512 tiles, and every output is the same FMA chain over k, so results equal
//! the AVX-512 tiles' bit for bit. f16 panels (channels in order) widen each 8-channel quarter
//! of a line with F16C's `vcvtph2ps`, into the same accumulators.

use std::arch::x86_64::*;

use super::{Tile, AVX2_MR, CHUNK};

/// AVX2: chunk by chunk; up to 2 rows take the whole chunk (4 vectors per row), more rows take
/// it in two half-chunk passes so the accumulators fit the 16 registers.
pub(super) fn run(tile: &Tile, rows: usize, chunks: usize) {
    assert!(rows <= AVX2_MR, "AVX2 tiles hold at most {AVX2_MR} rows");
    assert!(
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c"),
        "AVX2 bf16 tiles called on a CPU without AVX2 + FMA + F16C"
    );
    for s in 0..chunks {
        let t = tile.chunk(s);
        if t.cols == 0 {
            break;
        }
        macro_rules! go {
            ($f16:literal, $($r:literal),*) => {
                match rows {
                    // SAFETY: AVX2 + FMA + F16C asserted above; `Tile::run` asserted
                    // that `a` holds rows·kc values and `b` this chunk's kc lines; `y` is
                    // written only through masks limited to `cols` columns of `rows` rows
                    // that the caller owns.
                    1 => unsafe { tile_avx2::<1, 2, $f16>(&t, 0) },
                    2 => unsafe { tile_avx2::<2, 2, $f16>(&t, 0) },
                    $($r => unsafe {
                        tile_avx2::<$r, 1, $f16>(&t, 0);
                        if t.cols > half_cols($f16) {
                            tile_avx2::<$r, 1, $f16>(&t, 1);
                        }
                    },)*
                    _ => unreachable!("rows checked above"),
                }
            };
        }
        if t.f16 {
            go!(true, 3, 4, 5, 6)
        } else {
            go!(false, 3, 4, 5, 6)
        }
    }
}

/// Half-chunk `hh` (16 bf16 values of each 32-value line): its offset in the panel data and
/// the output column of its low (`part` 0) or high (`part` 1) 8 channels.
#[inline(always)]
fn offset(hh: usize, chunk_stride: usize) -> usize {
    (hh / 2) * chunk_stride + (hh % 2) * 16
}

/// bf16: half-chunk hh holds channels (hh%2)·8.. (low halves) and 16 + (hh%2)·8.. (high halves);
/// f16: channels (hh%2)·16.. in order, 8 per part.
#[inline(always)]
fn col<const F16: bool>(hh: usize, part: usize) -> usize {
    if F16 {
        (hh / 2) * CHUNK + (hh % 2) * 16 + part * 8
    } else {
        (hh / 2) * CHUNK + (hh % 2) * 8 + part * 16
    }
}

/// Columns of a chunk below which the second half-chunk has nothing to write: it starts at
/// column 8 (bf16) or 16 (f16).
fn half_cols(f16: bool) -> usize {
    if f16 {
        16
    } else {
        8
    }
}

/// Lanes below `cols - c` (at most 8) set.
#[inline]
#[target_feature(enable = "avx2")]
fn mask(cols: usize, c: usize) -> __m256i {
    let left = cols.saturating_sub(c).min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(left),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// MR rows × NL half-chunks from half `h0` on (2·NL vectors of 8 accumulators per row).
///
/// # Safety
/// AVX2 and FMA must be present; `t.a` must hold MR·kc values and `t.b` the half-chunks'
/// kc lines (checked by [`Tile::run`]); `t.y` must be writable for MR rows of the columns
/// below `cols` that the tile covers.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<const MR: usize, const NL: usize, const F16: bool>(t: &Tile, h0: usize) {
    let high = _mm256_set1_epi32(0xffff_0000u32 as i32);
    let mut acc = [[[_mm256_setzero_ps(); 2]; NL]; MR];
    if !t.first {
        for (r, row) in acc.iter_mut().enumerate() {
            for (l, pair) in row.iter_mut().enumerate() {
                for (p, a) in pair.iter_mut().enumerate() {
                    let c = col::<F16>(h0 + l, p);
                    // SAFETY: masked lanes are not read, the others are this tile's outputs.
                    *a = unsafe {
                        _mm256_maskload_ps(t.y.wrapping_add(r * t.ldy + c), mask(t.cols, c))
                    };
                }
            }
        }
    }
    let (a, b) = (t.a.as_ptr(), t.b.as_ptr());
    for kk in 0..t.kc {
        for l in 0..NL {
            let line = b.wrapping_add(offset(h0 + l, t.chunk_stride) + kk * CHUNK);
            let (lo, hi) = if F16 {
                // SAFETY: half-chunk h0 + l, step kk (16 values) lies inside `t.b` (asserted by
                // the caller); the two loads read its quarters.
                unsafe {
                    (
                        _mm256_cvtph_ps(_mm_loadu_si128(line.cast())),
                        _mm256_cvtph_ps(_mm_loadu_si128(line.add(8).cast())),
                    )
                }
            } else {
                // SAFETY: as above, one load of the half-chunk.
                let w = unsafe { _mm256_loadu_si256(line.cast()) };
                (
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w)),
                    _mm256_castsi256_ps(_mm256_and_si256(w, high)),
                )
            };
            for (r, row) in acc.iter_mut().enumerate() {
                // SAFETY: step kk < kc, row r < MR: inside `t.a` (asserted by the caller).
                let x = _mm256_set1_ps(unsafe { *a.add(kk * MR + r) });
                row[l][0] = _mm256_fmadd_ps(x, lo, row[l][0]);
                row[l][1] = _mm256_fmadd_ps(x, hi, row[l][1]);
            }
        }
    }
    for (r, row) in acc.iter_mut().enumerate() {
        for (l, pair) in row.iter_mut().enumerate() {
            for (p, a) in pair.iter_mut().enumerate() {
                let c = col::<F16>(h0 + l, p);
                let m = mask(t.cols, c);
                if let Some(bias) = t.bias {
                    // SAFETY: masked lanes are not read; the others are < cols ≤ bias length.
                    let bv = unsafe { _mm256_maskload_ps(bias.as_ptr().wrapping_add(c), m) };
                    *a = _mm256_add_ps(*a, bv);
                }
                // SAFETY: masked store into this tile's own outputs.
                unsafe { _mm256_maskstore_ps(t.y.wrapping_add(r * t.ldy + c), m, *a) };
            }
        }
    }
}
