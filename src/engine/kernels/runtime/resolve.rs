//! [`KernelPlan::resolve`]'s rules: for each family, the kernel the measured figures (in
//! docs/performance.md, quoted in each reason) say is fastest on this CPU, unless the command
//! line or a `QWEN3VL_*` variable says otherwise. Automatic selection reproduces what each
//! kernel module used to decide on its own, so the default paths did not change.

use super::caps::CpuCaps;
use super::env::{self, PlanEnv};
use super::plan::{
    BackendChoice, Bf16Gemm, F16Gemm, F32Gemm, Int8Gemm, KernelPlan, OneDnnFacts, PagedAttention,
    PlanRequest, Reason, Resolved, AUTO_MIN_ELEMENTS,
};
use super::simd::Level;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::attention::Kernel as Attention;
use crate::engine::kernels::int8::onednn::Int8Engine;

/// The dispatch level's register tiles of the FMA panels run here.
pub(super) fn fma_tiles(caps: &CpuCaps, isa: Level) -> bool {
    match isa {
        Level::Avx512 => caps.avx512f || caps.avx2_fma_f16c,
        Level::Avx2 => caps.avx2_fma_f16c,
        Level::Base => false,
    }
}

/// Compute threads and why: `--threads`, else `QWEN3VL_THREADS`, else one per core.
pub(super) fn threads(caps: &CpuCaps, req: &PlanRequest, env: &PlanEnv) -> (usize, String) {
    let from_env = env
        .get(env::THREADS)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0);
    match (req.threads.filter(|&n| n > 0), from_env) {
        (Some(n), _) => (n, "--threads".into()),
        (None, Some(n)) => (n, format!("{}={n}", env::THREADS)),
        (None, None) => (
            caps.cores.max(1),
            "one per core this process may run on".into(),
        ),
    }
}

