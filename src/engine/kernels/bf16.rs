//! bf16 and f16 helpers. In bf16 (f16) mode activations live in f32 buffers but hold only
//! bf16- (f16-) representable values: every place where PyTorch rounds a half-precision tensor,
//! we round too.

use super::runtime::simd::multiversion;

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

/// Round to the nearest IEEE half (f16) value (ties to even), returned as f32: overflow gives
/// ±inf, values below 2⁻¹⁴ land on the f16 subnormal grid (multiples of 2⁻²⁴), NaN stays NaN
/// (its bits unchanged, as [`round_bf16`]). Branch-light bit arithmetic so that loops over
/// buffers vectorise; equals `half::f16::from_f32(x).to_f32()` (tested on every exponent).
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let b = x.to_bits();
    let a = b & 0x7fff_ffff;
    let sign = b & 0x8000_0000;
    if a > 0x7f80_0000 {
        return x;
    }
    let r = if a >= 0x3880_0000 {
        // Normal f16 range (|x| ≥ 2⁻¹⁴): keep 10 mantissa bits, nearest-even; anything that
        // rounds past 65504 (the largest f16) is infinite.
        let r = (a + 0xfff + ((a >> 13) & 1)) & 0xffff_e000;
        if r > 0x477f_e000 {
            0x7f80_0000
        } else {
            r
        }
    } else {
        // Subnormal f16: adding 0.5 puts the value where the f32 ulp is 2⁻²⁴, so the addition
        // itself rounds to the f16 grid (nearest-even); subtracting 0.5 again is exact.
        ((f32::from_bits(a) + 0.5) - 0.5).to_bits()
    };
    f32::from_bits(r | sign)
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
    /// Round a whole buffer to f16 precision (round-to-nearest-even).
    pub fn round_slice_f16(xs: &mut [f32]) {
        for x in xs {
            *x = round_f16(*x);
        }
    }
}

multiversion! {
    /// Round f32 values to f16 (nearest-even), exact for values already on the f16 grid.
    pub fn narrow_f16(dst: &mut [half::f16], src: &[f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16_bits(round_f16(*s));
        }
    }
}

/// The f16 of an f32 that is already f16-representable (a [`round_f16`] result).
#[inline(always)]
fn f16_bits(r: f32) -> half::f16 {
    let b = r.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    let bits = if a > 0x7f80_0000 {
        0x7e00 | ((a >> 13) & 0x3ff) as u16
    } else if a >= 0x3880_0000 {
        // Rebias the exponent (127 → 15); inf maps onto 0x7c00.
        ((a >> 13) - ((127 - 15) << 10)).min(0x7c00) as u16
    } else {
        // Subnormal: the value in units of 2⁻²⁴ (exact after rounding).
        (f32::from_bits(a) * 16_777_216.0) as u16
    };
    half::f16::from_bits(sign | bits)
}

/// Widen f16 bit patterns to f32 (exact). The `half` crate uses F16C where the CPU has it.
pub fn widen_f16(dst: &mut [f32], src: &[half::f16]) {
    half::slice::HalfFloatSliceExt::convert_to_f32_slice(src, dst);
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
    /// lane consumes: `dst[p] = bf16(src[2p]) | bf16(src[2p+1]) << 16`; an odd tail pairs with 0.
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
    /// Two rows rounded to bf16 and interleaved into words: `dst[c] = bf16(lo[c]) |
    /// bf16(hi[c]) << 16` (the pair of reduction steps 2j, 2j+1 of one column).
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
    /// IEEE half weights, f16-rounded activations, fp32 accumulation (PyTorch float16 on CPU).
    F16,
}

impl Precision {
    #[inline(always)]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::Bf16 => round_bf16(x),
            Precision::F16 => round_f16(x),
        }
    }

    pub fn round_slice(self, xs: &mut [f32]) {
        match self {
            Precision::F32 => {}
            Precision::Bf16 => round_slice(xs),
            Precision::F16 => round_slice_f16(xs),
        }
    }

    /// Whether activations are rounded to a 16-bit float (bf16 or f16).
    pub fn is_half(self) -> bool {
        self != Precision::F32
    }

    /// The `--dtype` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            "f16" | "float16" | "fp16" | "half" => Some(Precision::F16),
            _ => None,
        }
    }
}

/// Evaluates `$body` with `$r` bound to the rounding function of precision `$p` (identity for
/// f32), one monomorphic copy per precision: a hot loop then has no per-element branch on the
/// precision and vectorises as the bf16-only loops did.
macro_rules! by_precision {
    ($p:expr, $r:ident => $body:expr) => {
        match $p {
            $crate::engine::kernels::bf16::Precision::F32 => {
                #[inline(always)]
                fn $r(x: f32) -> f32 {
                    x
                }
                $body
            }
            $crate::engine::kernels::bf16::Precision::Bf16 => {
                use $crate::engine::kernels::bf16::round_bf16 as $r;
                $body
            }
            $crate::engine::kernels::bf16::Precision::F16 => {
                use $crate::engine::kernels::bf16::round_f16 as $r;
                $body
            }
        }
    };
}
pub(crate) use by_precision;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 sampled across all exponents (both signs, exact f16 ties, the subnormal and
    /// overflow boundaries) rounds as the `half` crate's conversion, and narrows to its bits.
    #[test]
    fn f16_rounding_matches_half_crate() {
        let mut vals = vec![
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            6.103_515_6e-5,
            6.097_555e-5,
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_233e-8,
            f32::MAX,
            f32::MIN_POSITIVE,
        ];
        let mut x = 1u32;
        while x < 0xffff_0000 {
            vals.push(f32::from_bits(x));
            vals.push(f32::from_bits(x | 0x1000)); // exact f16 ties in the normal range
            vals.push(f32::from_bits(x & !0x0fff));
            x = x.wrapping_mul(3).wrapping_add(0x1_2345);
        }
        let mut narrowed = vec![half::f16::ZERO; vals.len()];
        narrow_f16(&mut narrowed, &vals);
        for (&v, n) in vals.iter().zip(&narrowed) {
            let want = half::f16::from_f32(v);
            let got = round_f16(v);
            if v.is_nan() {
                assert!(got.is_nan() && n.is_nan(), "{v:e}");
                continue;
            }
            assert_eq!(
                got.to_bits(),
                want.to_f32().to_bits(),
                "{v:e}: {got:e} vs {want}"
            );
            assert_eq!(n.to_bits(), want.to_bits(), "{v:e}: narrowed");
        }
        let mut wide = vec![0f32; narrowed.len()];
        widen_f16(&mut wide, &narrowed);
        for (w, n) in wide.iter().zip(&narrowed) {
            assert!(w.to_bits() == n.to_f32().to_bits() || w.is_nan());
        }
    }

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
