//! bf16 helpers. In bf16 mode activations live in f32 buffers but hold only bf16-representable
//! values: every place where PyTorch rounds a bf16 tensor, we round too.

use super::simd::multiversion;

/// Round to the nearest bf16 value (ties to even), returned as f32. Bit arithmetic so that loops
/// over buffers vectorise; NaN stays NaN.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if (b & 0x7fff_ffff) > 0x7f80_0000 {
        return x;
    }
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    f32::from_bits(r & 0xffff_0000)
}

multiversion! {
    /// Round a whole buffer to bf16 precision (round-to-nearest-even).
    pub fn round_slice(xs: &mut [f32]) {
        for x in xs {
            *x = round_bf16(*x);
        }
    }
}

multiversion! {
    /// Round f32 values to bf16 (nearest-even).
    pub fn narrow(dst: &mut [half::bf16], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = half::bf16::from_bits((round_bf16(*s).to_bits() >> 16) as u16);
        }
    }
}

multiversion! {
    /// f32 values rounded to bf16 (nearest-even) and paired into words, the pair a `vdpbf16ps`
    /// lane consumes: dst[p] = bf16(src[2p]) | bf16(src[2p+1]) << 16; an odd tail pairs with 0.
    pub fn narrow_pairs(dst: &mut [u32], src: &[f32]) {
        let mut pairs = src.chunks_exact(2);
        for (d, p) in dst.iter_mut().zip(pairs.by_ref()) {
            *d = (round_bf16(p[0]).to_bits() >> 16) | (round_bf16(p[1]).to_bits() & 0xffff_0000);
        }
        if let [last] = pairs.remainder() {
            dst[src.len() / 2] = round_bf16(*last).to_bits() >> 16;
        }
    }
}

multiversion! {
    /// Two rows rounded to bf16 and interleaved into words: dst[c] = bf16(lo[c]) |
    /// bf16(hi[c]) << 16 (the pair of reduction steps 2j, 2j+1 of one column).
    pub fn interleave_pairs(dst: &mut [u32], lo: &[f32], hi: &[f32]) {
        for ((d, &a), &b) in dst.iter_mut().zip(lo).zip(hi) {
            *d = (round_bf16(a).to_bits() >> 16) | (round_bf16(b).to_bits() & 0xffff_0000);
        }
    }
}

multiversion! {
    /// Widen bf16 bit patterns to f32 (exact: a bf16 is the top half of an f32).
    pub fn widen(dst: &mut [f32], src: &[half::bf16]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits((s.to_bits() as u32) << 16);
        }
    }
}

/// The activation precision a model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 weights and activations (reference mode).
    F32,
    /// bf16 weights, bf16-rounded activations, fp32 accumulation (the default).
    Bf16,
}

impl Precision {
    #[inline(always)]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::Bf16 => round_bf16(x),
        }
    }

    pub fn round_slice(self, xs: &mut [f32]) {
        if self == Precision::Bf16 {
            round_slice(xs);
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_half_crate() {
        let mut x = 0x0000_0001u32;
        let mut specials = vec![
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN_POSITIVE,
            1.0 + f32::EPSILON,
        ];
        while x < 0xffff_0000 {
            specials.push(f32::from_bits(x));
            specials.push(f32::from_bits(x | 0x8000)); // exact ties
            x = x.wrapping_mul(3).wrapping_add(0x1_2345);
        }
        for v in specials {
            let want = half::bf16::from_f32(v).to_f32();
            let got = round_bf16(v);
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "{v:e}: {got:e} vs {want:e}"
            );
        }
    }
}
