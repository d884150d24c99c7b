//! The FMA panels in f16 format (`--dtype f16`: weights widened by `vcvtph2ps`, AVX-512 or AVX2 +
//! F16C tiles) against an f64 reference and the portable path on odd shapes, their batch
//! invariance, AVX2 tiles against AVX-512 bit for bit, and the routing of f16 weights through
//! `Linear`. On a CPU without the kernel the tests say so and check that nothing routes to it.

mod common;

use common::bf16_gemm::{self, Matmul};
use common::noise;
use half::f16;
use qwen3vl::engine::error::Result;
use qwen3vl::engine::kernels::gemm::bf16_fma::{self, Bf16Panels, PanelFormat};
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::Precision;

fn f16_values(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

fn f16_rows(w: &[f32], k: usize) -> impl Fn(usize, usize) -> Result<WeightStore> + '_ {
    move |r0, r1| {
        Ok(WeightStore::F16(
            w[r0 * k..r1 * k]
                .iter()
                .map(|&v| f16::from_f32(v))
                .collect(),
        ))
    }
}

fn panels(w: &[f32], n: usize, k: usize) -> Bf16Panels {
    Bf16Panels::from_rows_as(
        ThreadPool::global(),
        n,
        k,
        &f16_rows(w, k),
        PanelFormat::F16,
    )
    .expect("pack")
}

fn pack(w: &[f32], n: usize, k: usize) -> Matmul {
    let p = panels(w, n, k);
    Box::new(move |x, m, bias, y| p.matmul(ThreadPool::global(), x, m, bias, y))
}

fn here() -> bool {
    let ok = bf16_fma::available();
    if !ok {
        eprintln!("no AVX-512F or AVX2 + FMA + F16C here: the f16 panels are not used on this CPU");
    }
    ok
}

/// f16 inputs and weights: every product is exact in f32, so the result is within a few f32
/// ulps (of the sum of magnitudes) of the f64 sum.
#[test]
fn matches_the_f64_reference_on_odd_shapes() {
    if !here() {
        return;
    }
    bf16_gemm::matches_the_f64_reference_in(
        f16_values,
        &pack,
        &[
            (1, 100, 37),
            (3, 64, 130),
            (17, 257, 65),
            (1, 2048, 300),
            (40, 33, 1),
            (2, 513, 96),
            (5, 300, 33),
            (13, 600, 200),
            (7, 1, 31),
        ],
    );
}

/// The kernel rounds its input to f16 (as PyTorch's f16 matmul sees an f16 tensor): an input off
/// the f16 grid gives the result of its f16 rounding.
#[test]
fn the_input_is_rounded_to_f16() {
    if !here() {
        return;
    }
    let (m, k, n) = (3, 70, 40);
    let x = noise(m * k, 12);
    let w = f16_values(&noise(n * k, 13));
    let p = pack(&w, n, k);
    let (mut raw, mut rounded) = (vec![0f32; m * n], vec![0f32; m * n]);
    p(&x, m, None, &mut raw).unwrap();
    p(&f16_values(&x), m, None, &mut rounded).unwrap();
    assert_eq!(raw, rounded);
}

#[test]
fn a_rows_result_does_not_depend_on_the_batch() {
    if here() {
        bf16_gemm::a_rows_result_does_not_depend_on_the_batch(&pack, 700, 150, 29);
    }
}

#[test]
fn bad_shapes_are_errors() {
    if here() {
        bf16_gemm::bad_shapes_are_errors(&pack);
        let rows = |_: usize, _: usize| Ok(WeightStore::F16(vec![f16::ZERO; 5]));
        let r = Bf16Panels::from_rows_as(ThreadPool::global(), 64, 32, &rows, PanelFormat::F16);
        assert!(r.is_err());
    }
}

#[test]
fn avx2_tiles_give_the_avx512_bits() {
    bf16_gemm::avx2_tiles_give_the_avx512_bits(
        f16_values,
        panels,
        &[
            (1, 600, 37),
            (2, 300, 70),
            (3, 257, 65),
            (6, 100, 96),
            (7, 513, 33),
            (17, 256, 130),
            (4, 40, 20),
        ],
    );
}

/// f16 weights through `Linear` on the automatic and the FMA backends land on the f16 panels
/// (where the kernel runs), `new` and `from_rows` agree, and both stay within one f16 step of
/// the portable path; f32 weights never go to the panels.
#[test]
fn f16_linears_route_to_the_panels_and_equal_portable() {
    let pool = ThreadPool::global();
    let backends = [
        ("auto", qwen3vl::engine::kernels::gemm::auto_backend()),
        ("fma", qwen3vl::engine::kernels::gemm::fma_backend(0)),
    ];
    for (label, be) in backends {
        let Some(be) = be else {
            assert!(
                !bf16_fma::available(),
                "{label}: no backend but the kernel runs"
            );
            continue;
        };
        for &(m, k, n) in &[
            (1usize, 2048usize, 300usize),
            (17, 257, 1100),
            (50, 96, 3000),
        ] {
            let x = f16_values(&noise(m * k, 9));
            let w = f16_values(&noise(n * k, 4));
            let b = noise(n, 2);
            let store = || WeightStore::F16(w.iter().map(|&v| f16::from_f32(v)).collect());
            let p = Precision::F16;
            let fast = Linear::new(store(), n, k, Some(b.clone()), p, Some(&*be)).unwrap();
            let rows = f16_rows(&w, k);
            let from_rows = Linear::from_rows(&rows, n, k, Some(b.clone()), p, Some(&*be)).unwrap();
            let portable = Linear::new(store(), n, k, Some(b.clone()), p, None).unwrap();
            // The automatic backend keeps small weights portable.
            let big = label == "fma" || n * k >= qwen3vl::engine::kernels::gemm::AUTO_MIN_ELEMENTS;
            assert_eq!(
                fast.backend_name().contains("f16 panels"),
                big && bf16_fma::available(),
                "{label}: {}",
                fast.backend_name()
            );
            let yf = fast.apply(pool, &x, m).unwrap();
            let yr = from_rows.apply(pool, &x, m).unwrap();
            let yp = portable.apply(pool, &x, m).unwrap();
            assert_eq!(yf, yr, "from_rows packs the same weight");
            for i in 0..m * n {
                // Both outputs are rounded to f16: at most one f16 step apart.
                let tol = 1e-3 * yp[i].abs().max(yf[i].abs()) + 1e-7;
                assert!(
                    (yf[i] - yp[i]).abs() <= tol,
                    "{label} {m}x{k}x{n} [{i}]: {} vs portable {}",
                    yf[i],
                    yp[i]
                );
                assert_eq!(
                    yf[i],
                    f16::from_f32(yf[i]).to_f32(),
                    "output rounded to f16"
                );
            }
            let f = Linear::new(
                WeightStore::F32(w.clone()),
                n,
                k,
                None,
                Precision::F32,
                Some(&*be),
            );
            assert!(!f.unwrap().backend_name().contains("f16 panels"));
        }
    }
}
