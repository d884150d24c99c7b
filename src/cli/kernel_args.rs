//! The kernel flags every model-loading subcommand shares, and the one place the CLI turns them
//! into the process's kernel plan.

use anyhow::{Context, Result};
use qwen3vl::engine::kernels::runtime::caps::CpuCaps;
use qwen3vl::engine::kernels::runtime::env::PlanEnv;
use qwen3vl::engine::kernels::runtime::plan::{self, KernelPlan, PlanRequest, Resolved};
use qwen3vl::engine::BackendChoice;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelArgs {
    /// Compute threads (default: one per core this process may run on; `QWEN3VL_THREADS` also
    /// sets it, the flag wins).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl KernelArgs {
    /// The plan these flags, `backend` and the environment resolve to on this machine (a model
    /// resolves its own with its `--backend`; the process plan is the automatic one).
    pub fn resolve(&self, backend: BackendChoice) -> Result<Resolved> {
        let request = PlanRequest {
            backend,
            threads: self.threads.map(usize::from),
        };
        KernelPlan::resolve(CpuCaps::detect(), &request, PlanEnv::process())
            .context("resolving the kernel plan")
    }

    /// Resolves the automatic plan under these flags and makes it the process plan. Call it
    /// before anything computes: the compute pool and oneDNN take their thread count from the
    /// process plan when first used.
    pub fn install(&self) -> Result<&'static Resolved> {
        let wanted = self.resolve(BackendChoice::Auto)?;
        let threads = wanted.plan.threads;
        let installed = plan::install(wanted);
        anyhow::ensure!(
            installed.plan.threads == threads,
            "a kernel plan with {} threads was in force before the flags were read",
            installed.plan.threads
        );
        Ok(installed)
    }
}
