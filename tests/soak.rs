//! The short soak (the long one is `examples/soak.rs`): 45 s at twice the batch size with text,
//! image and video chats, streams, vLLM `/generate` streams and clients hanging up; then no
//! non-200 answer or broken stream, the server's counters match the clients', every KV block
//! is back, `/health` and readiness stay under 100 ms (p99), and RSS does not keep growing.

mod service_support;

#[path = "../examples/soak_support/mod.rs"]
mod soak_support;

use std::time::Duration;

use qwen3vl::engine::kernels::runtime::malloc;
use qwen3vl::pipeline::KvCacheSize;
use qwen3vl::service::Server;
use service_support::*;
use soak_support::load::{run, SoakConfig};
use soak_support::verdict::Limits;

/// Its own process (`harness = false` in Cargo.toml), so that, as in `qwen3vl serve`, malloc's
/// arenas are capped before any other thread exists: the test harness's thread would otherwise
/// open a second arena under glibc's default, and RSS would grow with it (docs/reliability.md).
fn main() {
    malloc::limit_server_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(soak());
    println!("short_soak_at_twice_capacity ... ok");
}

async fn soak() {
    let mut s = settings();
    s.max_batch_size = Some(4);
    s.max_prefill_batch_size = Some(4);
    s.max_link_num = Some(64);
    let mut c = config(s);
    // A pool the run cycles through quickly: first touches of KV pages are warm-up, not a leak.
    c.kv_cache = KvCacheSize::Blocks(384);
    let server = Server::start(c, false).unwrap();
    let cfg = SoakConfig {
        base: format!("http://{}", server.local_addr()),
        model: "qwen3vl".into(),
        clients: 8,
        duration: Duration::from_secs(45),
        warmup: Duration::from_secs(20),
        max_tokens: 16,
        pid: None,
        seed: 7,
    };
    let report = run(&cfg).await;
    println!("{}", report.summary());
    // In-process, RSS includes the clients; 25 s of samples is short, so the limit is loose:
    // at ~2,000 requests a minute it still catches a leak of a few KiB per request.
    let failures = report.failures(&Limits {
        rss_slope_kib_per_min: 16384.0,
        health_p99_ms: 100.0,
    });
    let kinds = report.by_kind.len();
    server.stop().unwrap();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(kinds, 7, "every kind of request ran: {:?}", report.by_kind);
}
