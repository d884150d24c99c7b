//! Every backend of each kernel family that this CPU can run, chosen through an explicit kernel
//! plan and checked against the portable plan: the GEMMs (bf16, f16, f32 weights), the W8A8
//! tiers, segment attention and paged attention. Each case asserts which path it ran (the
//! backend's name, the int8 tier's name, the attention kernel the plan picks).

mod common;

use common::noise;
use half::{bf16, f16};
use qwen3vl::engine::kernels::attention::paged::{paged_attention, KvRows, PagedSeq};
use qwen3vl::engine::kernels::attention::{attention, AttnShape, Kernel, Mask, Segment};
use qwen3vl::engine::kernels::bf16::{round_bf16, Precision};
use qwen3vl::engine::kernels::gemm::backend_for;
use qwen3vl::engine::kernels::gemm::onednn_runs_bf16;
use qwen3vl::engine::kernels::int8::onednn::{self, Int8Engine};
use qwen3vl::engine::kernels::int8::{quantize_row, Int8Linear, Int8Weight};
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::caps::CpuCaps;
use qwen3vl::engine::kernels::runtime::plan::{
    Bf16Gemm, F16Gemm, F32Gemm, Int8Gemm, KernelPlan, PagedAttention,
};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::kernels::runtime::simd::Level;

