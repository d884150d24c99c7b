//! The kernel plan: which kernel runs each family (bf16 / f16 / f32 / int8 GEMMs, attention,
//! paged attention), at which dispatch level, on how many threads. It is resolved in one place
//! (`KernelPlan::resolve`) from what the machine can run ([`CpuCaps`]), the command line
//! ([`PlanRequest`]) and the `QWEN3VL_*` variables ([`PlanEnv`]), with a reason for each choice;
//! kernels only say whether they can run on this CPU and follow the plan in force.
//!
//! The plan in force on a thread ([`active`]) is the one a caller scoped with
//! [`KernelPlan::run`] (carried into the compute pool's tasks for that call), else the process
//! plan ([`process`]): the one [`install`]ed first (the CLI does so from its flags before a model
//! loads) or, failing that, the automatic plan under the process environment. Tests scope
//! explicit plans instead of flipping process-wide switches, so tests running in parallel do not
//! change each other's paths and each knows which path it ran.

use std::cell::Cell;
use std::sync::OnceLock;

use super::caps::CpuCaps;
use super::env::{self, PlanEnv};
/// [`KernelPlan::resolve`] with oneDNN's facts given: the rules alone, for any CPU.
pub use super::resolve::resolve_with;
use super::simd::Level;
use crate::engine::error::Result;
use crate::engine::kernels::attention::Kernel as Attention;
use crate::engine::kernels::int8::onednn::Int8Engine;

/// Weights below this many elements stay on the portable GEMM under automatic selection:
/// oneDNN's per-call cost (primitive lookup, OpenMP region) dominates on tiny matrices.
pub const AUTO_MIN_ELEMENTS: usize = 1 << 18;

/// Which GEMM the model's linears use (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The fastest kernel measured for each weight type on this CPU (`KernelPlan::resolve`).
    #[default]
    Auto,
    /// The portable pure-Rust path only.
    Portable,
    /// oneDNN for every weight; an error if oneDNN is not available.
    OneDnn,
    /// The FMA kernel (AVX-512 or AVX2 tiles) over bf16 panels for every bf16 weight (others as
    /// `Auto`); an error where the CPU has neither.
    Fma,
    /// The AVX512-BF16 `vdpbf16ps` kernel for every bf16 weight (others as `Auto`); an error
    /// where the CPU lacks AVX512_BF16.
    Dot,
    /// The AMX-BF16 tile kernel for every bf16 weight (others as `Auto`); an error where AMX
    /// tiles cannot run.
    Amx,
}

/// The kernel that multiplies bf16 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Gemm {
    Amx,
    Dot,
    Fma,
    OneDnn,
    Portable,
}

/// The kernel that multiplies f16 weights (oneDNN has no fast f16 matmul without AVX512-FP16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F16Gemm {
    Fma,
    Portable,
}

/// The kernel that multiplies f32 weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F32Gemm {
    OneDnn,
    Portable,
}

/// The tiles of the W8A8 panels, in increasing speed; every tier gives the same int32 sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Int8Gemm {
    Portable,
    /// AVX2 `vpmaddwd` tiles.
    Avx2,
    /// AVX512-VNNI `vpdpbusd` tiles.
    Vnni,
    /// AMX-INT8 tiles for calls of 2+ rows, the VNNI tiles below.
    Amx,
}

/// The loops of paged attention's prefill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagedAttention {
    /// AVX-512 blocks (the plain loops' bits, laid out for registers).
    Avx512,
    Plain,
}

/// The command line's say in the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanRequest {
    pub backend: BackendChoice,
    /// `--threads`: compute threads (wins over `QWEN3VL_THREADS`).
    pub threads: Option<usize>,
    /// `--pin-threads`: pin compute workers to CPUs (wins over `QWEN3VL_PIN_THREADS`).
    pub pin_threads: Option<bool>,
}

/// One plan: which kernel runs each family here. Build it with [`KernelPlan::resolve`], then
/// adjust fields for a test; [`KernelPlan::run`] refuses a plan this CPU cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPlan {
    /// The dispatch level of every multi-versioned loop (`multiversion!` in [`super::simd`]).
    pub isa: Level,
    pub bf16_gemm: Bf16Gemm,
    pub f16_gemm: F16Gemm,
    pub f32_gemm: F32Gemm,
    /// Weights below this many elements stay portable.
    pub gemm_min_elements: usize,
    pub int8_gemm: Int8Gemm,
    /// Where new W8A8 weights are packed.
    pub int8_weights: Int8Engine,
    /// The attention GEMMs' kernel in bf16 mode (other precisions always take [`Attention::F32`]).
    pub attention: Attention,
    pub paged_attention: PagedAttention,
    /// Compute threads; sizes the process pool when the process plan is first used.
    pub threads: usize,
    /// oneDNN column slices per compute thread.
    pub onednn_slices: usize,
    /// Advise packed weights onto transparent huge pages.
    pub huge_pages: bool,
    /// Pin the process pool's workers, one per CPU of the process's affinity set.
    pub pin_threads: bool,
}

