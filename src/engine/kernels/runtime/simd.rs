//! Runtime ISA dispatch. Hot loops are written once as plain Rust that the compiler vectorises,
//! and `multiversion!` compiles each one for AVX-512, AVX2+FMA and the x86-64 baseline, running
//! the level of the kernel plan in force (the best the CPU has by default). Rust never contracts
//! `a·b + c` into an FMA on its own, so every version computes bit-identical results; only
//! explicit `mul_add` differs in speed.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Base = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl Level {
    /// The name `QWEN3VL_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Base => "base",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// The instruction-set level of the plan in force ([`super::plan::active`]): the best
/// the CPU supports unless `QWEN3VL_ISA` or an explicit plan lowers it.
#[inline]
pub fn level() -> Level {
    super::plan::active().isa
}

/// Define a function whose body is compiled for every [`Level`] and dispatched at run time.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                use $crate::engine::kernels::runtime::simd::{level, Level};
                match level() {
                    // SAFETY: the plan in force never asks for more than the CPU has (resolved
                    // from `CpuCaps`, or checked by `KernelPlan::fits` before it is scoped), and
                    // its AVX-512 level means AVX-512F/BW/VL + FMA.
                    Level::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above; the AVX2 level means AVX2 + FMA.
                    Level::Avx2 => return unsafe { v3($($arg),*) },
                    Level::Base => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// exp(x) in f32 (Cephes-style range reduction + degree-6 polynomial, ≤ 2 ulp), branch-free so
/// it vectorises. Inputs are clamped to the finite range.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round-to-nearest via the 1.5·2^23 trick (no libm call, vectorises on SSE2).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.336_54, 88.376_26);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n by building the exponent; n ∈ [-126, 127] after the clamp. n is read from the low
    // mantissa bits of `t` (an `as i32` cast saturates, which compiles to scalar code per lane).
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits());
    let scale = f32::from_bits(ni.wrapping_add(127) << 23);
    y * scale
}

/// erf(x) in f32, within 2 ulp of the correctly rounded value (checked on 2.2 M points over
/// [−6, 6]), branch-free so it vectorises (libm's `erff` branches per input and stays scalar).
/// |x| < 1: x·P(x²); 1 ≤ |x| ≤ 4: 1 − e^(−x²)·R(|x|), where R = erfc·e^(x²) is smooth and is
/// fitted as a polynomial in (|x| − 2.5)/1.5; beyond 4 erf rounds to ±1 in f32. Both
/// polynomials are least-squares fits on Chebyshev nodes (`scripts/ref/fit_erf.py`).
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    const SMALL: [f32; 7] = [
        std::f32::consts::FRAC_2_SQRT_PI, // the fit lands on 2/√π, erf′(0)
        -0.376_126_3,
        0.112_836_12,
        -0.026_854_81,
        0.005_190_053_5,
        -0.000_802_435_4,
        7.898_21e-5,
    ];
    const LARGE: [f32; 11] = [
        0.210_806_37,
        -0.111_521_33,
        0.056_110_06,
        -0.026_998_682,
        0.012_491_442,
        -0.005_608_488,
        0.002_404_656_3,
        -0.000_919_999_55,
        0.000_392_562_1,
        -0.000_243_507_28,
        8.638_995e-5,
    ];
    #[inline(always)]
    fn horner(c: &[f32], x: f32) -> f32 {
        c.iter().rev().fold(0.0, |p, &ci| p * x + ci)
    }
    let a = x.abs().min(4.0);
    let t = a * a;
    let small = x * horner(&SMALL, t);
    let r = horner(&LARGE, (a - 2.5) * (1.0 / 1.5));
    let large = (1.0 - exp_f32(-t) * r).copysign(x);
    if x.is_nan() {
        x
    } else if a < 1.0 {
        small
    } else {
        large
    }
}

/// Logistic sigmoid 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::runtime::plan::KernelPlan;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(-1000.0) >= 0.0 && exp_f32(-1000.0) < 1e-37);
    }

    #[test]
    fn erf_is_accurate() {
        // Against the f64 erf of the same input, rounded: within 2 ulp (ulp of the result's
        // magnitude; an exact 0 has none to lose), and odd, saturating and NaN-preserving.
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = libm::erf(x as f64) as f32;
            let got = erf_f32(x);
            let ulp = (got.to_bits() as i64 - want.to_bits() as i64).abs();
            assert!(
                ulp <= 2 && got.signum() == want.signum(),
                "erf({x}) = {got}, want {want} ({ulp} ulp)"
            );
            x += 0.000_73;
        }
        for x in [0.0f32, 1e-30, 0.5, 1.0, 3.99, 4.0, 10.0, f32::INFINITY] {
            assert_eq!(erf_f32(-x), -erf_f32(x));
        }
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(0.0), 0.0);
        assert!(erf_f32(f32::NAN).is_nan());
    }

    multiversion! {
        fn sum_squares(xs: &[f32]) -> f32 {
            let mut acc = [0f32; 16];
            for c in xs.chunks_exact(16) {
                for i in 0..16 {
                    acc[i] += c[i] * c[i];
                }
            }
            acc.iter().sum()
        }
    }

    #[test]
    fn dispatched_versions_agree() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let best = sum_squares(&xs);
        let base = KernelPlan::at_level(Level::Base).run(|| {
            assert_eq!(level(), Level::Base);
            sum_squares(&xs)
        });
        assert_eq!(best.to_bits(), base.to_bits());
    }
}
