//! Soak test: N minutes of mixed traffic at a chosen concurrency (text, image and video;
//! streaming and not; clients hanging up), then the verdict: no 5xx or broken stream, the
//! server's counters match the clients', every KV block back, `/health` fast under load, no
//! RSS growth once warm. Exits 1 on any failure.
//!
//! ```text
//! # against a running server (RSS of its process):
//! cargo run --release --example soak -- --url http://127.0.0.1:1025 --pid $(pgrep -f 'qwen3vl serve') \
//!     --minutes 30 --clients 16
//! # or in-process, on a model folder (RSS of this process, clients included):
//! cargo run --release --example soak -- --model /path/to/model --minutes 5 --clients 16 --batch 8
//! ```
//! `--clients` should be twice the server's `maxBatchSize` for a "2× capacity" soak. The short
//! version runs in CI as `tests/soak.rs`.

#[path = "soak_support/mod.rs"]
mod soak_support;

use std::path::PathBuf;
use std::time::Duration;

use qwen3vl::service::{Server, Settings};
use soak_support::load::{run, SoakConfig};
use soak_support::verdict::Limits;

fn main() {
    let mut url = None;
    let mut model: Option<PathBuf> = None;
    let mut pid = None;
    let (mut minutes, mut clients, mut batch, mut max_tokens, mut seed) = (5.0, 16, 8, 24, 1);
    let mut limits = Limits {
        rss_slope_kib_per_min: 1024.0,
        health_p99_ms: 100.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = |s: String| -> f64 { s.parse().unwrap_or_else(|_| panic!("not a number: {s}")) };
        match flag.as_str() {
            "--url" => url = Some(val()),
            "--model" => model = Some(PathBuf::from(val())),
            "--pid" => pid = Some(num(val()) as u32),
            "--minutes" => minutes = num(val()),
            "--clients" => clients = num(val()) as usize,
            "--batch" => batch = num(val()) as usize,
            "--max-tokens" => max_tokens = num(val()) as usize,
            "--seed" => seed = num(val()) as u64,
            "--rss-slope-limit" => limits.rss_slope_kib_per_min = num(val()),
            "--health-p99-ms" => limits.health_p99_ms = num(val()),
            _ => panic!("unknown flag {flag} (see the header of examples/soak.rs)"),
        }
    }
    let server = model.map(|dir| {
        let settings = Settings {
            model_dir: Some(dir),
            host: Some("127.0.0.1".into()),
            port: Some(0),
            max_batch_size: Some(batch),
            max_link_num: Some(clients * 2),
            ..Default::default()
        };
        Server::start(settings.finish().expect("settings"), false).expect("server")
    });
    let base = match (&server, url) {
        (Some(s), _) => format!("http://{}", s.local_addr()),
        (None, Some(u)) => u,
        (None, None) => panic!("pass --url of a running server or --model DIR"),
    };
    let cfg = SoakConfig {
        base,
        model: "qwen3vl".into(),
        clients,
        duration: Duration::from_secs_f64(minutes * 60.0),
        warmup: Duration::from_secs_f64(minutes * 60.0 / 2.0),
        max_tokens,
        pid,
        seed,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let report = rt.block_on(run(&cfg));
    println!("{}", report.summary());
    let failures = report.failures(&limits);
    if let Some(s) = server {
        s.stop().expect("stop");
    }
    if failures.is_empty() {
        println!("soak passed");
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        std::process::exit(1);
    }
}
