//! One sparse MoE block at Qwen3-VL-30B-A3B's widths (hidden 2048, 128 experts of 768, top 8)
//! with random bf16 weights, per expert schedule, for decode-sized and prefill-sized steps.
//!
//! `cargo run --release --example moe_bench [-- ROWS…]` (default 1 16 128; `MOE_BENCH_EXPERTS`,
//! `MOE_BENCH_REPEATS`, `MOE_BENCH_W8A8=1` for int8 experts). Medians of repeated calls; each
//! call routes fresh inputs, and the experts' 1.2 GB of weights come from DRAM as in a model.

use std::time::Instant;

use half::bf16;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::moe::{ExpertSchedule, MoeBlock};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic pseudo-random values in [-scale, scale).
fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn linear(pool: &ThreadPool, n: usize, k: usize, seed: u64, w8a8: bool) -> Linear {
    let w: Vec<bf16> = values(n * k, seed, 0.05)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let store = WeightStore::Bf16(w);
    if w8a8 {
        return Linear::quantized(pool, &store, n, k, None, Precision::Bf16).expect("int8");
    }
    let backend = qwen3vl::engine::kernels::gemm::auto_backend();
    Linear::new(store, n, k, None, Precision::Bf16, backend.as_deref()).expect("linear")
}

fn main() {
    let rows: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = if rows.is_empty() {
        vec![1, 16, 128]
    } else {
        rows
    };
    let (hidden, inter, top_k) = (2048, 768, 8);
    let n_experts = env("MOE_BENCH_EXPERTS", 128);
    let repeats = env("MOE_BENCH_REPEATS", 15).max(1);
    let w8a8 = std::env::var_os("MOE_BENCH_W8A8").is_some();
    let pool = ThreadPool::global();
    let router = linear(pool, n_experts, hidden, 1, false);
    let experts = (0..n_experts as u64)
        .map(|e| {
            (
                linear(pool, 2 * inter, hidden, 10 + 2 * e, w8a8),
                linear(pool, hidden, inter, 11 + 2 * e, w8a8),
            )
        })
        .collect();
    let block = MoeBlock::new(router, experts, top_k, inter, hidden, true).expect("block");
    println!(
        "MoE block {n_experts} experts × {inter}, hidden {hidden}, top {top_k}, {} threads, {}",
        pool.threads(),
        if w8a8 { "W8A8" } else { "bf16" }
    );
    let mut y = Vec::new();
    for &s in &rows {
        for schedule in [ExpertSchedule::WithinExpert, ExpertSchedule::ByExpert] {
            let times: Vec<f64> = (0..repeats + 1)
                .map(|i| {
                    let x = values(s * hidden, 1000 + i as u64, 1.0);
                    let t = Instant::now();
                    block
                        .forward_scheduled(pool, &x, s, Precision::Bf16, schedule, &mut y)
                        .expect("forward");
                    t.elapsed().as_secs_f64()
                })
                .skip(1)
                .collect();
            let mut sorted = times.clone();
            sorted.sort_by(f64::total_cmp);
            let med = sorted[sorted.len() / 2];
            println!(
                "rows {s:>4}  {schedule:?}: {:8.3} ms  ({:7.1} rows/s)",
                med * 1e3,
                s as f64 / med
            );
        }
    }
}
