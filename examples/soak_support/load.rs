//! The soak: a running server is driven at a chosen concurrency with a random mix of text,
//! image and video chats, streaming and not, vLLM `/generate` streams and clients that hang
//! up mid-request, while `/health` and readiness are polled and the server's RSS is sampled.
//! Afterwards the server's own counters must agree with what the clients saw.
//!
//! Shared by `examples/soak.rs` (long runs, any server) and `tests/soak.rs` (the short CI run).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

pub struct SoakConfig {
    /// `http://host:port` of the server.
    pub base: String,
    pub model: String,
    /// Concurrent clients (2× the server's batch size is "twice capacity").
    pub clients: usize,
    pub duration: Duration,
    /// RSS is sampled only after this much of the run (allocator, caches and pools warm up).
    pub warmup: Duration,
    pub max_tokens: usize,
    /// Whose RSS to sample (`/proc/<pid>/status`); `None`: this process (in-process server).
    pub pid: Option<u32>,
    pub seed: u64,
}

/// What the clients saw, and what the server said before and after.
#[derive(Debug, Default)]
pub struct SoakReport {
    pub sent: u64,
    pub completed: u64,
    /// Requests the client abandoned on purpose (mid-stream or before the answer).
    pub hang_ups: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Connection errors on requests that were not meant to hang up.
    pub transport_errors: Vec<String>,
    /// Streams that ended without their terminator or with an error frame.
    pub broken_streams: Vec<String>,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// (seconds since start, KiB).
    pub rss: Vec<(f64, u64)>,
    /// `/health` and `/v2/health/ready` latencies, milliseconds.
    pub health_ms: Vec<f64>,
    pub health_failures: u64,
    pub before: Counters,
    pub after: Counters,
}

/// The server's request counters (`/metrics`) and free KV blocks (`/metrics-json`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub received: u64,
    pub success: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub rejected: u64,
    pub running: u64,
    pub in_flight: u64,
    pub free_blocks: u64,
}

const KINDS: [&str; 7] = [
    "text-stream",
    "text",
    "image-stream",
    "video",
    "hang-up-mid-stream",
    "hang-up-before-answer",
    "generate-stream",
];

