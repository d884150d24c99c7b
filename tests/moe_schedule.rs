//! The sparse MoE block's expert schedules (`ExpertSchedule::ByExpert`: whole experts on
//! different cores; `WithinExpert`: one expert at a time, its GEMMs split across the cores)
//! against each other, bit for bit, and against a token-by-token reference written from the
//! formula (softmax router, top-k with ties to the lower expert, renormalised weights, SwiGLU
//! experts, the weighted sum in expert order rounded once): bit for bit where the GEMM gives a
//! row the same bits whatever the batch (the FMA, `vdpbf16ps` and AMX panels), within rounding
//! elsewhere (the portable GEMM and W8A8 order their sums by batch size), for every GEMM path
//! this CPU has in bf16 and f32, and for row counts from a decode step to a prefill. Also:
//! shapes that do not fit are refused with an error.

use half::bf16;
use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::linear::{FastBackend, Linear, WeightStore};
use qwen3vl::engine::kernels::ops::silu_mul;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::moe::{ExpertSchedule, MoeBlock};

const HIDDEN: usize = 96;
const INTER: usize = 40;
const EXPERTS: usize = 12;
const TOP_K: usize = 3;

fn values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// How the test builds each linear.
#[derive(Clone, Copy)]
enum Path<'a> {
    Float(Option<&'a dyn FastBackend>),
    W8a8,
}

fn linear(pool: &ThreadPool, n: usize, k: usize, seed: u64, p: Precision, path: Path) -> Linear {
    let w = values(n * k, seed, 0.3);
    let store = match p {
        Precision::Bf16 => WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect()),
        Precision::F16 => WeightStore::F16(w.iter().map(|&v| half::f16::from_f32(v)).collect()),
        Precision::F32 => WeightStore::F32(w),
    };
    match path {
        Path::Float(backend) => Linear::new(store, n, k, None, p, backend).expect("linear"),
        Path::W8a8 => Linear::quantized(pool, &store, n, k, None, p).expect("int8 linear"),
    }
}

/// The block and, for the reference, a second copy of the same weights.
fn block(pool: &ThreadPool, p: Precision, path: Path, norm_topk: bool) -> MoeBlock {
    // The router stays float, as in the checkpoints (msModelSlim leaves `mlp.gate` unquantized).
    let router_path = match path {
        Path::W8a8 => Path::Float(None),
        other => other,
    };
    let router = linear(pool, EXPERTS, HIDDEN, 1, p, router_path);
    let experts = (0..EXPERTS as u64)
        .map(|e| {
            (
                linear(pool, 2 * INTER, HIDDEN, 100 + 2 * e, p, path),
                linear(pool, HIDDEN, INTER, 101 + 2 * e, p, path),
            )
        })
        .collect();
    MoeBlock::new(router, experts, TOP_K, INTER, HIDDEN, norm_topk).expect("block")
}

/// The formula, one token at a time, on the same linears.
fn reference(
    pool: &ThreadPool,
    parts: &(Linear, Vec<(Linear, Linear)>),
    x: &[f32],
    s: usize,
    p: Precision,
    norm_topk: bool,
) -> Vec<f32> {
    let (router, experts) = parts;
    let mut y = vec![0f32; s * HIDDEN];
    for t in 0..s {
        let xt = &x[t * HIDDEN..(t + 1) * HIDDEN];
        let z = router.apply(pool, xt, 1).expect("router");
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        let probs: Vec<f32> = e.iter().map(|v| v / sum).collect();
        // Top-k by repeated arg-max; among equal probabilities the lower expert wins.
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..TOP_K {
            let best = (0..EXPERTS)
                .filter(|i| !chosen.contains(i))
                .fold(None, |best: Option<usize>, i| match best {
                    Some(b) if probs[b] >= probs[i] => Some(b),
                    _ => Some(i),
                })
                .expect("an expert left");
            chosen.push(best);
        }
        let total: f32 = chosen.iter().map(|&i| probs[i]).sum();
        let mut weights: Vec<(usize, f32)> = chosen
            .iter()
            .map(|&i| {
                let w = if norm_topk {
                    probs[i] / total
                } else {
                    probs[i]
                };
                (i, p.round(w))
            })
            .collect();
        weights.sort_by_key(|&(i, _)| i);
        for (i, w) in weights {
            let (gate_up, down) = &experts[i];
            let gu = gate_up.apply(pool, xt, 1).expect("gate_up");
            let mut act = gu[..INTER].to_vec();
            silu_mul(&mut act, &gu[INTER..], p);
            let out = down.apply(pool, &act, 1).expect("down");
            for (a, v) in y[t * HIDDEN..(t + 1) * HIDDEN].iter_mut().zip(&out) {
                *a += p.round(v * w);
            }
        }
    }
    p.round_slice(&mut y);
    y
}

fn parts(pool: &ThreadPool, p: Precision, path: Path) -> (Linear, Vec<(Linear, Linear)>) {
    let router_path = match path {
        Path::W8a8 => Path::Float(None),
        other => other,
    };
    (
        linear(pool, EXPERTS, HIDDEN, 1, p, router_path),
        (0..EXPERTS as u64)
            .map(|e| {
                (
                    linear(pool, 2 * INTER, HIDDEN, 100 + 2 * e, p, path),
                    linear(pool, HIDDEN, INTER, 101 + 2 * e, p, path),
                )
            })
            .collect(),
    )
}

