//! The plan's rules on the CPU kinds docs/performance.md measured (described, not detected), and
//! the scoping of plans on this machine.

use super::caps::CpuCaps;
use super::env::{self, PlanEnv};
use super::plan::{
    self, resolve_with, BackendChoice, Bf16Gemm, F16Gemm, F32Gemm, Int8Gemm, KernelPlan,
    OneDnnFacts, PagedAttention, PlanRequest,
};
use super::pool::ThreadPool;
use super::simd::Level;
use crate::engine::kernels::attention::Kernel as Attention;
use crate::engine::kernels::int8::onednn::Int8Engine;

/// Ice Lake-class Xeon: AVX-512 + VNNI, no AVX512_BF16, no AMX.
fn ice_lake() -> CpuCaps {
    CpuCaps {
        model: "Ice Lake".into(),
        cores: 2,
        isa: Level::Avx512,
        avx2_fma_f16c: true,
        avx2: true,
        avx512f: true,
        avx512_vnni: true,
        ..CpuCaps::baseline()
    }
}

/// The Intel VM of 2026-12-02: `vdpbf16ps` at a quarter of the FMA rate.
fn slow_dot() -> CpuCaps {
    CpuCaps {
        avx512_bf16: true,
        fma_dot_rates: Some((351e9, 86e9)),
        ..ice_lake()
    }
}

/// Zen 5: `vdpbf16ps` the faster unit, no AMX.
fn zen5() -> CpuCaps {
    CpuCaps {
        avx512_bf16: true,
        fma_dot_rates: Some((475e9, 911e9)),
        ..ice_lake()
    }
}

/// Sapphire Rapids: AMX-BF16 and AMX-INT8.
fn sapphire_rapids() -> CpuCaps {
    CpuCaps {
        amx_tiles: true,
        amx_bf16: true,
        amx_int8: true,
        ..zen5()
    }
}

/// An AVX2-only EPYC.
fn avx2_only() -> CpuCaps {
    CpuCaps {
        isa: Level::Avx2,
        avx2_fma_f16c: true,
        avx2: true,
        ..CpuCaps::baseline()
    }
}

fn onednn(amx: bool, runs_bf16: bool) -> Result<OneDnnFacts, String> {
    Ok(OneDnnFacts {
        describe: "oneDNN (described)".into(),
        amx,
        runs_bf16,
    })
}

fn auto(caps: &CpuCaps, dnn: Result<OneDnnFacts, String>, env: &PlanEnv) -> KernelPlan {
    resolve_with(caps, dnn, &PlanRequest::default(), env)
        .expect("automatic selection resolves")
        .plan
}

#[test]
fn automatic_choices_follow_the_measured_winners() {
    let none = PlanEnv::default();
    let p = auto(&sapphire_rapids(), onednn(true, true), &none);
    assert_eq!(
        (p.bf16_gemm, p.attention, p.int8_gemm),
        (Bf16Gemm::Amx, Attention::Bf16Amx, Int8Gemm::Amx)
    );
    let p = auto(&zen5(), onednn(false, true), &none);
    assert_eq!(
        (p.bf16_gemm, p.attention, p.int8_gemm),
        (Bf16Gemm::Dot, Attention::Bf16Dot, Int8Gemm::Vnni)
    );
    let p = auto(&slow_dot(), onednn(false, true), &none);
    assert_eq!(
        (p.bf16_gemm, p.attention),
        (Bf16Gemm::Fma, Attention::Bf16Dot)
    );
    let p = auto(&ice_lake(), onednn(false, true), &none);
    assert_eq!((p.bf16_gemm, p.attention), (Bf16Gemm::Fma, Attention::F32));
    assert_eq!((p.f16_gemm, p.f32_gemm), (F16Gemm::Fma, F32Gemm::OneDnn));
    assert_eq!(p.paged_attention, PagedAttention::Avx512);
    let p = auto(&avx2_only(), onednn(false, false), &none);
    assert_eq!(
        (p.isa, p.bf16_gemm, p.int8_gemm, p.paged_attention),
        (
            Level::Avx2,
            Bf16Gemm::Fma,
            Int8Gemm::Avx2,
            PagedAttention::Plain
        )
    );
    let p = auto(&CpuCaps::baseline(), Err("absent".into()), &none);
    assert_eq!(
        (p.bf16_gemm, p.f16_gemm, p.f32_gemm, p.int8_gemm),
        (
            Bf16Gemm::Portable,
            F16Gemm::Portable,
            F32Gemm::Portable,
            Int8Gemm::Portable
        )
    );
    assert_eq!(p.int8_weights, Int8Engine::Panels);
}

