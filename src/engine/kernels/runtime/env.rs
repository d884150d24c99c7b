//! The `QWEN3VL_*` variables that steer the kernels, read from the process environment in one
//! place ([`PlanEnv::from_process`]) and handed to [`super::plan::KernelPlan::resolve`] as plain
//! data, so a test can resolve a plan under any settings without touching the environment.

use std::sync::OnceLock;

/// Every variable [`PlanEnv`] reads, with what it does (printed by `qwen3vl env`).
pub const VARS: [(&str, &str); 10] = [
    (
        THREADS,
        "compute threads (the --threads flag wins); default one per core",
    ),
    (ISA, "base|avx2|avx512: lower the dispatch level"),
    (AMX, "0: none of our AMX tiles"),
    (
        BF16_GEMM,
        "dot|fma|onednn: the bf16 GEMM automatic selection picks",
    ),
    (INT8, "panels|onednn: which GEMM holds W8A8 weights"),
    (NO_ONEDNN, "1: do not load oneDNN"),
    (ONEDNN_LIB, "file name or path of libdnnl.so.2"),
    (
        ONEDNN_SLICES,
        "oneDNN column slices per compute thread (default 1)",
    ),
    (
        NO_HUGEPAGES,
        "set: no transparent huge pages for packed weights",
    ),
    (
        PIN_THREADS,
        "1: pin each compute worker to one CPU (the --pin-threads flag wins)",
    ),
];

pub const THREADS: &str = "QWEN3VL_THREADS";
pub const ISA: &str = "QWEN3VL_ISA";
pub const AMX: &str = "QWEN3VL_AMX";
pub const BF16_GEMM: &str = "QWEN3VL_BF16_GEMM";
pub const INT8: &str = "QWEN3VL_INT8";
pub const NO_ONEDNN: &str = "QWEN3VL_NO_ONEDNN";
pub const ONEDNN_LIB: &str = "QWEN3VL_ONEDNN_LIB";
pub const ONEDNN_SLICES: &str = "QWEN3VL_ONEDNN_SLICES";
pub const NO_HUGEPAGES: &str = "QWEN3VL_NO_HUGEPAGES";
pub const PIN_THREADS: &str = "QWEN3VL_PIN_THREADS";

/// The values of the [`VARS`] that are set (an empty value counts as set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanEnv {
    set: Vec<(&'static str, String)>,
}

impl PlanEnv {
    /// The variables as this process's environment has them now. The only place the crate
    /// reads a `QWEN3VL_*` kernel variable.
    pub fn from_process() -> PlanEnv {
        let set = VARS
            .iter()
            .filter_map(|&(name, _)| {
                let v = std::env::var_os(name)?;
                Some((name, v.to_string_lossy().into_owned()))
            })
            .collect();
        PlanEnv { set }
    }

    /// [`PlanEnv::from_process`] taken once: the environment the process plan and the oneDNN
    /// library load follow (both happen once per process).
    pub fn process() -> &'static PlanEnv {
        static ENV: OnceLock<PlanEnv> = OnceLock::new();
        ENV.get_or_init(PlanEnv::from_process)
    }

    /// This environment with `name` set to `value`. Panics if `name` is not one of [`VARS`]:
    /// a misspelt name in a test would otherwise test nothing.
    pub fn with(mut self, name: &str, value: &str) -> PlanEnv {
        let Some(&(known, _)) = VARS.iter().find(|(n, _)| *n == name) else {
            panic!("{name} is not a kernel plan variable");
        };
        self.set.retain(|(n, _)| *n != known);
        self.set.push((known, value.to_string()));
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.set
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The variables that are set, in [`VARS`] order.
    pub fn set_vars(&self) -> impl Iterator<Item = (&'static str, &str)> {
        VARS.iter()
            .filter_map(|&(name, _)| self.get(name).map(|v| (name, v)))
    }

    /// A yes/no switch that is on when set to anything but "" or "0".
    pub(super) fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| !v.is_empty() && v != "0")
    }
}
