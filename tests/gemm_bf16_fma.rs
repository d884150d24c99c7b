//! The FMA kernel over bf16 panels (`kernels::gemm::bf16_fma`, AVX-512 or AVX2 tiles, whichever the
//! CPU has) against an f64 reference and the portable path, on odd shapes (M = 1, 3, 17, …; K and
//! N off the 32-channel chunk and the 256-deep reduction block), plus its batch invariance: a row's
//! result is bit-identical whatever the number of rows computed with it. On an AVX-512 CPU the
//! AVX2 tiles are also run and must give the same bits. On a CPU with neither the tests say so
//! and only check that the backend refuses to run.

mod common;

use common::bf16_gemm::{self, bf16_rows, bf16_values, Matmul};
use qwen3vl::engine::kernels::gemm::bf16_fma::{self, Bf16Panels};
use qwen3vl::engine::kernels::linear::WeightStore;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn panels(w: &[f32], n: usize, k: usize) -> Bf16Panels {
    Bf16Panels::from_rows(ThreadPool::global(), n, k, &bf16_rows(w, k)).expect("pack")
}

fn pack(w: &[f32], n: usize, k: usize) -> Matmul {
    let p = panels(w, n, k);
    Box::new(move |x, m, bias, y| p.matmul(ThreadPool::global(), x, m, bias, y))
}

fn here() -> bool {
    let ok = bf16_fma::available();
    if !ok {
        eprintln!("no AVX-512F or AVX2 + FMA here: the bf16 FMA kernel is not used on this CPU");
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
                (3, 64, 130),
                (17, 257, 65),
                (1, 2048, 300),
                (40, 33, 1),
                (2, 513, 96),
                (5, 300, 33),
                (12, 256, 64),
                (13, 600, 200),
                (7, 1, 31),
            ],
        );
    }
}

#[test]
fn a_rows_result_does_not_depend_on_the_batch() {
    if here() {
        bf16_gemm::a_rows_result_does_not_depend_on_the_batch(&pack, 700, 150, 29);
    }
}

#[test]
fn linear_through_the_fma_backend_equals_portable() {
    if let Some(be) = qwen3vl::engine::kernels::gemm::fma_backend(0) {
        bf16_gemm::linear_through_the_backend_equals_portable(&*be, "FMA");
    } else {
        assert!(!bf16_fma::available());
    }
}

#[test]
fn bad_shapes_are_errors() {
    if here() {
        bf16_gemm::bad_shapes_are_errors(&pack);
        let rows = |_: usize, _: usize| Ok(WeightStore::Bf16(vec![half::bf16::ZERO; 5]));
        assert!(Bf16Panels::from_rows(ThreadPool::global(), 64, 32, &rows).is_err());
    }
}

#[test]
fn avx2_tiles_give_the_avx512_bits() {
    bf16_gemm::avx2_tiles_give_the_avx512_bits(
        bf16_values,
        panels,
        &[
            (1, 600, 37),
            (2, 300, 70),
            (3, 257, 65),
            (6, 100, 96),
            (7, 513, 33),
            (17, 256, 130),
        ],
    );
}
