//! GFLOPS of the oneDNN matmul binding for W = 6144×2048 (Qwen3-VL-2B MLP up/gate).
//!
//! `cargo run --release --example onednn_bench [-- M…]`. Uses 2 OpenMP threads unless
//! `OMP_NUM_THREADS` is already set (libgomp reads it when oneDNN is loaded).

use std::time::{Duration, Instant};

use half::bf16;
use qwen3vl::engine::kernels::gemm::onednn::{OneDnn, PackedWeight, WeightData};

const N: usize = 6144;
const K: usize = 2048;

fn main() {
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        // Single-threaded at this point, before oneDNN (and libgomp) is loaded.
        std::env::set_var("OMP_NUM_THREADS", "2");
    }
    let ms: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ms = if ms.is_empty() {
        vec![1, 16, 128, 512]
    } else {
        ms
    };
    let dnn = match OneDnn::get_or_reason() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("oneDNN unavailable: {why}");
            return;
        }
    };
    println!("{}; W = {N}×{K}", dnn.describe());

    let w: Vec<f32> = (0..N * K)
        .map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3)
        .collect();
    let wb: Vec<bf16> = w.iter().map(|&f| bf16::from_f32(f)).collect();
    let t = Instant::now();
    let pf = PackedWeight::new(dnn, WeightData::F32(&w), N, K).expect("pack f32");
    let t_f32 = t.elapsed();
    let t = Instant::now();
    let pb = PackedWeight::new(dnn, WeightData::Bf16(&wb), N, K).expect("pack bf16");
    println!(
        "pack: f32 {:.1} ms ({} MB), bf16 {:.1} ms ({} MB)",
        t_f32.as_secs_f64() * 1e3,
        pf.packed_bytes() >> 20,
        t.elapsed().as_secs_f64() * 1e3,
        pb.packed_bytes() >> 20
    );
    drop((w, wb));

    // Fixed per-call cost (memory objects, stream, OpenMP fork/join): a 64×64 weight at M = 1.
    let small = PackedWeight::new(dnn, WeightData::F32(&[0.5; 64 * 64]), 64, 64).expect("pack");
    let (x, mut y) = ([1.0f32; 64], [0.0f32; 64]);
    small.matmul(&x, 1, None, &mut y).expect("matmul");
    let (iters, t) = (20_000, Instant::now());
    for _ in 0..iters {
        small.matmul(&x, 1, None, &mut y).expect("matmul");
    }
    let per = t.elapsed().as_secs_f64() / iters as f64;
    println!("per-call overhead (64×64, M=1): {:.1} µs", per * 1e6);

    println!(
        "{:>5} {:>5} {:>10} {:>12} {:>10}  impl",
        "dtype", "M", "GFLOPS", "µs/call", "1st call ms"
    );
    for (dtype, p) in [("f32", &pf), ("bf16", &pb)] {
        for &m in &ms {
            let x: Vec<f32> = (0..m * K)
                .map(|i| ((i % 97) as f32 - 48.0) * 0.01)
                .collect();
            let mut y = vec![0f32; m * N];
            // The first call creates (JITs) the primitive for this M.
            let t = Instant::now();
            p.matmul(&x, m, None, &mut y).expect("matmul");
            let first = t.elapsed();
            for _ in 0..2 {
                p.matmul(&x, m, None, &mut y).expect("matmul");
            }
            let (mut iters, t) = (0u32, Instant::now());
            while t.elapsed() < Duration::from_millis(700) || iters < 5 {
                p.matmul(&x, m, None, &mut y).expect("matmul");
                iters += 1;
            }
            let per = t.elapsed().as_secs_f64() / iters as f64;
            let gflops = 2.0 * (m * N * K) as f64 / per / 1e9;
            println!(
                "{dtype:>5} {m:>5} {gflops:>10.1} {:>12.1} {:>10.2}  {}",
                per * 1e6,
                first.as_secs_f64() * 1e3,
                p.impl_name(m).unwrap_or_else(|e| e.to_string())
            );
        }
    }
}
