//! `qwen3vl env`: the CPU, the kernel plan this machine gets and why each choice was made, and
//! the `QWEN3VL_*` variables that steer it.

use std::io::Write;

use crate::engine::kernels::runtime::caps::CpuCaps;
use crate::engine::kernels::runtime::env::{PlanEnv, VARS};
use crate::engine::ModelArgs;
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct EnvArgs {
    /// The plan is resolved for these flags' --backend and --threads (--dtype and --quantize
    /// do not change it).
    #[command(flatten)]
    pub model_args: ModelArgs,
}

pub fn run(args: &EnvArgs) -> Result<()> {
    let caps = CpuCaps::detect();
    let resolved = args.model_args.resolve()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "cpu: {} ({} cores)", caps.model, caps.cores)?;
    writeln!(out, "  features: {}", caps.flags().join(" "))?;
    match caps.fma_dot_rates {
        Some((fma, dot)) => writeln!(
            out,
            "  vdpbf16ps {:.0} vs vfmadd231ps {:.0} GFLOP/s per core",
            dot / 1e9,
            fma / 1e9
        )?,
        None => writeln!(out, "  no vdpbf16ps")?,
    }
    match &resolved.onednn {
        Ok(d) => writeln!(out, "onednn: {d}")?,
        Err(why) => writeln!(out, "onednn: not loaded ({why})")?,
    }
    writeln!(out, "kernel plan:")?;
    let width = resolved.reasons.iter().map(|r| r.choice.len()).max();
    for r in &resolved.reasons {
        let w = width.unwrap_or(0);
        writeln!(out, "  {:<16} {:<w$}  {}", r.what, r.choice, r.why)?;
    }
    writeln!(out, "environment:")?;
    let env = PlanEnv::process();
    for (name, what) in VARS {
        let value = env.get(name).map_or("unset".into(), |v| format!("={v}"));
        writeln!(out, "  {name:<22} {value:<8} {what}")?;
    }
    Ok(())
}
