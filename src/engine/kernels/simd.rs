//! Runtime ISA dispatch. Hot loops are written once as plain Rust that the compiler vectorises,
//! and [`multiversion!`] compiles each one for AVX-512, AVX2+FMA and the x86-64 baseline, picking
//! the best the CPU has at run time. Rust never contracts `a·b + c` into an FMA on its own, so
//! every version computes bit-identical results; only explicit `mul_add` differs in speed.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Base = 1,
    Avx2 = 2,
    Avx512 = 3,
}

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The instruction-set level in use: the best the CPU supports, lowered with
/// `QWEN3VL_ISA=base|avx2|avx512` (for testing the portable paths on a fast machine).
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Base,
        2 => Level::Avx2,
        3 => Level::Avx512,
        _ => {
            let l = detect();
            LEVEL.store(l as u8, Ordering::Relaxed);
            l
        }
    }
}

/// Force a level (tests compare the portable and vector paths); `None` re-detects.
pub fn force_level(level: Option<Level>) {
    LEVEL.store(
        level.map_or(0, |l| l.min(cpu_level()) as u8),
        Ordering::Relaxed,
    );
}

fn detect() -> Level {
    let cpu = cpu_level();
    let wanted = match std::env::var("QWEN3VL_ISA").as_deref() {
        Ok("base") => Level::Base,
        Ok("avx2") => Level::Avx2,
        _ => Level::Avx512,
    };
    cpu.min(wanted)
}

#[cfg(target_arch = "x86_64")]
fn cpu_level() -> Level {
    if is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("fma")
    {
        Level::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Level::Avx2
    } else {
        Level::Base
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_level() -> Level {
    Level::Base
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
                match $crate::engine::kernels::simd::level() {
                    // SAFETY: `level()` reports AVX-512F/BW/VL + FMA only when the CPU has them.
                    $crate::engine::kernels::simd::Level::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: `level()` reports AVX2 + FMA only when the CPU has them.
                    $crate::engine::kernels::simd::Level::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::engine::kernels::simd::Level::Base => {}
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

/// Logistic sigmoid 1 / (1 + e^-x).
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        LEVEL.store(Level::Base as u8, Ordering::Relaxed);
        let base = sum_squares(&xs);
        LEVEL.store(0, Ordering::Relaxed);
        assert_eq!(best.to_bits(), base.to_bits());
    }
}
