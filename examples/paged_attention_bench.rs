//! Time of one layer's causal prefill attention in the text decoder (`kernels::attention::paged`)
//! at the Qwen3-VL-2B shape (16 query heads, 8 KV heads of 128, bf16 cache): the part of a long
//! prompt's prefill that grows with the square of its length. Prints the median time per layer
//! and the useful rate (2 · hd FLOPs per visible key for q·k and again for P·V).
//!
//! `cargo run --release --example paged_attention_bench [-- TOKENS…]` (default 128 512 1024;
//! `PAGED_BENCH_REPEATS` the calls). Run on an idle machine (timings of a shared box are noisy).

use std::time::Instant;

use qwen3vl::engine::kernels::attention::paged::{paged_attention, KvRows, PagedSeq};
use qwen3vl::engine::kernels::attention::AttnShape;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;

fn main() {
    let lens: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let lens = if lens.is_empty() {
        vec![128, 512, 1024]
    } else {
        lens
    };
    let repeats: usize = std::env::var("PAGED_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let shape = AttnShape {
        n_heads: 16,
        n_kv_heads: 8,
        head_dim: 128,
    };
    let (qs, kvs) = (
        shape.n_heads * shape.head_dim,
        shape.n_kv_heads * shape.head_dim,
    );
    let block_size = 16;
    let pool = ThreadPool::global();
    println!("threads {}", pool.threads());
    for &n in &lens {
        let noise = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 4093;
                    Precision::Bf16.round((h as f32 - 2046.0) / 2046.0)
                })
                .collect()
        };
        let q = noise(n * qs, 1);
        let bits =
            |v: Vec<f32>| -> Vec<u16> { v.iter().map(|x| (x.to_bits() >> 16) as u16).collect() };
        let (k, v) = (bits(noise(n * kvs, 2)), bits(noise(n * kvs, 3)));
        // A scattered block table, as a paged cache hands out.
        let nblocks = n.div_ceil(block_size);
        let blocks: Vec<u32> = (0..nblocks as u32)
            .map(|b| (b * 7) % nblocks as u32)
            .collect();
        let seq = PagedSeq {
            q0: 0,
            len: n,
            start: 0,
            blocks: &blocks,
        };
        let mut out = vec![0f32; n * qs];
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            paged_attention(
                pool,
                shape,
                &q,
                KvRows::Bf16(&k),
                KvRows::Bf16(&v),
                block_size,
                &[seq],
                (shape.head_dim as f32).powf(-0.5),
                Precision::Bf16,
                &mut out,
            );
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        let visible = (n * (n + 1) / 2) as f64;
        let flops = visible * shape.n_heads as f64 * shape.head_dim as f64 * 4.0;
        println!(
            "{n:5} tokens: {:8.3} ms per layer  {:6.1} GFLOP/s  (28 layers: {:.2} s)",
            med * 1e3,
            flops / med / 1e9,
            med * 28.0
        );
    }
}
