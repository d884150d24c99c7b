//! Time of the vision tower's attention (one 448×448 image: 784 patches, 16 heads of 64) through
//! each kernel that runs here: f32 GEMMs, AVX512-BF16 tiles, AMX tiles. One call is one layer's
//! attention; the tower runs 24 of them.
//!
//! `cargo run --release --example attention_bench [-- TOKENS]` (default 784;
//! `ATTENTION_BENCH_KERNELS=Bf16Dot,…` picks kernels, `ATTENTION_BENCH_REPEATS` the calls). Medians of
//! repeated calls; run on an idle machine (timings of a shared box are noisy).

use std::time::Instant;

use qwen3vl::engine::kernels::attention::{attention_with, AttnShape, Kernel, Mask, Segment};
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn main() {
    let tokens: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(784);
    let shape = AttnShape {
        n_heads: 16,
        n_kv_heads: 16,
        head_dim: 64,
    };
    let width = shape.n_heads * shape.head_dim;
    let noise = |seed: usize| -> Vec<f32> {
        (0..tokens * width)
            .map(|i| {
                let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 4093;
                Precision::Bf16.round((h as f32 - 2046.0) / 1023.0)
            })
            .collect()
    };
    let (q, k, v) = (noise(1), noise(2), noise(3));
    let segments = [Segment {
        q0: 0,
        len: tokens,
        k0: 0,
        klen: tokens,
        mask: Mask::Full,
    }];
    let repeats: usize = std::env::var("ATTENTION_BENCH_REPEATS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let pool = ThreadPool::global();
    let mut out = vec![0f32; tokens * width];
    let flops = 4.0 * (tokens * tokens * width) as f64;
    println!(
        "vision attention, {tokens} tokens, {} heads × {}, {} threads",
        shape.n_heads,
        shape.head_dim,
        pool.threads()
    );
    let only = std::env::var("ATTENTION_BENCH_KERNELS").unwrap_or_default();
    for kernel in [Kernel::F32, Kernel::Bf16Dot, Kernel::Bf16Amx] {
        let picked = only.is_empty() || only.split(',').any(|k| k == format!("{kernel:?}"));
        if !picked || !kernel.runs(Precision::Bf16) {
            continue;
        }
        let scale = (shape.head_dim as f32).powf(-0.5);
        let mut call = || {
            let t = Instant::now();
            attention_with(
                kernel,
                pool,
                shape,
                &q,
                &k,
                &v,
                &segments,
                scale,
                Precision::Bf16,
                &mut out,
            );
            t.elapsed().as_secs_f64()
        };
        call();
        let mut times: Vec<f64> = (0..repeats).map(|_| call()).collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        println!(
            "{kernel:?}: {:.3} ms per layer (min {:.3}), {:.0} GFLOP/s on the two GEMMs",
            med * 1e3,
            times[0] * 1e3,
            flops / med / 1e9
        );
    }
    if qwen3vl::engine::kernels::attention::softmax_avx512::available() {
        // The softmax alone on one thread: `tokens` rows of `tokens` scores (one head's worth).
        let mut rows: Vec<f32> = q.iter().take(tokens * tokens.min(width)).copied().collect();
        rows.resize(tokens * tokens, 0.5);
        let mut probs = vec![0u16; tokens];
        let mut times: Vec<f64> = (0..repeats.max(5))
            .map(|_| {
                let t = Instant::now();
                for row in rows.chunks_exact_mut(tokens) {
                    qwen3vl::engine::kernels::attention::softmax_avx512::softmax_to_bf16(
                        row, tokens, 0.125, &mut probs,
                    );
                }
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let per = times[times.len() / 2] / (tokens * tokens) as f64;
        println!(
            "AVX-512 softmax alone: {:.3} ns per score ({:.1} ms per layer on one core)",
            per * 1e9,
            per * (tokens * tokens * shape.n_heads) as f64 * 1e3
        );
    }
}