#[test]
fn variables_override_the_automatic_choices() {
    let spr = sapphire_rapids();
    let amx_off = PlanEnv::default().with(env::AMX, "0");
    let p = auto(&spr, onednn(true, true), &amx_off);
    // oneDNN has AMX: its bf16 matmul, not our dot kernel; VNNI for int8.
    assert_eq!(
        (p.bf16_gemm, p.attention, p.int8_gemm),
        (Bf16Gemm::OneDnn, Attention::Bf16Dot, Int8Gemm::Vnni)
    );
    let fma = PlanEnv::default().with(env::BF16_GEMM, "fma");
    assert_eq!(
        auto(&spr, onednn(true, true), &fma).bf16_gemm,
        Bf16Gemm::Fma
    );
    let dot = PlanEnv::default().with(env::BF16_GEMM, "dot");
    assert_eq!(
        auto(&slow_dot(), onednn(false, true), &dot).bf16_gemm,
        Bf16Gemm::Dot
    );
    let base = PlanEnv::default().with(env::ISA, "base");
    let p = auto(&spr, onednn(true, true), &base);
    assert_eq!(
        (p.isa, p.bf16_gemm, p.attention, p.int8_gemm),
        (
            Level::Base,
            Bf16Gemm::OneDnn,
            Attention::F32,
            Int8Gemm::Portable
        )
    );
    let int8 = PlanEnv::default().with(env::INT8, "onednn");
    assert_eq!(
        auto(&ice_lake(), onednn(false, true), &int8).int8_weights,
        Int8Engine::OneDnn
    );
    assert_eq!(
        auto(&avx2_only(), onednn(false, false), &int8).int8_weights,
        Int8Engine::Panels,
        "oneDNN's pre-VNNI int8 sums saturate"
    );
    let knobs = PlanEnv::default()
        .with(env::ONEDNN_SLICES, "4")
        .with(env::NO_HUGEPAGES, "1")
        .with(env::THREADS, "3");
    let p = auto(&ice_lake(), onednn(false, true), &knobs);
    assert_eq!((p.onednn_slices, p.huge_pages, p.threads), (4, false, 3));
}

#[test]
fn the_command_line_wins_and_forced_backends_must_run() {
    let env = PlanEnv::default().with(env::THREADS, "3");
    let req = PlanRequest {
        threads: Some(5),
        ..Default::default()
    };
    let r = resolve_with(&ice_lake(), onednn(false, true), &req, &env).unwrap();
    assert_eq!(r.plan.threads, 5);
    assert_eq!(r.why("threads").map(|r| r.why.as_str()), Some("--threads"));
    let forced = |backend, caps: &CpuCaps, dnn| {
        let req = PlanRequest {
            backend,
            ..Default::default()
        };
        resolve_with(caps, dnn, &req, &PlanEnv::default()).map(|r| r.plan)
    };
    assert!(forced(BackendChoice::Amx, &ice_lake(), onednn(false, true)).is_err());
    assert!(forced(BackendChoice::Dot, &ice_lake(), onednn(false, true)).is_err());
    assert!(forced(BackendChoice::OneDnn, &ice_lake(), Err("absent".into())).is_err());
    let p = forced(BackendChoice::Dot, &zen5(), onednn(false, true)).unwrap();
    assert_eq!((p.bf16_gemm, p.gemm_min_elements), (Bf16Gemm::Dot, 0));
    let p = forced(BackendChoice::Portable, &zen5(), onednn(false, true)).unwrap();
    assert_eq!(
        (p.bf16_gemm, p.f16_gemm, p.f32_gemm),
        (Bf16Gemm::Portable, F16Gemm::Portable, F32Gemm::Portable)
    );
    let p = forced(BackendChoice::OneDnn, &zen5(), onednn(false, true)).unwrap();
    assert_eq!(
        (p.bf16_gemm, p.f16_gemm, p.f32_gemm),
        (Bf16Gemm::OneDnn, F16Gemm::Portable, F32Gemm::OneDnn)
    );
}

#[test]
fn every_choice_has_a_reason() {
    let r = resolve_with(
        &sapphire_rapids(),
        onednn(true, true),
        &PlanRequest::default(),
        &PlanEnv::default(),
    )
    .unwrap();
    for what in [
        "isa",
        "bf16 gemm",
        "f16 gemm",
        "f32 gemm",
        "int8 gemm",
        "int8 weights",
        "attention",
        "paged attention",
        "threads",
        "onednn slices",
        "huge pages",
    ] {
        let reason = r
            .why(what)
            .unwrap_or_else(|| panic!("no reason for {what}"));
        assert!(
            !reason.why.is_empty() && !reason.choice.is_empty(),
            "{what}"
        );
    }
    assert!(r.summary().contains("bf16 gemm amx"), "{}", r.summary());
}

#[test]
fn a_plan_beyond_the_cpu_does_not_fit() {
    let spr = auto(&sapphire_rapids(), onednn(true, true), &PlanEnv::default());
    assert!(spr.fits(&sapphire_rapids()).is_ok());
    assert!(spr.fits(&ice_lake()).is_err());
    assert!(KernelPlan::portable().fits(&CpuCaps::baseline()).is_ok());
    let lowered = KernelPlan {
        isa: Level::Avx2,
        ..auto(&ice_lake(), onednn(false, true), &PlanEnv::default())
    };
    assert!(
        lowered.fits(&ice_lake()).is_err(),
        "VNNI tiles at the AVX2 level"
    );
}

#[test]
fn a_scoped_plan_reaches_the_pool_and_ends_with_its_scope() {
    let outside = plan::active();
    let portable = KernelPlan::portable();
    let pool = ThreadPool::new(3);
    let seen = std::sync::Mutex::new(Vec::new());
    portable.run(|| {
        assert_eq!(plan::active(), portable);
        pool.run(8, &|_| seen.lock().unwrap().push(plan::active()));
    });
    assert!(seen.into_inner().unwrap().iter().all(|p| *p == portable));
    assert_eq!(plan::active(), outside);
    // Workers forget the plan once the region ends.
    let after = std::sync::Mutex::new(Vec::new());
    pool.run(8, &|_| after.lock().unwrap().push(plan::active()));
    assert!(after.into_inner().unwrap().iter().all(|p| *p == outside));
}