/// oneDNN as loaded here: what the plan needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneDnnFacts {
    /// e.g. "oneDNN 2.6.3 (OpenMP, 2 threads, isa avx512_core_vnni)".
    pub describe: String,
    /// Its effective ISA includes AMX tiles.
    pub amx: bool,
    /// It has a non-reference bf16 matmul.
    pub runs_bf16: bool,
}

/// One choice of a resolved plan and why it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// What was chosen ("bf16 gemm", "threads", …).
    pub what: &'static str,
    /// The choice, as printed.
    pub choice: String,
    pub why: String,
}

/// A plan with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub plan: KernelPlan,
    pub reasons: Vec<Reason>,
    /// oneDNN's description, or why it is not loaded.
    pub onednn: std::result::Result<String, String>,
}

impl KernelPlan {
    /// The plan for `caps` under `req` and `env`. Loads oneDNN (once per process, with the
    /// plan's thread count) unless `env` disables it. Fails only where `req` forces a backend
    /// that cannot run here.
    pub fn resolve(caps: &CpuCaps, req: &PlanRequest, env: &PlanEnv) -> Result<Resolved> {
        let threads = super::resolve::threads(caps, req, env);
        let onednn = if env.flag(env::NO_ONEDNN) {
            Err(format!("disabled by {}", env::NO_ONEDNN))
        } else {
            // Loading probes oneDNN with a packed weight, which runs our buffer code: under the
            // portable plan, so nothing on the way asks for the plan being resolved (the
            // process plan would wait for itself).
            let loading = KernelPlan {
                huge_pages: env.get(env::NO_HUGEPAGES).is_none(),
                ..KernelPlan::portable()
            };
            loading.run(|| {
                crate::engine::kernels::gemm::load_onednn(threads.0, env.get(env::ONEDNN_LIB))
            })
        };
        super::resolve::resolve_with(caps, onednn, req, env)
    }

    /// Every family on its portable path, at the baseline level, on one thread: what any x86-64
    /// CPU runs, and the reference the other paths are tested against.
    pub fn portable() -> KernelPlan {
        KernelPlan {
            isa: Level::Base,
            bf16_gemm: Bf16Gemm::Portable,
            f16_gemm: F16Gemm::Portable,
            f32_gemm: F32Gemm::Portable,
            gemm_min_elements: 0,
            int8_gemm: Int8Gemm::Portable,
            int8_weights: Int8Engine::Panels,
            attention: Attention::F32,
            paged_attention: PagedAttention::Plain,
            threads: 1,
            onednn_slices: 1,
            huge_pages: true,
            pin_threads: false,
        }
    }

    /// The automatic plan under the process environment with the dispatch level lowered to
    /// `isa` (no lower than the CPU's): what `QWEN3VL_ISA` would give, for tests.
    pub fn at_level(isa: Level) -> KernelPlan {
        let name = match isa {
            Level::Base => "base",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        };
        let env = PlanEnv::process().clone().with(env::ISA, name);
        KernelPlan::resolve(CpuCaps::detect(), &PlanRequest::default(), &env)
            .expect("automatic selection always resolves")
            .plan
    }

