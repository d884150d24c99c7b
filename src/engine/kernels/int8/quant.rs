//! Int8 quantization of W8A8 weights (per output channel) and activations (per token or per
//! tensor), as msModelSlim defines them; activations come out as `q + 128` (see [`super`]).

use super::ActQuant;
use crate::engine::kernels::runtime::simd::multiversion;

/// Symmetric per-output-channel quantization of a float weight row:
/// `s = max|w|/127`, `q = round(w/s)` (ties to even, like `torch.round`). An all-zero row gets
/// scale 0 and zero weights.
pub fn quantize_row(w: &[f32], q: &mut [i8]) -> f32 {
    let max = abs_max(w);
    if max == 0.0 || !max.is_finite() {
        q.fill(0);
        return if max.is_finite() { 0.0 } else { f32::NAN };
    }
    let s = max / 127.0;
    quantize_weights(w, q, s);
    s
}

multiversion! {
    // Dispatched so `round_ties_even` becomes one vector instruction instead of a libm call.
    fn quantize_weights(w: &[f32], q: &mut [i8], s: f32) {
        for (d, &v) in q.iter_mut().zip(w) {
            *d = (v / s).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
    }
}

/// Quantizes one row to `q + 128` and returns the row's dequantization factor (s_t, or 1 for
/// static quantization whose scale lives in `deq_scale`).
pub fn quantize_activations(x: &[f32], dst: &mut [u8], act: ActQuant) -> f32 {
    match act {
        ActQuant::Dynamic => {
            let max = abs_max(x);
            if max == 0.0 || !max.is_finite() {
                // All-zero row: zero output (an inf/NaN row poisons its output like the float path).
                dst.fill(128);
                return if max.is_finite() { 0.0 } else { f32::NAN };
            }
            let s = max / 127.0;
            quantize_dynamic(x, dst, s);
            s
        }
        ActQuant::Static {
            inv_scale,
            zero_point,
        } => {
            quantize_static(x, dst, inv_scale, zero_point as f32);
            1.0
        }
    }
}

multiversion! {
    fn abs_max(x: &[f32]) -> f32 {
        let mut m = [0f32; 16];
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for i in 0..16 {
                m[i] = m[i].max(c[i].abs());
            }
        }
        let tail = chunks.remainder().iter().fold(0f32, |a, v| a.max(v.abs()));
        m.iter().fold(tail, |a, &v| a.max(v))
    }
}

multiversion! {
    fn quantize_dynamic(x: &[f32], dst: &mut [u8], s: f32) {
        for (d, &v) in dst.iter_mut().zip(x) {
            *d = offset_byte((v / s).round_ties_even().clamp(-127.0, 127.0));
        }
    }
}

multiversion! {
    fn quantize_static(x: &[f32], dst: &mut [u8], inv: f32, z: f32) {
        for (d, &v) in dst.iter_mut().zip(x) {
            *d = offset_byte((v * inv + z).round_ties_even().clamp(-128.0, 127.0));
        }
    }
}

/// `(r as i32 + 128) as u8` for an integral `r` in [−128, 127], or NaN (→ 128, as `NaN as i32`
/// is 0), in a form that vectorises: (r + 128) + 2²³ holds the integer in its low mantissa
/// bits (both sums are exact: integers below 2²³). The saturating `as` cast compiled to a
/// per-lane scalar NaN check and insert instead, 6 % of a 16-stream W8A8 decode step.
#[inline(always)]
fn offset_byte(r: f32) -> u8 {
    let r = if r.is_nan() { 0.0 } else { r };
    ((r + 128.0) + 8_388_608.0).to_bits() as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_byte_equals_the_saturating_cast() {
        for i in -128..=127 {
            let r = i as f32;
            assert_eq!(offset_byte(r), (r as i32 + 128) as u8, "{r}");
        }
        let nan = std::hint::black_box(f32::NAN);
        assert_eq!(offset_byte(nan), (nan as i32 + 128) as u8);
        assert_eq!(offset_byte(-0.0), 128);
    }

    #[test]
    fn quantized_rows_equal_the_reference_formula() {
        let mut seed = 7u32;
        let x: Vec<f32> = (0..4099)
            .map(|i| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (seed >> 8) as f32 / (1 << 24) as f32 - 0.5;
                // Exact halves and a NaN exercise ties-to-even and the NaN lane.
                match i % 97 {
                    0 => f32::NAN,
                    1 => 2.5 * 0.013,
                    _ => v * 3.0,
                }
            })
            .collect();
        let s = 0.013f32;
        let mut got = vec![0u8; x.len()];
        quantize_dynamic(&x, &mut got, s);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            let want = ((v / s).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
            assert_eq!(g, want, "dynamic [{i}] {v}");
        }
        let (inv, z) = (61.5f32, -3.0f32);
        quantize_static(&x, &mut got, inv, z);
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            let want = ((v * inv + z).round_ties_even().clamp(-128.0, 127.0) as i32 + 128) as u8;
            assert_eq!(g, want, "static [{i}] {v}");
        }
    }
}
