//! The load generator: Poisson pacing (seeded, rescaled like AISBench), the concurrency limit,
//! request ordering, and the `Backend` trait with an in-memory backend.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qwen3vl::bench::backends::{Backend, BenchRequest, BoxFuture};
use qwen3vl::bench::dataset::{MediaKind, MediaMode, Sample};
use qwen3vl::bench::load::{arrival_offsets, run, LoadConfig, MIN_RATE};
use qwen3vl::bench::record::{Clock, RequestRecord, Usage};

#[test]
fn poisson_offsets_are_rescaled_and_exponential() {
    let n = 4000;
    let rate = 20.0;
    let off = arrival_offsets(n, rate, 1.0, 42).unwrap();
    assert_eq!(off.len(), n);
    // Rescaled: the last request is released at exactly N / rate, so the mean rate is exact.
    assert!((off[n - 1] - n as f64 / rate).abs() < 1e-9);
    assert!(off.windows(2).all(|w| w[1] >= w[0]));
    let gaps: Vec<f64> = std::iter::once(off[0])
        .chain(off.windows(2).map(|w| w[1] - w[0]))
        .collect();
    let mean = gaps.iter().sum::<f64>() / n as f64;
    assert!((mean - 1.0 / rate).abs() < 1e-9);
    // Exponential gaps: coefficient of variation ≈ 1 and P(gap > mean) ≈ e^-1.
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
    let cv = var.sqrt() / mean;
    assert!((0.9..1.1).contains(&cv), "cv {cv}");
    let above = gaps.iter().filter(|&&g| g > mean).count() as f64 / n as f64;
    assert!(
        (above - (-1.0f64).exp()).abs() < 0.03,
        "P(gap > mean) = {above}"
    );
    // The mean rate over the first half lies within Poisson bounds (±5σ).
    let half = n / 2;
    let rate_half = half as f64 / off[half - 1];
    let sigma = rate / (half as f64).sqrt();
    assert!((rate_half - rate).abs() < 5.0 * sigma, "rate {rate_half}");
    // Seeded: same seed, same schedule; another seed, another one.
    assert_eq!(arrival_offsets(n, rate, 1.0, 42).unwrap(), off);
    assert_ne!(arrival_offsets(n, rate, 1.0, 43).unwrap(), off);
}

#[test]
fn burstiness_zero_is_evenly_spaced_and_low_rates_are_unpaced() {
    let off = arrival_offsets(4, 2.0, 0.0, 1).unwrap();
    for (g, w) in off.iter().zip([0.5, 1.0, 1.5, 2.0]) {
        assert!((g - w).abs() < 1e-12);
    }
    // Burstier traffic (shape < 1) has a larger coefficient of variation.
    let off = arrival_offsets(4000, 10.0, 0.25, 7).unwrap();
    let gaps: Vec<f64> = off.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let cv =
        (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt() / mean;
    assert!(cv > 1.6, "cv {cv}");
    assert!(arrival_offsets(10, MIN_RATE * 0.99, 1.0, 1).is_none());
    assert!(arrival_offsets(10, 0.0, 1.0, 1).is_none());
    assert!(arrival_offsets(10, f64::NAN, 1.0, 1).is_none());
    assert!(arrival_offsets(0, 5.0, 1.0, 1).is_none());
}

/// A backend that sleeps, counts requests in flight and emits three timed events.
struct Sleepy {
    delay: Duration,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    sent_at: Mutex<Vec<(usize, f64)>>,
}

impl Backend for Sleepy {
    fn name(&self) -> String {
        "sleepy".into()
    }
    fn streaming(&self) -> bool {
        true
    }
    fn send<'a>(&'a self, req: &'a BenchRequest, clock: Clock) -> BoxFuture<'a, RequestRecord> {
        Box::pin(async move {
            let mut rec = req.recorder(clock);
            rec.mark();
            self.sent_at.lock().unwrap().push((req.index, rec.now()));
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            rec.mark();
            rec.push_content("a");
            tokio::time::sleep(self.delay / 4).await;
            rec.mark();
            rec.push_content("b");
            rec.set_usage(Usage {
                prompt_tokens: Some(10),
                completion_tokens: Some(2),
            });
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            rec.finish(Ok(()))
        })
    }
}

fn requests(n: usize) -> Vec<BenchRequest> {
    let sample = Arc::new(Sample {
        id: "s".into(),
        kind: MediaKind::Image,
        paths: vec![PathBuf::from("/nonexistent.jpg")],
        prompt: "q".into(),
        answers: vec![],
    });
    (0..n)
        .map(|index| BenchRequest {
            index,
            sample: sample.clone(),
            media: MediaMode::Path,
            num_frames: 5,
        })
        .collect()
}

fn sleepy(ms: u64) -> Arc<Sleepy> {
    Arc::new(Sleepy {
        delay: Duration::from_millis(ms),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        sent_at: Mutex::new(Vec::new()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_is_respected() {
    let b = sleepy(40);
    let cfg = LoadConfig {
        concurrency: 3,
        request_rate: 0.0,
        burstiness: 1.0,
        seed: 0,
    };
    let done = Arc::new(AtomicUsize::new(0));
    let d2 = done.clone();
    let recs = run(
        b.clone(),
        requests(12),
        &cfg,
        Clock::new(),
        Some(Arc::new(move |_r: &RequestRecord| {
            d2.fetch_add(1, Ordering::SeqCst);
        })),
    )
    .await;
    assert_eq!(recs.len(), 12);
    assert_eq!(done.load(Ordering::SeqCst), 12);
    assert!(recs
        .iter()
        .enumerate()
        .all(|(i, r)| r.index == i && r.success));
    assert_eq!(b.max_in_flight.load(Ordering::SeqCst), 3);
    assert!(recs
        .iter()
        .all(|r| r.time_points.len() == 3 && r.content == "ab"));
    // 12 requests, 3 at a time, ~50 ms each → at least 4 rounds.
    let end = recs.iter().map(|r| r.time_points[2]).fold(0.0f64, f64::max);
    let start = recs
        .iter()
        .map(|r| r.time_points[0])
        .fold(f64::INFINITY, f64::min);
    assert!(end - start >= 0.19, "{}", end - start);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_requests_follow_the_schedule() {
    let b = sleepy(5);
    let n = 20;
    let rate = 40.0;
    let cfg = LoadConfig {
        concurrency: 100,
        request_rate: rate,
        burstiness: 1.0,
        seed: 3,
    };
    let clock = Clock::new();
    let t0 = clock.now();
    let recs = run(b.clone(), requests(n), &cfg, clock, None).await;
    assert!(recs.iter().all(|r| r.success));
    let offsets = arrival_offsets(n, rate, 1.0, 3).unwrap();
    let sent = b.sent_at.lock().unwrap().clone();
    for (i, t) in sent {
        let late = (t - t0) - offsets[i];
        assert!(
            (-0.002..0.25).contains(&late),
            "request {i} sent {late:.4}s off schedule"
        );
    }
    // Unpaced: everything is released at once.
    let cfg = LoadConfig {
        request_rate: 0.0,
        ..cfg
    };
    let b = sleepy(5);
    let clock = Clock::new();
    let recs = run(b.clone(), requests(n), &cfg, clock, None).await;
    let first = recs
        .iter()
        .map(|r| r.time_points[0])
        .fold(f64::INFINITY, f64::min);
    let last = recs.iter().map(|r| r.time_points[0]).fold(0.0f64, f64::max);
    assert!(last - first < 0.2, "unpaced spread {}", last - first);
}