    /// Whether `caps` can run every choice of this plan; the error names the first that it
    /// cannot.
    pub fn fits(&self, caps: &CpuCaps) -> std::result::Result<(), String> {
        let avx512 = self.isa == Level::Avx512;
        let fma = super::resolve::fma_tiles(caps, self.isa);
        let checks = [
            (self.isa <= caps.isa, "dispatch level"),
            (
                match self.bf16_gemm {
                    Bf16Gemm::Amx => caps.amx_bf16 && avx512,
                    Bf16Gemm::Dot => caps.avx512_bf16 && avx512,
                    Bf16Gemm::Fma => fma,
                    Bf16Gemm::OneDnn | Bf16Gemm::Portable => true,
                },
                "bf16 gemm",
            ),
            (self.f16_gemm == F16Gemm::Portable || fma, "f16 gemm"),
            (
                match self.int8_gemm {
                    Int8Gemm::Amx => caps.amx_int8 && caps.avx512_vnni && avx512,
                    Int8Gemm::Vnni => caps.avx512_vnni && avx512,
                    Int8Gemm::Avx2 => caps.avx2 && self.isa >= Level::Avx2,
                    Int8Gemm::Portable => true,
                },
                "int8 gemm",
            ),
            (
                match self.attention {
                    Attention::Bf16Amx => caps.amx_bf16 && caps.avx512_bf16 && avx512,
                    Attention::Bf16Dot => caps.avx512_bf16 && avx512,
                    Attention::F32 => true,
                },
                "attention",
            ),
            (
                self.paged_attention == PagedAttention::Plain || (caps.avx512f && avx512),
                "paged attention",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, what)) => Err(format!("{what}: {self:?} asks for more than {caps:?}")),
            None => Ok(()),
        }
    }

    /// Runs `f` with this plan in force on this thread and in the compute pool's tasks it
    /// starts. Panics if this CPU cannot run the plan (see [`KernelPlan::fits`]): kernels
    /// trust the plan in force not to ask for instructions the CPU lacks.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        if let Err(e) = self.fits(CpuCaps::detect()) {
            panic!("this CPU cannot run the plan: {e}");
        }
        struct Restore(Option<KernelPlan>);
        impl Drop for Restore {
            fn drop(&mut self) {
                set_scoped(self.0);
            }
        }
        let _restore = Restore(set_scoped(Some(*self)));
        f()
    }
}

impl Bf16Gemm {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Gemm::Amx => "amx",
            Bf16Gemm::Dot => "dot",
            Bf16Gemm::Fma => "fma",
            Bf16Gemm::OneDnn => "onednn",
            Bf16Gemm::Portable => "portable",
        }
    }
}

impl Int8Gemm {
    pub fn name(self) -> &'static str {
        match self {
            Int8Gemm::Amx => "amx-int8",
            Int8Gemm::Vnni => "avx512-vnni",
            Int8Gemm::Avx2 => "avx2",
            Int8Gemm::Portable => "portable",
        }
    }
}

impl Resolved {
    /// The plan on one line, for load logs.
    pub fn summary(&self) -> String {
        let p = &self.plan;
        format!(
            "kernel plan: isa {}, bf16 gemm {}, f16 gemm {}, f32 gemm {}, int8 gemm {} ({}), \
             attention {}, paged attention {}, threads {}",
            p.isa.name(),
            p.bf16_gemm.name(),
            format!("{:?}", p.f16_gemm).to_lowercase(),
            format!("{:?}", p.f32_gemm).to_lowercase(),
            p.int8_gemm.name(),
            format!("{:?}", p.int8_weights).to_lowercase(),
            p.attention.name(),
            format!("{:?}", p.paged_attention).to_lowercase(),
            p.threads,
        )
    }

    /// The reason given for `what`, if any.
    pub fn why(&self, what: &str) -> Option<&Reason> {
        self.reasons.iter().find(|r| r.what == what)
    }
}

thread_local! {
    /// The plan a caller scoped on this thread (or the pool task's caller scoped).
    static SCOPED: Cell<Option<KernelPlan>> = const { Cell::new(None) };
}

static PROCESS: OnceLock<Resolved> = OnceLock::new();

/// The process plan: the first [`install`]ed, else the automatic plan under the process
/// environment (resolved on first use).
pub fn process() -> &'static Resolved {
    PROCESS.get_or_init(|| {
        KernelPlan::resolve(
            CpuCaps::detect(),
            &PlanRequest::default(),
            PlanEnv::process(),
        )
        .expect("automatic selection always resolves")
    })
}

/// Makes `plan` the process plan unless one is in force already; returns the one in force
/// (compare its threads with yours: the compute pool is sized once). Panics if this CPU cannot
/// run `plan`.
pub fn install(plan: Resolved) -> &'static Resolved {
    if let Err(e) = plan.plan.fits(CpuCaps::detect()) {
        panic!("this CPU cannot run the plan: {e}");
    }
    PROCESS.get_or_init(|| plan)
}

/// The plan in force on this thread: scoped by [`KernelPlan::run`], else [`process`].
pub fn active() -> KernelPlan {
    SCOPED.with(Cell::get).unwrap_or_else(|| process().plan)
}

/// The plan scoped on this thread, if any (the compute pool hands it to its tasks).
pub(crate) fn scoped() -> Option<KernelPlan> {
    SCOPED.with(Cell::get)
}

/// Scopes `plan` on this thread; returns the one it replaces. Only [`KernelPlan::run`] and the
/// compute pool call it, with plans that passed [`KernelPlan::fits`].
pub(crate) fn set_scoped(plan: Option<KernelPlan>) -> Option<KernelPlan> {
    SCOPED.with(|c| c.replace(plan))
}