/// The automatic plan at each level this CPU has, each with `vary` applied; those this CPU can
/// run, without repeats.
fn plans(vary: impl Fn(KernelPlan) -> KernelPlan) -> Vec<KernelPlan> {
    let caps = CpuCaps::detect();
    let mut out: Vec<KernelPlan> = Vec::new();
    for level in [Level::Avx512, Level::Avx2, Level::Base] {
        let p = vary(KernelPlan::at_level(level));
        if p.fits(caps).is_ok() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// One [m, k] · [n, k]ᵀ product with bias through `Linear` on `plan`'s backend, in its scope.
fn linear(
    plan: &KernelPlan,
    w: WeightStore,
    p: Precision,
    x: &[f32],
    m: usize,
) -> (Vec<f32>, String) {
    let (n, k) = (97, 131);
    let bias = noise(n, 3);
    plan.run(|| {
        let backend = backend_for(plan);
        let l = Linear::new(w, n, k, Some(bias), p, backend.as_deref()).unwrap();
        let y = l.apply(ThreadPool::global(), x, m).unwrap();
        (y, l.backend_name())
    })
}

fn assert_within(got: &[f32], want: &[f32], rel: f32, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * g.abs().max(w.abs()) + 1e-6;
        assert!((g - w).abs() <= tol, "{what} [{i}]: {g} vs portable {w}");
    }
}

#[test]
fn every_gemm_backend_here_equals_the_portable_path() {
    let (m, n, k) = (19, 97, 131);
    let w: Vec<f32> = noise(n * k, 7);
    let portable = KernelPlan::portable();
    let mut ran = Vec::new();
    // bf16 weights: every bf16 kernel, at every level where it runs.
    let x = noise(m * k, 9)
        .iter()
        .map(|&v| round_bf16(v))
        .collect::<Vec<_>>();
    let store = || WeightStore::Bf16(w.iter().map(|&v| bf16::from_f32(v)).collect());
    let (want, name) = linear(&portable, store(), Precision::Bf16, &x, m);
    assert_eq!(name, "portable");
    for g in [
        Bf16Gemm::Amx,
        Bf16Gemm::Dot,
        Bf16Gemm::Fma,
        Bf16Gemm::OneDnn,
    ] {
        if g == Bf16Gemm::OneDnn && !onednn_runs_bf16() {
            continue;
        }
        for plan in plans(|p| KernelPlan {
            bf16_gemm: g,
            gemm_min_elements: 0,
            ..p
        }) {
            let (got, name) = linear(&plan, store(), Precision::Bf16, &x, m);
            let tag = match g {
                Bf16Gemm::Amx => "AMX",
                Bf16Gemm::Dot => "dot",
                Bf16Gemm::Fma if plan.isa == Level::Avx512 => "AVX-512 FMA",
                Bf16Gemm::Fma => "AVX2 FMA",
                _ => "oneDNN",
            };
            assert!(name.contains(tag), "{g:?} at {:?} ran {name}", plan.isa);
            // Both outputs are rounded to bf16: at most one bf16 step apart.
            assert_within(&got, &want, 8e-3, &name);
            ran.push(name);
        }
    }
    // f16 weights: the FMA panels' f16 format.
    let x16: Vec<f32> = x.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    let store16 = || WeightStore::F16(w.iter().map(|&v| f16::from_f32(v)).collect());
    let (want, _) = linear(&portable, store16(), Precision::F16, &x16, m);
    for plan in plans(|p| KernelPlan {
        f16_gemm: F16Gemm::Fma,
        gemm_min_elements: 0,
        ..p
    }) {
        let (got, name) = linear(&plan, store16(), Precision::F16, &x16, m);
        assert!(name.starts_with("f16 panels"), "{name}");
        assert_within(&got, &want, 1e-3, &name);
        ran.push(name);
    }
    // f32 weights: oneDNN where it is loaded.
    let (want, _) = linear(
        &portable,
        WeightStore::F32(w.clone()),
        Precision::F32,
        &x,
        m,
    );
    for plan in plans(|p| KernelPlan {
        f32_gemm: F32Gemm::OneDnn,
        gemm_min_elements: 0,
        ..p
    }) {
        if backend_for(&plan).is_none() {
            continue; // oneDNN is not loaded here
        }
        let (got, name) = linear(&plan, WeightStore::F32(w.clone()), Precision::F32, &x, m);
        assert!(name.starts_with("oneDNN"), "{name}");
        assert_within(&got, &want, 1e-5, &name);
        ran.push(name);
    }
    eprintln!("GEMM backends run here: {ran:#?}");
    assert!(!ran.is_empty() || CpuCaps::detect().isa == Level::Base);
}

#[test]
fn every_int8_tier_here_gives_the_portable_bits() {
    let pool = ThreadPool::global();
    for (m, k, n) in [(1usize, 70usize, 33usize), (11, 150, 300), (35, 196, 80)] {
        let w = noise(n * k, 5);
        let mut q = vec![0i8; n * k];
        let s: Vec<f32> = w
            .chunks_exact(k)
            .zip(q.chunks_exact_mut(k))
            .map(|(wr, qr)| quantize_row(wr, qr))
            .collect();
        let x = noise(m * k, 6);
        let run = |plan: &KernelPlan, engine: Int8Engine| {
            let weight = Int8Weight::pack_with(&q, n, k, engine).unwrap();
            let l = Int8Linear::dynamic(weight, s.clone(), Some(noise(n, 8))).unwrap();
            plan.run(|| {
                let mut y = vec![f32::NAN; m * n];
                l.forward(pool, &x, m, &mut y).unwrap();
                (y, l.describe())
            })
        };
        let (want, name) = run(&KernelPlan::portable(), Int8Engine::Panels);
        assert!(name.contains("portable"), "{name}");
        for tier in [Int8Gemm::Amx, Int8Gemm::Vnni, Int8Gemm::Avx2] {
            for plan in plans(|p| KernelPlan {
                int8_gemm: tier,
                ..p
            }) {
                let (got, name) = run(&plan, Int8Engine::Panels);
                assert!(name.contains(tier.name()), "{tier:?} ran {name}");
                assert_eq!(got, want, "{m}×{k}×{n} {name} ≠ portable");
            }
        }
        if onednn::exact_here() {
            let (got, name) = run(&KernelPlan::at_level(Level::Avx512), Int8Engine::OneDnn);
            assert!(name.contains("oneDNN"), "{name}");
            assert_eq!(got, want, "{m}×{k}×{n} {name} ≠ portable");
        }
    }
}

/// q, k, v of one case: `heads` (query, kv), head size `hd`, `rows` tokens.
fn qkv(heads: (usize, usize), hd: usize, rows: usize) -> [Vec<f32>; 3] {
    let bf = |v: Vec<f32>, amp: f32| v.iter().map(|&x| round_bf16(x * amp)).collect();
    [
        bf(noise(rows * heads.0 * hd, 11), 2.0),
        bf(noise(rows * heads.1 * hd, 23), 2.0),
        bf(noise(rows * heads.1 * hd, 37), 1.0),
    ]
}

#[test]
fn every_attention_kernel_here_agrees_with_the_portable_path() {
    let pool = ThreadPool::global();
    let shape = AttnShape {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 72,
    };
    let [q, k, v] = qkv((4, 2), 72, 70);
    let segments = [
        Segment {
            q0: 0,
            len: 50,
            k0: 0,
            klen: 50,
            mask: Mask::Full,
        },
        Segment {
            q0: 50,
            len: 20,
            k0: 50,
            klen: 20,
            mask: Mask::Causal { offset: 0 },
        },
    ];
    let run = |plan: &KernelPlan| {
        plan.run(|| {
            let mut out = vec![f32::NAN; q.len()];
            let kernel = Kernel::best(Precision::Bf16);
            attention(
                pool,
                shape,
                &q,
                &k,
                &v,
                &segments,
                0.125,
                Precision::Bf16,
                &mut out,
            );
            (out, kernel)
        })
    };
    let (want, kernel) = run(&KernelPlan::portable());
    assert_eq!(kernel, Kernel::F32);
    for kernel in [Kernel::Bf16Amx, Kernel::Bf16Dot, Kernel::F32] {
        for plan in plans(|p| KernelPlan {
            attention: kernel,
            ..p
        }) {
            let (got, ran) = run(&plan);
            assert_eq!(ran, kernel, "the plan's kernel runs");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            let mean = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() as f64)
                .sum::<f64>()
                / want.len() as f64;
            // Each path is within 0.03 (max) and 2e-3 (mean) of eager attention in f64 with
            // the same bf16 roundings (tests/attention_kernels.rs), so within twice that here.
            assert!(
                worst < 0.06 && mean < 4e-3,
                "{kernel:?} at {:?}: max {worst}, mean {mean}",
                plan.isa
            );
        }
    }
}

