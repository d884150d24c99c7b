//! The AMX-BF16 tile GEMM (`kernels::gemm::amx`) against an f64 reference and the portable path on
//! odd shapes (M = 1, 3, 17, 40, …: partial and odd row tiles; K and N off the 32 × 16 tile),
//! with and without bias, plus its batch invariance: a row's result is bit-identical whatever
//! the number of rows computed with it. On a CPU (or OS) without AMX tiles the tests say so and
//! only check that the backend refuses to exist.

mod common;

use common::bf16_gemm::{self, bf16_rows, Matmul};
use qwen3vl::engine::kernels::gemm::amx::{self, AmxPanels};
use qwen3vl::engine::kernels::linear::WeightStore;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn pack(w: &[f32], n: usize, k: usize) -> Matmul {
    let p = AmxPanels::from_rows(ThreadPool::global(), n, k, &bf16_rows(w, k)).expect("pack");
    Box::new(move |x, m, bias, y| p.matmul(ThreadPool::global(), x, m, bias, y))
}

fn here() -> bool {
    let ok = amx::available();
    if !ok {
        eprintln!("no usable AMX-BF16 here: the AMX kernel is not used on this CPU");
        assert!(qwen3vl::engine::kernels::gemm::amx_backend(0).is_none());
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
    if let Some(be) = qwen3vl::engine::kernels::gemm::amx_backend(0) {
        bf16_gemm::linear_through_the_backend_equals_portable(&*be, "AMX");
    } else {
        assert!(!amx::available());
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

/// Weights sharing one input (q/k/v, gate/up) in one grouped call give each output exactly the
/// bits of its own call, directly and through `Linear::forward_shared`; mismatched reductions or
/// operand counts are errors.
#[test]
fn a_grouped_call_equals_separate_calls() {
    use common::bf16_gemm::bf16_values;
    use common::noise;
    use qwen3vl::engine::kernels::bf16::Precision;
    use qwen3vl::engine::kernels::linear::Linear;
    if !here() {
        return;
    }
    let pool = ThreadPool::global();
    let amx = qwen3vl::engine::kernels::gemm::amx_backend(0).unwrap();
    for &(m, k) in &[(1usize, 300usize), (37, 96), (128, 512), (545, 1024)] {
        let x = bf16_values(&noise(m * k, 3));
        let widths = [97usize, 64, 640];
        let ws: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(i, &n)| bf16_values(&noise(n * k, 20 + i as u32)))
            .collect();
        let bias = noise(widths[0], 9);
        let panels: Vec<AmxPanels> = ws
            .iter()
            .zip(widths)
            .map(|(w, n)| AmxPanels::from_rows(pool, n, k, &bf16_rows(w, k)).unwrap())
            .collect();
        let biases = [Some(&bias[..]), None, None];
        let mut want: Vec<Vec<f32>> = widths.iter().map(|&n| vec![0f32; m * n]).collect();
        for ((p, b), y) in panels.iter().zip(biases).zip(want.iter_mut()) {
            p.matmul(pool, &x, m, b, y).unwrap();
        }
        let mut got: Vec<Vec<f32>> = widths.iter().map(|&n| vec![0f32; m * n]).collect();
        let refs: Vec<&AmxPanels> = panels.iter().collect();
        let mut outs: Vec<&mut [f32]> = got.iter_mut().map(|y| &mut y[..]).collect();
        AmxPanels::matmul_group(pool, &refs, &x, m, &biases, &mut outs).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w): (Vec<u32>, Vec<u32>) = (
                g.iter().map(|v| v.to_bits()).collect(),
                w.iter().map(|v| v.to_bits()).collect(),
            );
            assert_eq!(g, w, "{m}x{k} weight {i}");
        }

        let store =
            |w: &[f32]| WeightStore::Bf16(w.iter().map(|&v| half::bf16::from_f32(v)).collect());
        let linears: Vec<Linear> = ws
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (w, n))| {
                let b = (i == 0).then(|| bias.clone());
                Linear::new(store(w), n, k, b, Precision::Bf16, Some(&*amx)).unwrap()
            })
            .collect();
        let sep: Vec<Vec<f32>> = linears
            .iter()
            .map(|l| l.apply(pool, &x, m).unwrap())
            .collect();
        let mut shared: Vec<Vec<f32>> = widths.iter().map(|&n| vec![0f32; m * n]).collect();
        let lrefs: Vec<&Linear> = linears.iter().collect();
        let mut outs: Vec<&mut [f32]> = shared.iter_mut().map(|y| &mut y[..]).collect();
        Linear::forward_shared(pool, &lrefs, &x, m, &mut outs).unwrap();
        assert_eq!(shared, sep, "{m}x{k} through Linear::forward_shared");
    }
    let k = 64;
    let a = AmxPanels::from_rows(pool, 32, k, &bf16_rows(&noise(32 * k, 1), k)).unwrap();
    let b = AmxPanels::from_rows(
        pool,
        32,
        k + 32,
        &bf16_rows(&noise(32 * (k + 32), 2), k + 32),
    )
    .unwrap();
    let x = noise(2 * (k + 32), 4);
    let (mut y0, mut y1) = (vec![0f32; 64], vec![0f32; 64]);
    let mut outs: Vec<&mut [f32]> = vec![&mut y0[..], &mut y1[..]];
    assert!(AmxPanels::matmul_group(pool, &[&a, &b], &x, 2, &[None, None], &mut outs).is_err());
    let mut outs: Vec<&mut [f32]> = vec![&mut y0[..]];
    assert!(AmxPanels::matmul_group(pool, &[&a, &a], &x, 2, &[None, None], &mut outs).is_err());
}
