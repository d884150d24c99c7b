//! Segment attention: the AMX-BF16 path, the AVX512-BF16 path (both GEMMs on `vdpbf16ps`), the
//! f32 GEMM path and the portable f32 path all equal eager-PyTorch attention computed independently here in f64 with the same bf16
//! rounding points — for odd head dims (5, 72), GQA, one-key segments, causal masks with cached
//! keys, and several segments in one call.

use qwen3vl::engine::kernels::attention::bf16 as attention_bf16;
use qwen3vl::engine::kernels::attention::{attention_with, AttnShape, Kernel, Mask, Segment};
use qwen3vl::engine::kernels::bf16::{round_bf16, Precision};
use qwen3vl::engine::kernels::runtime::plan::KernelPlan;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::kernels::runtime::simd::Level;

fn noise(n: usize, seed: u32, amp: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            round_bf16(((s as f32 / u32::MAX as f32) * 2.0 - 1.0) * amp)
        })
        .collect()
}

/// Eager attention: scores rounded, scaled and rounded; f64 softmax; probabilities rounded; P·V
/// rounded.
fn reference(
    shape: AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &[Segment],
    scale: f32,
    out_rows: usize,
) -> Vec<f32> {
    let AttnShape {
        n_heads,
        n_kv_heads,
        head_dim: hd,
    } = shape;
    let (qs, kvs) = (n_heads * hd, n_kv_heads * hd);
    let mut out = vec![0f32; out_rows * qs];
    for s in segments {
        for h in 0..n_heads {
            let g = h / (n_heads / n_kv_heads);
            for i in 0..s.len {
                let visible = match s.mask {
                    Mask::Full => s.klen,
                    Mask::Causal { offset } => (offset + i + 1).min(s.klen),
                };
                let qr = &q[(s.q0 + i) * qs + h * hd..][..hd];
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let kr = &k[(s.k0 + j) * kvs + g * hd..][..hd];
                        let dot: f64 = qr.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum();
                        round_bf16(round_bf16(dot as f32) * scale) as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = e
                        .iter()
                        .enumerate()
                        .map(|(j, &x)| {
                            round_bf16((x / sum) as f32) as f64
                                * v[(s.k0 + j) * kvs + g * hd + d] as f64
                        })
                        .sum();
                    out[(s.q0 + i) * qs + h * hd + d] = round_bf16(acc as f32);
                }
            }
        }
    }
    out
}

struct Case {
    heads: (usize, usize),
    hd: usize,
    /// (query rows, key rows, mask) per segment; segments are laid out one after another.
    segments: Vec<(usize, usize, Mask)>,
}

#[test]
fn bf16_and_portable_attention_match_eager_reference() {
    let pool = ThreadPool::global();
    let cases = [
        Case {
            heads: (2, 2),
            hd: 64,
            segments: vec![(100, 100, Mask::Full)],
        },
        Case {
            heads: (3, 3),
            hd: 72,
            segments: vec![
                (1, 1, Mask::Full),
                (17, 17, Mask::Full),
                (70, 70, Mask::Full),
            ],
        },
        // Vision-like: head_dim 64 over 300 patches (4 full query blocks and a 44-row one, an
        // odd number of 16-key tiles).
        Case {
            heads: (2, 1),
            hd: 64,
            segments: vec![(300, 300, Mask::Full)],
        },
        Case {
            heads: (4, 2),
            hd: 5,
            segments: vec![(13, 13, Mask::Causal { offset: 0 })],
        },
        Case {
            heads: (4, 1),
            hd: 128,
            segments: vec![
                (3, 3 + 40, Mask::Causal { offset: 40 }),
                (1, 7, Mask::Causal { offset: 6 }),
            ],
        },
    ];
    println!(
        "AVX512-BF16 path available: {}, AMX: {}",
        attention_bf16::available(),
        Kernel::Bf16Amx.runs(Precision::Bf16)
    );
    for (ci, c) in cases.iter().enumerate() {
        let (nh, nkv) = c.heads;
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: c.hd,
        };
        let mut segments = Vec::new();
        let (mut qrow, mut krow) = (0, 0);
        for &(len, klen, mask) in &c.segments {
            segments.push(Segment {
                q0: qrow,
                len,
                k0: krow,
                klen,
                mask,
            });
            qrow += len;
            krow += klen;
        }
        let q = noise(qrow * nh * c.hd, 11 + ci as u32, 2.0);
        let k = noise(krow * nkv * c.hd, 23 + ci as u32, 2.0);
        let v = noise(krow * nkv * c.hd, 37 + ci as u32, 1.0);
        let scale = (c.hd as f32).powf(-0.5);
        let want = reference(shape, &q, &k, &v, &segments, scale, qrow);
        // `None`: what `attention` picks at the current level (`Kernel::best`).
        let run = |kernel: Option<Kernel>| {
            let mut out = vec![f32::NAN; qrow * nh * c.hd];
            let kernel = kernel.unwrap_or_else(|| Kernel::best(Precision::Bf16));
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
            out
        };
        let mut results = Vec::new();
        for kernel in [Kernel::Bf16Amx, Kernel::Bf16Dot, Kernel::F32] {
            if kernel.runs(Precision::Bf16) {
                results.push((format!("{kernel:?}"), run(Some(kernel))));
            }
        }
        // The portable path: what the automatic plan picks at the AVX2 level.
        let portable = KernelPlan::at_level(Level::Avx2);
        assert_eq!(portable.attention, Kernel::F32);
        results.push(("portable".into(), portable.run(|| run(None))));
        for (what, got) in &results {
            let mut worst = 0f32;
            let mut sum = 0f64;
            for (g, w) in got.iter().zip(&want) {
                assert!(g.is_finite(), "case {ci} {what}: non-finite output");
                worst = worst.max((g - w).abs());
                sum += (g - w).abs() as f64;
            }
            let mean = sum / want.len() as f64;
            println!("case {ci} {what}: max {worst:.2e} mean {mean:.2e}");
            // Accumulation order may move a score across a bf16 rounding boundary (one bf16 ulp of
            // a logit); that changes an output by well under 0.03 here, and rarely.
            assert!(worst < 0.03, "case {ci} {what}: max error {worst}");
            assert!(mean < 2e-3, "case {ci} {what}: mean error {mean}");
        }
    }
}