#[test]
fn both_paged_attention_loops_here_give_the_portable_bits() {
    let pool = ThreadPool::global();
    let shape = AttnShape {
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 64,
    };
    let (len, bs) = (37, 8);
    let [q, k, v] = qkv((4, 2), 64, len);
    // Physical blocks in shuffled order.
    let blocks: Vec<u32> = vec![3, 0, 4, 1, 2];
    let mut kc = vec![0f32; blocks.len() * bs * 128];
    let mut vc = kc.clone();
    for j in 0..len {
        let slot = (blocks[j / bs] as usize * bs + j % bs) * 128;
        kc[slot..slot + 128].copy_from_slice(&k[j * 128..(j + 1) * 128]);
        vc[slot..slot + 128].copy_from_slice(&v[j * 128..(j + 1) * 128]);
    }
    let seq = PagedSeq {
        q0: 0,
        len,
        start: 0,
        blocks: &blocks,
    };
    let run = |plan: &KernelPlan, p: Precision| {
        plan.run(|| {
            let mut out = vec![f32::NAN; q.len()];
            let (kr, vr) = (KvRows::F32(&kc), KvRows::F32(&vc));
            paged_attention(pool, shape, &q, kr, vr, bs, &[seq], 0.125, p, &mut out);
            out.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        })
    };
    for p in [Precision::F32, Precision::Bf16] {
        let want = run(&KernelPlan::portable(), p);
        for loops in [PagedAttention::Avx512, PagedAttention::Plain] {
            for plan in plans(|pl| KernelPlan {
                paged_attention: loops,
                ..pl
            }) {
                assert_eq!(run(&plan, p), want, "{loops:?} at {:?}, {p:?}", plan.isa);
            }
        }
    }
}
