//! 16-lane AVX-512 forms of the scalar helpers in [`super::bf16`], [`super::runtime::simd`] and
//! [`super::ops`], operation for operation (no fused multiply-adds where the scalar code has
//! none), so a kernel that uses them gives the scalar code's bits. Shared by the softmax kernel
//! and the GEMM epilogues.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// `bf16::round_bf16` on 16 lanes: NaN kept, otherwise round to nearest even on the top 16 bits.
#[target_feature(enable = "avx512f")]
#[inline]
pub fn round_bf16(x: __m512) -> __m512 {
    let b = _mm512_castps_si512(x);
    let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
    let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
    let r = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
    let r = _mm512_and_si512(r, _mm512_set1_epi32(0xffff_0000u32 as i32));
    _mm512_castsi512_ps(_mm512_mask_mov_epi32(r, nan, b))
}

/// `bf16::round_f16` on 16 lanes: NaN kept, otherwise the nearest f16 (ties to even, overflow
/// to ±inf, f16 subnormals kept) through the AVX-512F conversions, which round exactly so.
#[target_feature(enable = "avx512f")]
#[inline]
pub fn round_f16(x: __m512) -> __m512 {
    let b = _mm512_castps_si512(x);
    let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
    let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
    let r = _mm512_cvtph_ps(_mm512_cvtps_ph::<
        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
    >(x));
    _mm512_mask_mov_ps(r, nan, x)
}

/// `simd::exp_f32` on 16 lanes.
#[target_feature(enable = "avx512f")]
#[inline]
pub fn exp(x: __m512) -> __m512 {
    let magic = _mm512_set1_ps(12_582_912.0);
    // clamp(x, lo, hi) keeping NaN: MAXPS/MINPS return their second operand on a NaN.
    let x = _mm512_max_ps(_mm512_set1_ps(-87.336_54), x);
    let x = _mm512_min_ps(_mm512_set1_ps(88.376_26), x);
    let t = _mm512_add_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        magic,
    );
    let n = _mm512_sub_ps(t, magic);
    let r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693_359_4)));
    let r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(-2.121_944_4e-4)));
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_2e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(c));
    }
    let y = _mm512_mul_ps(_mm512_mul_ps(p, r), r);
    let y = _mm512_add_ps(_mm512_add_ps(y, r), _mm512_set1_ps(1.0));
    // y·2ⁿ: exact for n ∈ [−126, 127] (the clamp's range), as the scalar code's multiply by a
    // constructed 2ⁿ is; one instruction instead of four.
    _mm512_scalef_ps(y, n)
}

/// `ops::gelu_tanh` on 16 lanes: x·sigmoid(2u), u = √(2/π)·(x + 0.044715·x³).
#[target_feature(enable = "avx512f")]
#[inline]
pub fn gelu_tanh(x: __m512) -> __m512 {
    let cube = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    let inner = _mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(0.044715), cube));
    let u = _mm512_mul_ps(_mm512_set1_ps(0.797_884_6), inner);
    let two_u = _mm512_mul_ps(_mm512_set1_ps(2.0), u);
    // sigmoid(z) = 1 / (1 + e^−z); negation flips the sign bit, exactly as `-z`.
    let neg = _mm512_castsi512_ps(_mm512_xor_si512(
        _mm512_castps_si512(two_u),
        _mm512_set1_epi32(i32::MIN),
    ));
    let one = _mm512_set1_ps(1.0);
    let s = _mm512_div_ps(one, _mm512_add_ps(one, exp(neg)));
    _mm512_mul_ps(x, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each lane function gives its scalar counterpart's bits over a sweep that covers the
    /// clamps, ties, zeros, NaN and infinities.
    #[test]
    fn lanes_equal_the_scalar_helpers() {
        if !crate::engine::kernels::attention::bf16::cpu_has_them() {
            eprintln!("skipped: no AVX-512 here");
            return;
        }
        let mut xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.0517).collect();
        xs.extend([
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
            -1e-40,
        ]);
        xs.extend([100.0, -100.0, 88.5, -88.5, 1.003_906_3, 1.011_718_8]);
        xs.extend((0..4000).map(|i| f32::from_bits(0x3f80_0000 + i * 0x7fff)));
        while !xs.len().is_multiple_of(16) {
            xs.push(0.5);
        }
        type Lane = fn(__m512) -> __m512;
        type Case = (&'static str, Lane, fn(f32) -> f32);
        // f16's subnormal, overflow and tie boundaries.
        xs.extend([
            6.1e-5,
            6.097_555e-5,
            2.980_232_2e-8,
            3e-8,
            65504.0,
            65519.0,
            65520.0,
            7e4,
        ]);
        xs.extend((0..4000).map(|i| f32::from_bits(0x3300_0000 + i * 0x3_1001)));
        while !xs.len().is_multiple_of(16) {
            xs.push(0.5);
        }
        let cases: [Case; 4] = [
            (
                "round_bf16",
                |v| unsafe { round_bf16(v) },
                crate::engine::kernels::bf16::round_bf16,
            ),
            (
                "round_f16",
                |v| unsafe { round_f16(v) },
                crate::engine::kernels::bf16::round_f16,
            ),
            (
                "exp",
                |v| unsafe { exp(v) },
                crate::engine::kernels::runtime::simd::exp_f32,
            ),
            (
                "gelu_tanh",
                |v| unsafe { gelu_tanh(v) },
                crate::engine::kernels::ops::gelu_tanh,
            ),
        ];
        for (name, lane, scalar) in cases {
            for c in xs.chunks_exact(16) {
                let mut got = [0f32; 16];
                // SAFETY: AVX-512F is present (checked above); 16 values in and out.
                unsafe { _mm512_storeu_ps(got.as_mut_ptr(), lane(_mm512_loadu_ps(c.as_ptr()))) };
                for (&x, g) in c.iter().zip(got) {
                    let want = scalar(x);
                    assert!(
                        g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                        "{name}({x:e}): {g:e} vs {want:e}"
                    );
                }
            }
        }
    }
}
