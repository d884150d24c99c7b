//! The AMX-BF16 tile GEMM (`kernels::gemm_amx`) against an f64 reference and the portable path on
//! odd shapes (M = 1, 3, 17, 40, …: partial and odd row tiles; K and N off the 32 × 16 tile),
//! with and without bias, plus its batch invariance: a row's result is bit-identical whatever
//! the number of rows computed with it. On a CPU (or OS) without AMX tiles the tests say so and
//! only check that the backend refuses to exist.

mod common;

use common::bf16_gemm::{self, bf16_rows, Matmul};
use qwen3vl::engine::kernels::gemm_amx::{self, AmxPanels};
use qwen3vl::engine::kernels::linear::WeightStore;
use qwen3vl::engine::kernels::pool::ThreadPool;

fn pack(w: &[f32], n: usize, k: usize) -> Matmul {
    let p = AmxPanels::from_rows(ThreadPool::global(), n, k, &bf16_rows(w, k)).expect("pack");
    Box::new(move |x, m, bias, y| p.matmul(ThreadPool::global(), x, m, bias, y))
}

fn here() -> bool {
    let ok = gemm_amx::available();
    if !ok {
        eprintln!("no usable AMX-BF16 here: the AMX kernel is not used on this CPU");
        assert!(qwen3vl::engine::kernels::amx_backend(0).is_none());
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
                (33, 300, 33),
                (16, 32, 16),
                (64, 1024, 200),
                (7, 1, 31),
                // A packed input over 1 MB: the loop with row pairs outside.
                (545, 1024, 40),
            ],
        );
    }
}

#[test]
fn a_rows_result_does_not_depend_on_the_batch() {
    if here() {
        bf16_gemm::a_rows_result_does_not_depend_on_the_batch(&pack, 700, 150, 37);
    }
}

#[test]
fn linear_through_the_amx_backend_equals_portable() {
    if let Some(be) = qwen3vl::engine::kernels::amx_backend(0) {
        bf16_gemm::linear_through_the_backend_equals_portable(&*be, "AMX");
    } else {
        assert!(!gemm_amx::available());
    }
}

#[test]
fn bad_shapes_are_errors() {
    if here() {
        bf16_gemm::bad_shapes_are_errors(&pack);
        let rows = |_: usize, _: usize| Ok(WeightStore::Bf16(vec![half::bf16::ZERO; 5]));
        assert!(AmxPanels::from_rows(ThreadPool::global(), 64, 32, &rows).is_err());
    }
}
