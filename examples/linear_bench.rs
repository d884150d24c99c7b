//! Throughput of one `Linear` through the engine's own paths: bf16 (portable, oneDNN when present,
//! the FMA kernel over bf16 panels with AVX-512 or AVX2 tiles, and AMX tiles where they run) and
//! W8A8 int8, for the
//! Qwen3-VL-2B MLP shape (6144×2048) and the LM head.
//! Decode rows report weight bytes streamed per second, larger M reports GOPS.
//!
//! `cargo run --release --example linear_bench [-- M…]` (default M = 1 4 16 128;
//! `LINEAR_BENCH_PORTABLE=1` adds the portable bf16 path, `LINEAR_BENCH_SHAPES=NxK,…` other
//! weight shapes, `LINEAR_BENCH_COPIES=c` cycles each call through c copies of the weight so
//! that it comes from DRAM as in a model, not from a cache warmed by the previous call). Medians
//! of repeated calls; run on an idle machine (timings of a shared box are noisy).

use std::time::Instant;

use half::bf16;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let ms: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ms = if ms.is_empty() {
        vec![1, 4, 16, 128]
    } else {
        ms
    };
    let pool = ThreadPool::global();
    let copies: usize = std::env::var("LINEAR_BENCH_COPIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let onednn = qwen3vl::engine::kernels::gemm::onednn_backend(0);
    let fma = qwen3vl::engine::kernels::gemm::fma_backend(0);
    let dot = qwen3vl::engine::kernels::gemm::dot_backend(0);
    let amx = qwen3vl::engine::kernels::gemm::amx_backend(0);
    // LINEAR_BENCH_SHAPES=3072x1024,4096x1024 (N×K) replaces the default shapes.
    let shapes: Vec<(usize, usize)> = match std::env::var("LINEAR_BENCH_SHAPES") {
        Ok(v) => v
            .split(',')
            .filter_map(|s| {
                let (n, k) = s.split_once('x')?;
                Some((n.trim().parse().ok()?, k.trim().parse().ok()?))
            })
            .collect(),
        Err(_) => vec![(6144, 2048), (151_936, 2048)],
    };
    for (n, k) in shapes {
        let w: Vec<bf16> = (0..n * k)
            .map(|i| bf16::from_f32(((i * 7919 % 1000) as f32 - 500.0) * 1e-4))
            .collect();
        let store = WeightStore::Bf16(w);
        let mut linears: Vec<(&str, Vec<Linear>, f64)> = Vec::new();
        let bf16_copies =
            |be: Option<&dyn qwen3vl::engine::kernels::linear::FastBackend>| -> Vec<Linear> {
                (0..copies)
                    .map(|_| {
                        Linear::new(store.clone(), n, k, None, Precision::Bf16, be)
                            .expect("bf16 linear")
                    })
                    .collect()
            };
        if std::env::var_os("LINEAR_BENCH_PORTABLE").is_some() {
            linears.push(("bf16", bf16_copies(None), 2.0));
        }
        for be in [&onednn, &fma, &dot, &amx].into_iter().flatten() {
            linears.push(("bf16", bf16_copies(Some(&**be)), 2.0));
        }
        let int8: Vec<Linear> = (0..copies)
            .map(|_| Linear::quantized(pool, &store, n, k, None, Precision::Bf16).expect("int8"))
            .collect();
        linears.push(("int8", int8, 1.0));
        drop(store);
        for &m in &ms {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
                .collect();
            let mut y = vec![0f32; m * n];
            for (label, lins, bytes) in &linears {
                let reps = (2e9 / (m as f64 * n as f64 * k as f64)).clamp(3.0, 50.0) as usize;
                let reps = reps.max(2 * copies);
                for lin in lins {
                    lin.forward(pool, &x, m, &mut y).expect("warm-up");
                }
                let lin = &lins[0];
                let times: Vec<f64> = (0..reps)
                    .map(|i| {
                        let t = Instant::now();
                        lins[i % copies]
                            .forward(pool, &x, m, &mut y)
                            .expect("forward");
                        t.elapsed().as_secs_f64()
                    })
                    .collect();
                let s = median(times);
                println!(
                    "{n:>6}×{k} M={m:<4} {label} ({}): {:8.3} ms  {:6.1} GB/s weights  {:7.1} GOPS",
                    lin.backend_name(),
                    s * 1e3,
                    n as f64 * k as f64 * *bytes / s / 1e9,
                    2.0 * m as f64 * n as f64 * k as f64 / s / 1e9
                );
            }
        }
    }
}
