//! `qwen3vl env` names the kernel each family gets on this machine, the reason, and the effect
//! of the flags and variables that steer the plan.

use std::process::Command;

use qwen3vl::engine::kernels::runtime::caps::CpuCaps;
use qwen3vl::engine::kernels::runtime::env::{PlanEnv, VARS};
use qwen3vl::engine::kernels::runtime::plan::{KernelPlan, PlanRequest, Resolved};

/// `qwen3vl env` with `args`, under exactly the `vars` of the plan's variables.
fn env_cmd(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qwen3vl"));
    c.arg("env").args(args);
    for (name, _) in VARS {
        c.env_remove(name);
    }
    c.envs(vars.iter().copied());
    c.output().unwrap()
}

/// The plan line for `what` in the output: its choice and reason.
fn plan_line<'a>(out: &'a str, what: &str) -> (&'a str, &'a str) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(what) && l.starts_with("  "))
        .unwrap_or_else(|| panic!("no `{what}` line in\n{out}"));
    let rest = line.trim_start()[what.len()..].trim_start();
    rest.split_once("  ")
        .map(|(c, w)| (c.trim(), w.trim()))
        .unwrap_or((rest, ""))
}

fn expected(req: &PlanRequest, vars: &[(&str, &str)]) -> Resolved {
    let env = vars
        .iter()
        .fold(PlanEnv::default(), |e, (n, v)| e.with(n, v));
    KernelPlan::resolve(CpuCaps::detect(), req, &env).unwrap()
}

fn assert_prints(out: &str, want: &Resolved) {
    for r in &want.reasons {
        let (choice, why) = plan_line(out, r.what);
        assert_eq!(choice, r.choice, "{}:\n{out}", r.what);
        assert_eq!(why, r.why, "{}:\n{out}", r.what);
    }
}

#[test]
fn env_prints_the_plan_this_machine_gets() {
    let o = env_cmd(&[], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let want = expected(&PlanRequest::default(), &[]);
    assert_prints(&out, &want);
    // The families a reader looks for, by name.
    for what in [
        "bf16 gemm",
        "int8 gemm",
        "attention",
        "paged attention",
        "threads",
    ] {
        assert!(!plan_line(&out, what).0.is_empty(), "{what}");
    }
    let caps = CpuCaps::detect();
    assert!(out.starts_with(&format!("cpu: {} ", caps.model)), "{out}");
    for (name, _) in VARS {
        assert!(out.contains(&format!("{name} ")), "{name} missing:\n{out}");
    }
}

#[test]
fn flags_and_variables_change_the_printed_plan() {
    let vars = [("QWEN3VL_ISA", "base"), ("QWEN3VL_THREADS", "2")];
    let o = env_cmd(&["--threads", "3"], &vars);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let req = PlanRequest {
        threads: Some(3),
        ..Default::default()
    };
    assert_prints(&out, &expected(&req, &vars));
    assert_eq!(plan_line(&out, "threads"), ("3", "--threads"));
    assert_eq!(plan_line(&out, "int8 gemm").0, "portable");
    assert_eq!(plan_line(&out, "paged attention").0, "plain");
    if CpuCaps::detect().isa > qwen3vl::engine::kernels::runtime::simd::Level::Base {
        assert_eq!(
            plan_line(&out, "isa"),
            ("base", "lowered by QWEN3VL_ISA=base")
        );
    }
    assert!(out.contains("QWEN3VL_ISA            =base"), "{out}");
}

#[test]
fn a_forced_backend_this_cpu_lacks_is_one_error_line() {
    let caps = CpuCaps::detect();
    let o = env_cmd(&["--backend", "amx"], &[]);
    if caps.amx_bf16 {
        assert!(o.status.success());
        let out = String::from_utf8(o.stdout).unwrap();
        assert_eq!(plan_line(&out, "bf16 gemm"), ("amx", "--backend amx"));
    } else {
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("the AMX kernel needs AMX-BF16"), "{err}");
    }
}
