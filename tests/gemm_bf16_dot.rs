//! The AVX512-BF16 `vdpbf16ps` GEMM (`kernels::gemm::bf16_dot`) against an f64 reference and the
//! portable path on odd shapes (M = 1, 3, 17, …: partial row tiles and every small-M plan; K odd,
//! so the last reduction pair is half zero; N off the 32-channel chunk), with and without bias, plus
//! its batch invariance: a row's result is bit-identical whatever the number of rows computed with
//! it. On a CPU without AVX512_BF16 the tests say so and only check that the backend refuses to
//! exist.

mod common;

use common::bf16_gemm::{self, bf16_rows, Matmul};
use qwen3vl::engine::kernels::gemm::bf16_dot::{self, DotPanels};
use qwen3vl::engine::kernels::linear::WeightStore;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn pack(w: &[f32], n: usize, k: usize) -> Matmul {
    let p = DotPanels::from_rows(ThreadPool::global(), n, k, &bf16_rows(w, k)).expect("pack");
    Box::new(move |x, m, bias, y| p.matmul(ThreadPool::global(), x, m, bias, y))
}

fn here() -> bool {
    let ok = bf16_dot::available();
    if !ok {
        eprintln!("no AVX512_BF16 here: the bf16 dot kernel is not used on this CPU");
        assert!(qwen3vl::engine::kernels::gemm::dot_backend(0).is_none());
    }
    ok
}

#[test]
fn matches_the_f64_reference_on_odd_shapes() {
    if here() {
        bf16_gemm::matches_the_f64_reference(
            &pack,
            &[
                (1, 100, 37),
                (2, 77, 300),
                (3, 64, 130),
                (4, 129, 97),
                (5, 31, 64),
                (17, 257, 65),
                (1, 2048, 300),
                (40, 33, 1),
                (2, 513, 96),
                (33, 300, 33),
                (7, 1, 31),
                (13, 4099, 40),
                (64, 1024, 200),
            ],
        );
    }
}

#[test]
fn a_rows_result_does_not_depend_on_the_batch() {
    if here() {
        bf16_gemm::a_rows_result_does_not_depend_on_the_batch(&pack, 701, 150, 37);
        // K over one reduction block (4096): partial sums go through y between blocks.
        bf16_gemm::a_rows_result_does_not_depend_on_the_batch(&pack, 4500, 40, 9);
    }
}

#[test]
fn linear_through_the_dot_backend_equals_portable() {
    if let Some(be) = qwen3vl::engine::kernels::gemm::dot_backend(0) {
        bf16_gemm::linear_through_the_backend_equals_portable(&*be, "dot");
    } else {
        assert!(!bf16_dot::available());
    }
}

#[test]
fn bad_shapes_are_errors() {
    if here() {
        bf16_gemm::bad_shapes_are_errors(&pack);
        let rows = |_: usize, _: usize| Ok(WeightStore::Bf16(vec![half::bf16::ZERO; 5]));
        assert!(DotPanels::from_rows(ThreadPool::global(), 64, 32, &rows).is_err());
    }
}

/// The fused epilogues give exactly the separate passes' bits: `round(y)` and
/// `round(gelu_tanh(round(y)))` after the bias, on partial tiles, an N off the chunk and a K over
/// one reduction block (the epilogue must wait for the last block); and through `Linear`,
/// `forward_activated` equals `forward` then `activate`, fused (dot) or not (portable).
#[test]
fn fused_epilogues_equal_the_separate_passes() {
    use common::bf16_gemm::bf16_values;
    use common::noise;
    use qwen3vl::engine::kernels::bf16::{round_bf16, Precision};
    use qwen3vl::engine::kernels::linear::{Epilogue, Linear};
    use qwen3vl::engine::kernels::ops::{activate, gelu_tanh, Activation};
    if !here() {
        return;
    }
    let pool = ThreadPool::global();
    for &(m, k, n) in &[(1usize, 300usize, 70usize), (7, 1024, 97), (30, 4500, 33)] {
        let x = bf16_values(&noise(m * k, 5));
        let w = bf16_values(&noise(n * k, 6));
        // A large bias spreads outputs over GELU's whole range (negative tail included).
        let b: Vec<f32> = noise(n, 7).iter().map(|v| v * 40.0).collect();
        let p = DotPanels::from_rows(pool, n, k, &bf16_rows(&w, k)).unwrap();
        let mut plain = vec![0f32; m * n];
        p.matmul(pool, &x, m, Some(&b), &mut plain).unwrap();
        for (ep, f) in [
            (Epilogue::RoundBf16, round_bf16 as fn(f32) -> f32),
            (Epilogue::GeluTanhBf16, |v| {
                round_bf16(gelu_tanh(round_bf16(v)))
            }),
        ] {
            let mut fused = vec![0f32; m * n];
            p.matmul_fused(pool, &x, m, Some(&b), ep, &mut fused)
                .unwrap();
            let want: Vec<u32> = plain.iter().map(|&v| f(v).to_bits()).collect();
            let got: Vec<u32> = fused.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{m}x{k}x{n} {ep:?}");
        }
        let store = || WeightStore::Bf16(w.iter().map(|&v| half::bf16::from_f32(v)).collect());
        let dot = qwen3vl::engine::kernels::gemm::dot_backend(0).unwrap();
        for be in [Some(&*dot), None] {
            let l = Linear::new(store(), n, k, Some(b.clone()), Precision::Bf16, be).unwrap();
            let mut sep = l.apply(pool, &x, m).unwrap();
            activate(pool, &mut sep, Activation::GeluTanh, Precision::Bf16);
            let mut one = vec![0f32; m * n];
            l.forward_activated(pool, &x, m, &mut one, Activation::GeluTanh)
                .unwrap();
            assert_eq!(one, sep, "{m}x{k}x{n} through {}", l.backend_name());
        }
    }
}
