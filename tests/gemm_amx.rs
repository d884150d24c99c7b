//! The AMX-BF16 tile GEMM (`kernels::gemm_amx`) against an f64 reference and the portable path on
//! odd shapes (M = 1, 3, 17, 40, …: partial and odd row tiles; K and N off the 32 × 16 tile),
//! with and without bias, plus its batch invariance: a row's result is bit-identical whatever
//! the number of rows computed with it. On a CPU (or OS) without AMX tiles the tests say so and
//! only check that the backend refuses to exist.

mod common;

use common::{noise, reference};
use half::bf16;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::gemm_amx::{self, AmxPanels};
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::pool::ThreadPool;

fn bf16_values(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

fn panels(w: &[f32], n: usize, k: usize) -> AmxPanels {
    let store = WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect());
    let rows = |r0: usize, r1: usize| match &store {
        WeightStore::Bf16(v) => Ok(WeightStore::Bf16(v[r0 * k..r1 * k].to_vec())),
        WeightStore::F32(_) => unreachable!(),
    };
    AmxPanels::from_rows(ThreadPool::global(), n, k, &rows).expect("pack")
}

#[test]
fn matches_the_f64_reference_on_odd_shapes() {
    if !gemm_amx::available() {
        eprintln!("no usable AMX-BF16 here: the AMX kernel is not used on this CPU");
        assert!(qwen3vl::engine::kernels::amx_backend(0).is_none());
        return;
    }
    let pool = ThreadPool::global();
    for &(m, k, n) in &[
        (1usize, 100usize, 37usize),
        (3, 64, 130),
        (17, 257, 65),
        (1, 2048, 300),
        (40, 33, 1),
        (2, 513, 96),
        (33, 300, 33),
        (16, 32, 16),
        (64, 1024, 200),
        (7, 1, 31),
    ] {
        let x = bf16_values(&noise(m * k, 1 + m as u32));
        let w = bf16_values(&noise(n * k, 7 + n as u32));
        let b = noise(n, 3);
        let p = panels(&w, n, k);
        for bias in [None, Some(&b[..])] {
            let (want, mag) = reference(&x, &w, bias, m, n, k);
            let mut y = vec![f32::NAN; m * n];
            p.matmul(pool, &x, m, bias, &mut y).expect("matmul");
            for i in 0..m * n {
                // f32 accumulation: a few ulps of the sum of magnitudes.
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

#[test]
fn a_rows_result_does_not_depend_on_the_batch() {
    if !gemm_amx::available() {
        return;
    }
    let pool = ThreadPool::global();
    let (k, n) = (700, 150);
    let w = bf16_values(&noise(n * k, 11));
    let p = panels(&w, n, k);
    let big = 37;
    let x = bf16_values(&noise(big * k, 5));
    let mut all = vec![0f32; big * n];
    p.matmul(pool, &x, big, None, &mut all).unwrap();
    for m in 1..=big {
        for start in [0, big - m] {
            let mut y = vec![0f32; m * n];
            p.matmul(pool, &x[start * k..(start + m) * k], m, None, &mut y)
                .unwrap();
            for r in 0..m {
                assert_eq!(
                    &y[r * n..(r + 1) * n],
                    &all[(start + r) * n..(start + r + 1) * n],
                    "row {} computed in a batch of {m}",
                    start + r
                );
            }
        }
    }
}

#[test]
fn linear_through_the_amx_backend_equals_portable() {
    let Some(be) = qwen3vl::engine::kernels::amx_backend(0) else {
        assert!(!gemm_amx::available());
        return;
    };
    let pool = ThreadPool::global();
    for &(m, k, n) in &[(1usize, 2048usize, 300usize), (17, 257, 65), (50, 96, 1000)] {
        let x = bf16_values(&noise(m * k, 9));
        let w = bf16_values(&noise(n * k, 4));
        let b = noise(n, 2);
        let store = || WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect());
        let fast =
            Linear::new(store(), n, k, Some(b.clone()), Precision::Bf16, Some(&*be)).unwrap();
        assert!(
            fast.backend_name().contains("AMX"),
            "{}",
            fast.backend_name()
        );
        let rows = |r0: usize, r1: usize| {
            Ok(WeightStore::Bf16(
                w[r0 * k..r1 * k]
                    .iter()
                    .map(|&v| bf16::from_f32(v))
                    .collect(),
            ))
        };
        let from_rows =
            Linear::from_rows(&rows, n, k, Some(b.clone()), Precision::Bf16, Some(&*be)).unwrap();
        let portable = Linear::new(store(), n, k, Some(b.clone()), Precision::Bf16, None).unwrap();
        let yf = fast.apply(pool, &x, m).unwrap();
        let yr = from_rows.apply(pool, &x, m).unwrap();
        let yp = portable.apply(pool, &x, m).unwrap();
        assert_eq!(yf, yr, "from_rows packs the same tiles");
        for i in 0..m * n {
            // Both outputs are rounded to bf16: at most one bf16 step apart.
            let tol = 8e-3 * yp[i].abs().max(yf[i].abs()) + 1e-6;
            assert!(
                (yf[i] - yp[i]).abs() <= tol,
                "{m}x{k}x{n} [{i}]: amx {} vs portable {}",
                yf[i],
                yp[i]
            );
        }
        // f32 weights are not the kernel's: they fall back (oneDNN or portable).
        let f = Linear::new(
            WeightStore::F32(w.clone()),
            n,
            k,
            None,
            Precision::F32,
            Some(&*be),
        )
        .unwrap();
        assert!(!f.backend_name().contains("AMX"), "{}", f.backend_name());
    }
}

#[test]
fn bad_shapes_are_errors() {
    if !gemm_amx::available() {
        return;
    }
    let pool = ThreadPool::global();
    let p = panels(&noise(64 * 32, 1), 64, 32);
    let x = vec![0f32; 2 * 32];
    let mut y = vec![0f32; 2 * 64];
    assert!(p.matmul(pool, &x, 3, None, &mut y).is_err());
    assert!(p.matmul(pool, &x, 0, None, &mut y).is_err());
    assert!(p.matmul(pool, &x, 2, Some(&[0.0; 10]), &mut y).is_err());
    let rows = |_: usize, _: usize| Ok(WeightStore::Bf16(vec![bf16::ZERO; 5]));
    assert!(AmxPanels::from_rows(pool, 64, 32, &rows).is_err());
}
