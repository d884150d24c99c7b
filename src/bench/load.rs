//! The load generator (spec §3.4): a concurrency limit (AISBench `batch_size`, a semaphore on
//! requests in flight), request pacing (AISBench `TokenProducer`: gamma-distributed gaps,
//! Poisson for burstiness 1, rescaled so the last request is released at N / rate; no pacing
//! below 0.001 req/s) and warm-up requests whose results are discarded.
//!
//! A request is released at its arrival time, then waits for a concurrency slot; its `tp[0]`
//! is taken by the backend just before sending, so queueing time is not part of any metric
//! (as in AISBench, where the token bucket releases work that then waits on the semaphore).

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use tokio::sync::Semaphore;

use super::backends::{Backend, BenchRequest};
use super::record::{Clock, RequestRecord};

/// AISBench `FINAL_RPS_MINIMUM_THRESHOLD`: below this rate requests are not paced.
pub const MIN_RATE: f64 = 0.001;

/// How requests are released.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Maximum requests in flight (≥ 1).
    pub concurrency: usize,
    /// Requests per second; < [`MIN_RATE`] means "as fast as concurrency allows".
    pub request_rate: f64,
    /// Gamma shape of the gaps: 1 = Poisson, 0 = fixed 1/rate gaps.
    pub burstiness: f64,
    /// Seed of the pacing RNG.
    pub seed: u64,
}

/// Cumulative release offsets (seconds from the start) for `n` requests, or `None` when the
/// rate is below [`MIN_RATE`] (no pacing). Gaps ~ Gamma(shape = burstiness,
/// scale = 1/(rate·burstiness)) (fixed 1/rate when burstiness is 0); the cumulative sums are
/// then scaled so the last offset is exactly `n / rate` (`_generate_interval_lists`).
pub fn arrival_offsets(n: usize, rate: f64, burstiness: f64, seed: u64) -> Option<Vec<f64>> {
    if rate.is_nan() || rate < MIN_RATE || n == 0 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let gamma = if burstiness > 0.0 {
        Gamma::new(burstiness, 1.0 / (rate * burstiness)).ok()
    } else {
        None
    };
    let mut acc = 0.0;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        acc += match &gamma {
            Some(g) => g.sample(&mut rng),
            None => 1.0 / rate,
        };
        out.push(acc);
    }
    let last = out[n - 1];
    if last > 0.0 {
        let k = n as f64 / rate / last;
        for d in out.iter_mut() {
            *d *= k;
        }
    }
    Some(out)
}

/// Called after every finished request (progress bar).
pub type OnDone = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// Runs `requests` against `backend` under `cfg`; records come back in request order.
pub async fn run(
    backend: Arc<dyn Backend>,
    requests: Vec<BenchRequest>,
    cfg: &LoadConfig,
    clock: Clock,
    on_done: Option<OnDone>,
) -> Vec<RequestRecord> {
    let n = requests.len();
    let offsets = arrival_offsets(n, cfg.request_rate, cfg.burstiness, cfg.seed);
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(n);
    for (i, req) in requests.into_iter().enumerate() {
        if let Some(off) = &offsets {
            tokio::time::sleep_until(start + Duration::from_secs_f64(off[i])).await;
        }
        // Acquire in arrival order: the semaphore is fair (FIFO).
        let permit = match sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break, // the semaphore is never closed
        };
        let backend = backend.clone();
        let on_done = on_done.clone();
        handles.push(tokio::spawn(async move {
            let rec = backend.send(&req, clock).await;
            drop(permit);
            if let Some(cb) = &on_done {
                cb(&rec);
            }
            rec
        }));
    }
    let mut records = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        records.push(h.await.unwrap_or_else(|e| RequestRecord {
            index: i,
            error: Some(format!("request task ended abnormally: {e}")),
            ..RequestRecord::default()
        }));
    }
    records
}

/// Warm-up: `count` requests built from the dataset (cycling), concurrency-limited, not
/// paced; their records are returned only so failures can be reported.
pub async fn warmup(
    backend: Arc<dyn Backend>,
    requests: Vec<BenchRequest>,
    concurrency: usize,
    clock: Clock,
) -> Vec<RequestRecord> {
    let cfg = LoadConfig {
        concurrency,
        request_rate: 0.0,
        burstiness: 1.0,
        seed: 0,
    };
    run(backend, requests, &cfg, clock, None).await
}