/// `bound(p)`: None for bit equality with the reference at precision `p`, else the largest
/// difference allowed as a fraction of the largest reference value.
fn check(label: &str, path: Path, bound: impl Fn(Precision) -> Option<f32>) {
    let pool = ThreadPool::new(2);
    for p in [Precision::Bf16, Precision::F32, Precision::F16] {
        for norm_topk in [true, false] {
            let moe = block(&pool, p, path, norm_topk);
            let same = parts(&pool, p, path);
            for s in [1usize, 2, 5, 16, 37] {
                let x = values(s * HIDDEN, 7 + s as u64, 1.5);
                let want = reference(&pool, &same, &x, s, p, norm_topk);
                let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(
                    scale > 0.0,
                    "a block whose output is all zeros tests nothing"
                );
                let within = |schedule: ExpertSchedule| {
                    let mut y = vec![f32::NAN; 3];
                    moe.forward_scheduled(&pool, &x, s, p, schedule, &mut y)
                        .expect("forward");
                    assert_eq!(y.len(), s * HIDDEN);
                    y
                };
                let split = within(ExpertSchedule::WithinExpert);
                for schedule in [ExpertSchedule::Auto, ExpertSchedule::ByExpert] {
                    let y = within(schedule);
                    let diff = y
                        .iter()
                        .zip(&split)
                        .position(|(a, b)| a.to_bits() != b.to_bits());
                    assert!(
                        diff.is_none(),
                        "{label} {p:?} norm_topk={norm_topk} rows={s}: {schedule:?} gives {} \
                         where WithinExpert gives {} (value {})",
                        y[diff.unwrap()],
                        split[diff.unwrap()],
                        diff.unwrap()
                    );
                }
                let bound = bound(p);
                for (i, (a, b)) in split.iter().zip(&want).enumerate() {
                    let ok = match bound {
                        None => a.to_bits() == b.to_bits(),
                        Some(t) => (a - b).abs() <= t * scale,
                    };
                    assert!(
                        ok,
                        "{label} {p:?} norm_topk={norm_topk} rows={s}: value {i} is {a} vs the \
                         reference's {b} (largest reference value {scale})"
                    );
                }
            }
        }
    }
}

/// Rows grouped differently sum in a different order: within 2e-2 for half precisions (f16
/// keeps more bits than bf16: the bf16 bound covers it), 1e-5 for f32.
fn approximate(p: Precision) -> Option<f32> {
    Some(if p.is_half() { 2e-2 } else { 1e-5 })
}

/// The panel kernels give every row the same bits however rows are grouped. f32 weights are
/// not theirs: the backend hands them to oneDNN where it loads, else to the portable path,
/// whose sums on AVX2-only CPUs depend on the grouping (a Zen 3 differed in the last bits).
fn exact_on_panels(p: Precision) -> Option<f32> {
    (p == Precision::F32).then_some(1e-5)
}

#[test]
fn portable_schedules_equal_the_reference() {
    check("portable", Path::Float(None), approximate);
}

#[test]
fn panel_kernel_schedules_equal_the_reference() {
    let fma = qwen3vl::engine::kernels::gemm::fma_backend(0);
    match fma.as_deref() {
        Some(be) => check("fma", Path::Float(Some(be)), exact_on_panels),
        None => eprintln!("no FMA panel kernel on this CPU"),
    }
    let dot = qwen3vl::engine::kernels::gemm::dot_backend(0);
    match dot.as_deref() {
        Some(be) => check("dot", Path::Float(Some(be)), exact_on_panels),
        None => eprintln!("no AVX512-BF16 dot kernel on this CPU"),
    }
    let amx = qwen3vl::engine::kernels::gemm::amx_backend(0);
    match amx.as_deref() {
        Some(be) => check("amx", Path::Float(Some(be)), exact_on_panels),
        None => eprintln!("no AMX tiles on this CPU"),
    }
}

#[test]
fn w8a8_schedules_equal_the_reference() {
    check("w8a8", Path::W8a8, approximate);
}

#[test]
fn mismatched_shapes_are_refused() {
    let pool = ThreadPool::new(1);
    let p = Precision::F32;
    let f = Path::Float(None);
    let experts = |inter: usize| -> Vec<(Linear, Linear)> {
        (0..4)
            .map(|e| {
                (
                    linear(&pool, 2 * inter, HIDDEN, e, p, f),
                    linear(&pool, HIDDEN, inter, e + 10, p, f),
                )
            })
            .collect()
    };
    let router = || linear(&pool, 4, HIDDEN, 1, p, f);
    let err = |r: qwen3vl::engine::Result<MoeBlock>| match r {
        Ok(_) => panic!("accepted a block that does not fit"),
        Err(e) => e.to_string(),
    };
    // Experts built for another intermediate width.
    assert!(err(MoeBlock::new(router(), experts(8), 2, 16, HIDDEN, true)).contains("expert 0"));
    // A router for another expert count.
    let wrong_router = linear(&pool, 5, HIDDEN, 1, p, f);
    assert!(err(MoeBlock::new(wrong_router, experts(8), 2, 8, HIDDEN, true)).contains("router"));
    // More experts per token than there are.
    assert!(err(MoeBlock::new(router(), experts(8), 5, 8, HIDDEN, true)).contains("top-5"));
    // An input shorter than its rows.
    let moe = MoeBlock::new(router(), experts(8), 2, 8, HIDDEN, true).expect("block");
    let mut y = Vec::new();
    let short = vec![0.5f32; HIDDEN * 2 - 1];
    assert!(moe.forward(&pool, &short, 2, p, &mut y).is_err());
}
