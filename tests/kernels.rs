//! Every fast path equals the portable path: oneDNN vs the portable GEMM for odd shapes, and the
//! AVX-512 / AVX2 builds of the elementwise kernels vs the baseline build (bit-identical).

mod common;

use common::noise;
use half::bf16;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::ops::{
    activate, add_inplace, layer_norm, rms_norm, silu_mul, Activation,
};
use qwen3vl::engine::kernels::runtime::plan::{active, KernelPlan};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::kernels::runtime::simd::{level, Level};

fn naive(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = b.map_or(0.0, |b| b[j] as f64);
            for kk in 0..k {
                acc += x[i * k + kk] as f64 * w[j * k + kk] as f64;
            }
            y[i * n + j] = acc;
        }
    }
    y
}

#[test]
fn linear_backends_agree_on_odd_shapes() {
    let pool = ThreadPool::global();
    let onednn = qwen3vl::engine::kernels::gemm::onednn_backend(0);
    if onednn.is_none() {
        eprintln!("oneDNN unavailable: checking the portable path against the naive product only");
    }
    for &(m, k, n) in &[
        (1usize, 100usize, 37usize),
        (3, 64, 130),
        (17, 257, 65),
        (1, 2048, 300),
        (40, 33, 1),
    ] {
        for precision in [Precision::F32, Precision::Bf16, Precision::F16] {
            let mut x = noise(m * k, 1 + m as u32);
            let mut w = noise(n * k, 7 + n as u32);
            let b = noise(n, 3);
            precision.round_slice(&mut x);
            precision.round_slice(&mut w);
            let store = || match precision {
                Precision::F32 => WeightStore::F32(w.clone()),
                Precision::Bf16 => {
                    WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect())
                }
                Precision::F16 => {
                    WeightStore::F16(w.iter().map(|&v| half::f16::from_f32(v)).collect())
                }
            };
            let mut bias = b.clone();
            precision.round_slice(&mut bias);
            let want = naive(&x, &w, Some(&bias), m, n, k);
            let portable = Linear::new(store(), n, k, Some(b.clone()), precision, None).unwrap();
            let yp = portable.apply(pool, &x, m).unwrap();
            let tol = |i: usize| match precision {
                Precision::F32 => 1e-4 * (1.0 + want[i].abs()),
                // One bf16 rounding of the output.
                Precision::Bf16 => 8e-3 * want[i].abs() + 1e-6,
                // One f16 rounding of the output.
                Precision::F16 => 1e-3 * want[i].abs() + 1e-6,
            };
            for i in 0..m * n {
                assert!(
                    (yp[i] as f64 - want[i]).abs() <= tol(i),
                    "portable {m}x{k}x{n} {precision:?} [{i}]: {} vs {}",
                    yp[i],
                    want[i]
                );
            }
            if let Some(be) = onednn.as_deref() {
                let fast =
                    Linear::new(store(), n, k, Some(b.clone()), precision, Some(be)).unwrap();
                // Without a bf16 matmul in oneDNN (AVX2-only CPUs) bf16 weights stay portable.
                // f16 weights never go to oneDNN (no fast f16 matmul without AVX512-FP16).
                let takes = precision == Precision::F32
                    || (precision == Precision::Bf16
                        && qwen3vl::engine::kernels::gemm::onednn_runs_bf16());
                assert_eq!(
                    fast.backend_name().starts_with("oneDNN"),
                    takes,
                    "{}",
                    fast.backend_name()
                );
                let yf = fast.apply(pool, &x, m).unwrap();
                for i in 0..m * n {
                    let close = (yf[i] - yp[i]).abs() as f64 <= tol(i);
                    assert!(
                        close,
                        "oneDNN vs portable {m}x{k}x{n} {precision:?} [{i}]: {} vs {}",
                        yf[i], yp[i]
                    );
                }
            }
        }
    }
}

#[test]
fn vector_and_baseline_kernels_are_bit_identical() {
    let pool = ThreadPool::global();
    let run = |at: Option<Level>| {
        let plan = at.map_or_else(active, KernelPlan::at_level);
        plan.run(|| ops_at_the_plans_level(pool, at))
    };
    let base = run(Some(Level::Base));
    let avx2 = run(Some(Level::Avx2));
    let best = run(None);
    assert_eq!(base, avx2);
    assert_eq!(base, best);
}

/// The element-wise kernels' output bits at the level of the plan in force (`at`: the level the
/// caller asked for, lowered to what the CPU has; `None`: the automatic plan's).
fn ops_at_the_plans_level(pool: &ThreadPool, at: Option<Level>) -> Vec<u32> {
    if let Some(at) = at {
        assert!(level() <= at, "the plan in force runs at {:?}", level());
    }
    let mut out = Vec::new();
    for p in [Precision::F32, Precision::Bf16] {
        for act in [Activation::GeluTanh, Activation::GeluErf, Activation::Silu] {
            let mut x: Vec<f32> = noise(3001, 5).iter().map(|v| v * 8.0).collect();
            activate(pool, &mut x, act, p);
            out.extend(x);
        }
        let mut g = noise(999, 9);
        silu_mul(&mut g, &noise(999, 10), p);
        out.extend(&g);
        let mut a = noise(999, 11);
        add_inplace(&mut a, &noise(999, 12), p);
        out.extend(&a);
        let mut r = noise(64 * 37, 13);
        rms_norm(pool, &mut r, 37, &noise(37, 14), 1e-6, p);
        out.extend(&r);
        let mut l = noise(64 * 37, 15);
        layer_norm(pool, &mut l, 37, &noise(37, 16), &noise(37, 17), 1e-6, p);
        out.extend(&l);
    }
    out.into_iter().map(f32::to_bits).collect::<Vec<u32>>()
}