/// [`KernelPlan::resolve`] with oneDNN's facts given (`Err`: why it is absent).
pub fn resolve_with(
    caps: &CpuCaps,
    onednn: std::result::Result<OneDnnFacts, String>,
    req: &PlanRequest,
    env: &PlanEnv,
) -> Result<Resolved> {
    let mut why = Vec::new();
    let mut say = |what: &'static str, choice: String, reason: String| {
        why.push(Reason {
            what,
            choice,
            why: reason,
        })
    };
    let (threads, threads_why) = threads(caps, req, env);
    let lowered = match env.get(env::ISA) {
        Some("base") => Some(Level::Base),
        Some("avx2") => Some(Level::Avx2),
        _ => None,
    };
    let isa = lowered.map_or(caps.isa, |l| l.min(caps.isa));
    say(
        "isa",
        isa.name().into(),
        match lowered {
            Some(l) if l < caps.isa => format!("lowered by {}={}", env::ISA, l.name()),
            _ => "the widest this CPU has".into(),
        },
    );
    let avx512 = isa == Level::Avx512;
    let amx_off = env.get(env::AMX) == Some("0");
    let amx_bf16 = caps.amx_bf16 && avx512 && !amx_off;
    let amx_int8 = caps.amx_int8 && avx512 && !amx_off;
    let dnn = onednn.as_ref().ok();
    let fma = fma_tiles(caps, isa);
    let dot = caps.avx512_bf16 && avx512;
    let gemm = bf16_gemm(caps, req.backend, env, (amx_bf16, dot, fma), &onednn)?;
    say("bf16 gemm", gemm.0.name().into(), gemm.1);
    let (f16_gemm, f32_gemm) = match req.backend {
        BackendChoice::Portable => (F16Gemm::Portable, F32Gemm::Portable),
        BackendChoice::OneDnn => (F16Gemm::Portable, F32Gemm::OneDnn),
        _ => (
            if fma { F16Gemm::Fma } else { F16Gemm::Portable },
            if dnn.is_some() {
                F32Gemm::OneDnn
            } else {
                F32Gemm::Portable
            },
        ),
    };
    say(
        "f16 gemm",
        format!("{f16_gemm:?}").to_lowercase(),
        match f16_gemm {
            F16Gemm::Fma => "FMA panels in f16 format (vcvtph2ps widens exactly)".into(),
            F16Gemm::Portable if fma => format!("--backend {}", req.backend.name()),
            F16Gemm::Portable => "no FMA tiles at this level".into(),
        },
    );
    say(
        "f32 gemm",
        format!("{f32_gemm:?}").to_lowercase(),
        match (f32_gemm, &onednn) {
            (F32Gemm::OneDnn, _) => "oneDNN is loaded".into(),
            (F32Gemm::Portable, Err(e)) => format!("oneDNN unavailable: {e}"),
            (F32Gemm::Portable, Ok(_)) => "--backend portable".into(),
        },
    );
    let gemm_min_elements = match req.backend {
        BackendChoice::Auto => AUTO_MIN_ELEMENTS,
        _ => 0,
    };
    let vnni = caps.avx512_vnni && avx512;
    let int8_gemm = if amx_int8 && vnni {
        Int8Gemm::Amx
    } else if vnni {
        Int8Gemm::Vnni
    } else if caps.avx2 && isa >= Level::Avx2 {
        Int8Gemm::Avx2
    } else {
        Int8Gemm::Portable
    };
    let int8_why = match int8_gemm {
        Int8Gemm::Amx => "AMX-INT8 tiles for 2+ rows (the VNNI tiles' exact sums)",
        Int8Gemm::Vnni => "AVX512-VNNI: 799 GOP/s at 6144×2048, M = 128 (EPYC VM)",
        Int8Gemm::Avx2 => "no AVX512-VNNI at this level: exact vpmaddwd tiles",
        Int8Gemm::Portable => "no AVX2 at this level",
    };
    let amx_note = if caps.amx_int8 && amx_off {
        format!(" (AMX off: {}=0)", env::AMX)
    } else {
        String::new()
    };
    say(
        "int8 gemm",
        int8_gemm.name().into(),
        format!("{int8_why}{amx_note}"),
    );
    let int8_exact = dnn.is_some_and(|d| d.amx) || caps.avx512_vnni;
    let (int8_weights, int8_why) = match env.get(env::INT8) {
        Some("onednn") if dnn.is_some() && int8_exact => {
            (Int8Engine::OneDnn, format!("{}=onednn", env::INT8))
        }
        Some("onednn") => (
            Int8Engine::Panels,
            format!("{}=onednn ignored: oneDNN's int8 sums are exact only with AMX or AVX512-VNNI", env::INT8),
        ),
        _ => (
            Int8Engine::Panels,
            "decode 17.2 vs 11.8 tok/s for oneDNN's AMX-INT8 (2B W8A8, AMX VM); QWEN3VL_INT8=onednn \
             prefills faster (352 vs 258 tok/s)"
                .into(),
        ),
    };
    say(
        "int8 weights",
        format!("{int8_weights:?}").to_lowercase(),
        int8_why,
    );
    let attention = if dot && amx_bf16 {
        Attention::Bf16Amx
    } else if dot {
        Attention::Bf16Dot
    } else {
        Attention::F32
    };
    say(
        "attention",
        attention.name().into(),
        match attention {
            Attention::Bf16Amx => "AMX-BF16 tiles for q·kᵀ and P·V (bf16 mode)",
            Attention::Bf16Dot => "vdpbf16ps tiles at twice the f32 rate (bf16 mode)",
            Attention::F32 => "no AVX512_BF16 at this level: f32 GEMMs",
        }
        .into(),
    );
    let paged_attention = if caps.avx512f && avx512 {
        PagedAttention::Avx512
    } else {
        PagedAttention::Plain
    };
    say(
        "paged attention",
        format!("{paged_attention:?}").to_lowercase(),
        match paged_attention {
            PagedAttention::Avx512 => "AVX-512 blocks (the plain loops' bits)",
            PagedAttention::Plain => "no AVX-512 at this level",
        }
        .into(),
    );
    say("threads", threads.to_string(), threads_why);
    let from_env = env
        .get(env::ONEDNN_SLICES)
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1);
    let onednn_slices = from_env.unwrap_or(1);
    say(
        "onednn slices",
        onednn_slices.to_string(),
        match from_env {
            Some(n) => format!("{}={n}", env::ONEDNN_SLICES),
            None => "per thread: 9.6 vs 7.4 tok/s decode with 4 (2B, 2 threads)".into(),
        },
    );
    let huge_pages = env.get(env::NO_HUGEPAGES).is_none();
    say(
        "huge pages",
        if huge_pages { "yes" } else { "no" }.into(),
        if huge_pages {
            "one core streams weights at ≈ 32 GB/s on 2 MiB pages vs ≈ 17 on 4 KiB".into()
        } else {
            format!("{} is set", env::NO_HUGEPAGES)
        },
    );
    let (pin_threads, pin_why) = match (req.pin_threads, env.get(env::PIN_THREADS)) {
        (Some(p), _) => (p, "--pin-threads".to_string()),
        (None, Some(v)) => (v == "1", format!("{}={v}", env::PIN_THREADS)),
        (None, None) => (
            false,
            "default: no gain measured on 2 vCPUs (2B bf16 prefill 0.93–1.08×, decode 1.01–1.04×)"
                .into(),
        ),
    };
    say(
        "pinning",
        if pin_threads { "yes" } else { "no" }.into(),
        pin_why,
    );
    Ok(Resolved {
        plan: KernelPlan {
            isa,
            bf16_gemm: gemm.0,
            f16_gemm,
            f32_gemm,
            gemm_min_elements,
            int8_gemm,
            int8_weights,
            attention,
            paged_attention,
            threads,
            onednn_slices,
            huge_pages,
            pin_threads,
        },
        reasons: why,
        onednn: onednn.map(|d| d.describe),
    })
}