pub async fn run(cfg: &SoakConfig) -> SoakReport {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.clients * 2)
        .build()
        .expect("http client");
    let before = counters(&http, &cfg.base).await;
    let report = Arc::new(Mutex::new(SoakReport {
        before,
        ..Default::default()
    }));
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let (http, report) = (http.clone(), report.clone());
        let (base, model, max_tokens) = (cfg.base.clone(), cfg.model.clone(), cfg.max_tokens);
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_mul(1000).wrapping_add(c as u64));
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let kind = rng.random_range(0..KINDS.len());
                let body = request_body(kind, &model, max_tokens, &mut rng);
                one_request(&http, &base, kind, body, &report).await;
            }
        }));
    }
    // Health and readiness must answer quickly however busy the engine is.
    let health = {
        let (http, report, base) = (http.clone(), report.clone(), cfg.base.clone());
        tokio::spawn(async move {
            while Instant::now() < end {
                for path in ["/health", "/v2/health/ready"] {
                    let t = Instant::now();
                    let ok = http
                        .get(format!("{base}{path}"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    let mut r = report.lock().unwrap();
                    r.health_ms.push(ms);
                    r.health_failures += u64::from(!ok);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let sampler = {
        let (report, pid, warmup) = (report.clone(), cfg.pid, cfg.warmup);
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            while Instant::now() < end {
                if let Some(kib) = rss_kib(pid) {
                    let t = start.elapsed().as_secs_f64();
                    report.lock().unwrap().rss.push((t, kib));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    for t in tasks {
        t.await.expect("client task");
    }
    health.await.expect("health task");
    sampler.await.expect("rss task");
    // Let cancelled requests leave the engine before reading the counters.
    let t0 = Instant::now();
    let mut after = counters(&http, &cfg.base).await;
    while (after.running > 0 || after.in_flight > 0) && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = counters(&http, &cfg.base).await;
    }
    // A last-moment hang-up is counted once its generation notices.
    tokio::time::sleep(Duration::from_millis(300)).await;
    after = counters(&http, &cfg.base).await;
    let mut r = std::mem::take(&mut *report.lock().unwrap());
    r.after = after;
    r
}

fn request_body(kind: usize, model: &str, max_tokens: usize, rng: &mut StdRng) -> Value {
    let n = rng.random_range(1..=max_tokens.max(1));
    let question = format!("Tell me about item {}", rng.random_range(0..1000));
    let content = match KINDS[kind] {
        "image-stream" | "hang-up-before-answer" => json!([
            {"type": "image_url", "image_url": {"url": png_data_url(rng)}},
            {"type": "text", "text": question}
        ]),
        "video" => json!([
            {"type": "video_url", "video_url": {"url": jpeg_frames_url(rng, 4)}},
            {"type": "text", "text": question}
        ]),
        _ => json!(question),
    };
    if KINDS[kind] == "generate-stream" {
        return json!({"prompt": question, "stream": true, "max_tokens": n,
                      "ignore_eos": true, "temperature": 0});
    }
    let stream = matches!(
        KINDS[kind],
        "text-stream" | "image-stream" | "hang-up-mid-stream"
    );
    json!({"model": model, "stream": stream, "max_tokens": n, "ignore_eos": true,
           "temperature": 0.7, "messages": [{"role": "user", "content": content}]})
}

async fn one_request(
    http: &reqwest::Client,
    base: &str,
    kind: usize,
    body: Value,
    report: &Mutex<SoakReport>,
) {
    let name = KINDS[kind];
    let path = if name == "generate-stream" {
        "/generate"
    } else {
        "/v1/chat/completions"
    };
    let mut req = http.post(format!("{base}{path}")).json(&body);
    if name == "hang-up-before-answer" {
        req = req.timeout(Duration::from_millis(30));
    } else {
        req = req.timeout(Duration::from_secs(120));
    }
    {
        let mut r = report.lock().unwrap();
        r.sent += 1;
        *r.by_kind.entry(name).or_default() += 1;
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            let mut r = report.lock().unwrap();
            if name == "hang-up-before-answer" {
                r.hang_ups += 1;
            } else {
                r.transport_errors.push(format!("{name}: {e}"));
            }
            return;
        }
    };
    let status = resp.status().as_u16();
    *report.lock().unwrap().statuses.entry(status).or_default() += 1;
    if status != 200 {
        // The body says why (the verdict fails on any non-200 already; this names the cause).
        let body = resp.text().await.unwrap_or_default();
        let mut r = report.lock().unwrap();
        r.transport_errors.push(format!(
            "{name}: HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        ));
        return;
    }
    let mut bytes = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(c) => bytes.extend_from_slice(&c),
            Err(e) => {
                let mut r = report.lock().unwrap();
                if name == "hang-up-before-answer" {
                    r.hang_ups += 1;
                } else {
                    r.transport_errors.push(format!("{name} body: {e}"));
                }
                return;
            }
        }
        if name == "hang-up-mid-stream" {
            // Drop the stream after its first bytes: the server must cancel the request.
            report.lock().unwrap().hang_ups += 1;
            return;
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let broken = match name {
        "text-stream" | "image-stream" => {
            !text.trim_end().ends_with("data: [DONE]") || text.contains("\"error\"")
        }
        "generate-stream" => {
            let last = text.split('\0').rfind(|s| !s.is_empty());
            last.and_then(|s| serde_json::from_str::<Value>(s).ok())
                .is_none_or(|v| v.get("text").is_none())
        }
        _ => serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["choices"][0]["finish_reason"].as_str().map(str::to_owned))
            .is_none(),
    };
    let mut r = report.lock().unwrap();
    if broken {
        let tail = &text[text.len().saturating_sub(200)..];
        r.broken_streams.push(format!("{name}: …{tail}"));
    } else {
        r.completed += 1;
    }
}

fn png_data_url(rng: &mut StdRng) -> String {
    let (w, h) = (rng.random_range(32..96), rng.random_range(32..96));
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    format!("data:image/png;base64,{b64}")
}

/// A video as a list of JPEG frames (`data:video/jpeg;base64,f1,f2,…`).
fn jpeg_frames_url(rng: &mut StdRng, frames: usize) -> String {
    let shade = rng.random_range(0..200u8);
    let parts: Vec<String> = (0..frames)
        .map(|f| {
            let img = image::RgbImage::from_fn(64, 48, |x, y| {
                image::Rgb([shade + (f as u8) * 10, (x * 3) as u8, (y * 4) as u8])
            });
            let mut jpg = Vec::new();
            image::DynamicImage::ImageRgb8(img)
                .write_to(&mut Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
                .expect("jpeg");
            base64::engine::general_purpose::STANDARD.encode(jpg)
        })
        .collect();
    format!("data:video/jpeg;base64,{}", parts.join(","))
}

/// Resident set size in KiB, from `/proc`.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn counters(http: &reqwest::Client, base: &str) -> Counters {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let metric = |suffix: &str| -> u64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.split(['{', ' '])
                    .next()
                    .is_some_and(|name| name.ends_with(suffix))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    let json: Value = match http.get(format!("{base}/metrics-json")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let free_blocks = json["result"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["metric"][0]["__name__"] == "remainBlocks")
        .and_then(|m| m["value"].as_str()?.parse().ok())
        .unwrap_or(0);
    Counters {
        received: metric("request_received_total"),
        success: metric("request_success_total"),
        failed: metric("request_failed_total"),
        cancelled: metric("request_cancelled_total"),
        rejected: metric("request_rejected_total"),
        running: metric("num_requests_running"),
        in_flight: metric("http_requests_in_flight"),
        free_blocks,
    }
}
