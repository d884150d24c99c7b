//! Int8 quantization of W8A8 weights (per output channel) and activations (per token or per
//! tensor), as msModelSlim defines them; activations come out as `q + 128` (see [`super::int8`]).

use super::int8::ActQuant;
use super::simd::multiversion;

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
            *d = ((v / s).round_ties_even().clamp(-127.0, 127.0) as i32 + 128) as u8;
        }
    }
}

multiversion! {
    fn quantize_static(x: &[f32], dst: &mut [u8], inv: f32, z: f32) {
        for (d, &v) in dst.iter_mut().zip(x) {
            *d = ((v * inv + z).round_ties_even().clamp(-128.0, 127.0) as i32 + 128) as u8;
        }
    }
}