/// The bf16 GEMM and why, given whether our AMX, dot and FMA kernels run at this level and
/// setting, and oneDNN's facts.
fn bf16_gemm(
    caps: &CpuCaps,
    backend: BackendChoice,
    env: &PlanEnv,
    (amx, dot, fma): (bool, bool, bool),
    onednn: &std::result::Result<OneDnnFacts, String>,
) -> Result<(Bf16Gemm, String)> {
    let dnn = onednn.as_ref().ok();
    let dnn_bf16 = dnn.is_some_and(|d| d.runs_bf16);
    let forced = |ok: bool, g: Bf16Gemm, err: &str| {
        if ok {
            Ok((g, format!("--backend {}", backend.name())))
        } else {
            Err(EngineError::Kernel(err.into()))
        }
    };
    let pref = env.get(env::BF16_GEMM);
    let dnn_amx = dnn.is_some_and(|d| d.amx);
    // The measured rates themselves stay out of the reasons (`qwen3vl env` prints them with the
    // CPU): they vary run to run, the decision they lead to does not.
    let slow = if caps.fma_dot_rates.is_some() {
        "below 3/4 of the FMA rate"
    } else {
        "absent"
    };
    match backend {
        BackendChoice::Portable => Ok((Bf16Gemm::Portable, "--backend portable".into())),
        BackendChoice::OneDnn => match dnn {
            Some(_) if dnn_bf16 => Ok((Bf16Gemm::OneDnn, "--backend onednn".into())),
            Some(_) => Ok((
                Bf16Gemm::Portable,
                "--backend onednn, but oneDNN has no fast bf16 matmul here".into(),
            )),
            None => Err(EngineError::Kernel(format!(
                "oneDNN requested but unavailable: {}",
                onednn.as_ref().err().map_or("", |e| e.as_str())
            ))),
        },
        BackendChoice::Fma => forced(
            fma,
            Bf16Gemm::Fma,
            "the bf16 FMA kernel needs AVX-512F or AVX2 + FMA",
        ),
        BackendChoice::Dot => forced(
            dot,
            Bf16Gemm::Dot,
            "the bf16 dot kernel needs AVX-512F + AVX512_BF16 (and QWEN3VL_ISA not below avx512)",
        ),
        BackendChoice::Amx => forced(
            amx,
            Bf16Gemm::Amx,
            "the AMX kernel needs AMX-BF16 and the OS's tile permission (QWEN3VL_AMX=0 and \
             QWEN3VL_ISA below avx512 turn it off)",
        ),
        BackendChoice::Auto => Ok(if amx && !matches!(pref, Some("onednn" | "fma")) {
            (
                Bf16Gemm::Amx,
                "AMX-BF16 tiles: 1.96 vs oneDNN 2.6's 0.97 TFLOP/s at M = 784 (6144×2048, 2 \
                 threads, AMX VM)"
                    .into(),
            )
        } else if dot
            && match pref {
                Some("dot") => true,
                Some("onednn" | "fma") => false,
                _ => !dnn_amx && !caps.dot_is_slow(),
            }
        {
            let why = match pref {
                Some("dot") => format!("{}=dot", env::BF16_GEMM),
                _ => "vdpbf16ps is the fast unit here and oneDNN has no AMX (Zen 5 VM: vision \
                      1.15 vs 1.27 s on oneDNN)"
                    .into(),
            };
            (Bf16Gemm::Dot, why)
        } else if fma
            && match pref {
                Some("fma") => true,
                Some("onednn") => false,
                _ => !dnn_bf16 || (!dnn_amx && caps.dot_is_slow()),
            }
        {
            let why = match pref {
                Some("fma") => format!("{}=fma", env::BF16_GEMM),
                _ if !dnn_bf16 => "oneDNN has no fast bf16 matmul here".into(),
                _ => format!(
                    "vdpbf16ps {slow}: prefill 66.7 vs 49 tok/s, vision 3.4 vs 4.4 s against \
                     oneDNN (Xeon VM whose vdpbf16ps runs at 1/4 the FMA rate)"
                ),
            };
            (Bf16Gemm::Fma, why)
        } else if dnn_bf16 {
            let why = match pref {
                Some("onednn") => format!("{}=onednn", env::BF16_GEMM),
                _ => "none of our bf16 kernels runs at this level".into(),
            };
            (Bf16Gemm::OneDnn, why)
        } else {
            (
                Bf16Gemm::Portable,
                "no vector bf16 kernel runs at this level".into(),
            )
        }),
    }
}
