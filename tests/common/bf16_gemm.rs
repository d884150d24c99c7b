//! Checks shared by the tests of our bf16-weight GEMMs (the FMA panels, the `vdpbf16ps` panels and
//! the AMX tiles): all promise the same contract, so all run the same checks.

use half::bf16;
use qwen3vl::engine::error::Result;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::gemm::bf16_fma::{self, Bf16Panels};
use qwen3vl::engine::kernels::linear::{FastBackend, Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::plan::KernelPlan;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::kernels::runtime::simd::{level, Level};

use super::{noise, reference};

/// One packed weight under test: `y = bf16(x) · Wᵀ (+ bias)` for `m` rows.
pub type Matmul = Box<dyn Fn(&[f32], usize, Option<&[f32]>, &mut [f32]) -> Result<()>>;

/// Packs a [n, k] weight (bf16 values) into a [`Matmul`].
pub type Pack = dyn Fn(&[f32], usize, usize) -> Matmul;

pub fn bf16_values(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

/// `w` as a bf16 weight handed over in row blocks.
pub fn bf16_rows(w: &[f32], k: usize) -> impl Fn(usize, usize) -> Result<WeightStore> + '_ {
    move |r0, r1| {
        Ok(WeightStore::Bf16(
            w[r0 * k..r1 * k]
                .iter()
                .map(|&v| bf16::from_f32(v))
                .collect(),
        ))
    }
}

/// On an AVX-512 CPU, the FMA panels' AVX2 tiles give the AVX-512 tiles' bits for every shape;
/// `values` rounds inputs and weights to the panel format, `panels` packs a [n, k] weight.
pub fn avx2_tiles_give_the_avx512_bits(
    values: fn(&[f32]) -> Vec<f32>,
    panels: fn(&[f32], usize, usize) -> Bf16Panels,
    shapes: &[(usize, usize, usize)],
) {
    if level() != Level::Avx512 || !bf16_fma::available() {
        eprintln!("no AVX-512 here: only the AVX2 tiles run (checked by the other tests)");
        return;
    }
    let pool = ThreadPool::global();
    for &(m, k, n) in shapes {
        let x = values(&noise(m * k, 21 + m as u32));
        let w = values(&noise(n * k, 5 + n as u32));
        let b = noise(n, 8);
        let p = panels(&w, n, k);
        let mut wide = vec![0f32; m * n];
        p.matmul(pool, &x, m, Some(&b), &mut wide).unwrap();
        // An explicit plan at the AVX2 level, for this call only (its pool tasks included).
        let mut narrow = vec![f32::NAN; m * n];
        let r = KernelPlan::at_level(Level::Avx2).run(|| {
            assert_eq!(bf16_fma::tiles_name(), "AVX2");
            p.matmul(pool, &x, m, Some(&b), &mut narrow)
        });
        r.unwrap();
        assert_eq!(wide, narrow, "{m}x{k}x{n}: AVX2 tiles differ from AVX-512");
    }
}

/// Every (m, k, n), with and without bias, within a few f32 ulps of the sum of magnitudes of
/// an f64 reference.
pub fn matches_the_f64_reference(pack: &Pack, shapes: &[(usize, usize, usize)]) {
    matches_the_f64_reference_in(bf16_values, pack, shapes)
}

/// [`matches_the_f64_reference`] with inputs and weights on another grid (`values`, e.g. f16).
pub fn matches_the_f64_reference_in(
    values: fn(&[f32]) -> Vec<f32>,
    pack: &Pack,
    shapes: &[(usize, usize, usize)],
) {
    for &(m, k, n) in shapes {
        let x = values(&noise(m * k, 1 + m as u32));
        let w = values(&noise(n * k, 7 + n as u32));
        let b = noise(n, 3);
        let p = pack(&w, n, k);
        for bias in [None, Some(&b[..])] {
            let (want, mag) = reference(&x, &w, bias, m, n, k);
            let mut y = vec![f32::NAN; m * n];
            p(&x, m, bias, &mut y).expect("matmul");
            for i in 0..m * n {
                let tol = 4.0 * f32::EPSILON as f64 * (k as f64).sqrt() * mag[i] + 1e-30;
                assert!(
                    (y[i] as f64 - want[i]).abs() <= tol,
                    "{m}x{k}x{n} bias {} [{i}]: {} vs {} (tol {tol:e})",
                    bias.is_some(),
                    y[i],
                    want[i]
                );
            }
        }
    }
}

/// Every batch size 1..=big over a sliding window of rows gives each row the same bits, with
/// and without bias.
pub fn a_rows_result_does_not_depend_on_the_batch(pack: &Pack, k: usize, n: usize, big: usize) {
    let w = bf16_values(&noise(n * k, 11));
    let p = pack(&w, n, k);
    let x = bf16_values(&noise(big * k, 5));
    let b = noise(n, 6);
    for bias in [None, Some(&b[..])] {
        a_rows_bits_in_every_batch(&p, &x, bias, k, n, big);
    }
}

fn a_rows_bits_in_every_batch(
    p: &Matmul,
    x: &[f32],
    bias: Option<&[f32]>,
    k: usize,
    n: usize,
    big: usize,
) {
    let mut all = vec![0f32; big * n];
    p(x, big, bias, &mut all).unwrap();
    for m in 1..=big {
        for start in [0, big - m] {
            let mut y = vec![0f32; m * n];
            p(&x[start * k..(start + m) * k], m, bias, &mut y).unwrap();
            for r in 0..m {
                assert_eq!(
                    &y[r * n..(r + 1) * n],
                    &all[(start + r) * n..(start + r + 1) * n],
                    "row {} computed in a batch of {m} (bias {})",
                    start + r,
                    bias.is_some()
                );
            }
        }
    }
}

/// Through `Linear` on backend `be` (whose name contains `tag`), `new` and `from_rows` pack the
/// same weight and stay within one bf16 step of the portable path; f32 weights fall back.
pub fn linear_through_the_backend_equals_portable(be: &dyn FastBackend, tag: &str) {
    let pool = ThreadPool::global();
    for &(m, k, n) in &[(1usize, 2048usize, 300usize), (17, 257, 65), (50, 96, 1000)] {
        // In bf16 mode activations hold bf16 values (the kernels round their input; portable
        // does not).
        let x = bf16_values(&noise(m * k, 9));
        let w = bf16_values(&noise(n * k, 4));
        let b = noise(n, 2);
        let store = || WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect());
        let fast = Linear::new(store(), n, k, Some(b.clone()), Precision::Bf16, Some(be)).unwrap();
        assert!(fast.backend_name().contains(tag), "{}", fast.backend_name());
        let rows = bf16_rows(&w, k);
        let from_rows =
            Linear::from_rows(&rows, n, k, Some(b.clone()), Precision::Bf16, Some(be)).unwrap();
        let portable = Linear::new(store(), n, k, Some(b.clone()), Precision::Bf16, None).unwrap();
        let yf = fast.apply(pool, &x, m).unwrap();
        let yr = from_rows.apply(pool, &x, m).unwrap();
        let yp = portable.apply(pool, &x, m).unwrap();
        assert_eq!(yf, yr, "from_rows packs the same weight");
        for i in 0..m * n {
            // Both outputs are rounded to bf16: at most one bf16 step apart.
            let tol = 8e-3 * yp[i].abs().max(yf[i].abs()) + 1e-6;
            assert!(
                (yf[i] - yp[i]).abs() <= tol,
                "{m}x{k}x{n} [{i}]: {tag} {} vs portable {}",
                yf[i],
                yp[i]
            );
        }
        let f = Linear::new(
            WeightStore::F32(w.clone()),
            n,
            k,
            None,
            Precision::F32,
            Some(be),
        );
        let f = f.unwrap();
        assert!(!f.backend_name().contains(tag), "{}", f.backend_name());
    }
}

/// Inputs, outputs and biases that do not fit are errors, not panics.
pub fn bad_shapes_are_errors(pack: &Pack) {
    let p = pack(&noise(64 * 32, 1), 64, 32);
    let x = vec![0f32; 2 * 32];
    let mut y = vec![0f32; 2 * 64];
    assert!(p(&x, 3, None, &mut y).is_err());
    assert!(p(&x, 0, None, &mut y).is_err());
    assert!(p(&x, 2, Some(&[0.0; 10]), &mut y).is_err());
}
