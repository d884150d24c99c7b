//! Load test for a running `qwen3vl serve`: N concurrent clients send a fixed number of
//! streaming chat requests (optionally with an image) and the latency percentiles are printed.
//!
//! ```text
//! cargo run --release --example load_test -- --url http://127.0.0.1:1025 \
//!     --clients 4 --requests 32 --max-tokens 32 [--image] [--no-stream]
//! ```
//!
//! TTFT is the time to the first SSE event carrying content (MindIE sends the role chunk with
//! the first token, so this is the first event); E2E is the time to `data: [DONE]`; TPOT is
//! (E2E − TTFT) / (completion tokens − 1), as AISBench computes them.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

struct Args {
    url: String,
    clients: usize,
    requests: usize,
    max_tokens: usize,
    image: bool,
    stream: bool,
    model: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:1025".into(),
        clients: 4,
        requests: 32,
        max_tokens: 32,
        image: false,
        stream: true,
        model: "qwen3vl".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = val(),
            "--clients" => a.clients = val().parse().expect("--clients N"),
            "--requests" => a.requests = val().parse().expect("--requests N"),
            "--max-tokens" => a.max_tokens = val().parse().expect("--max-tokens N"),
            "--model" => a.model = val(),
            "--image" => a.image = true,
            "--no-stream" => a.stream = false,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A 320×240 gradient PNG as a data URL (made here, so the test needs no files).
fn image_url() -> String {
    use base64::Engine;
    let img = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .expect("png");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
    )
}

#[derive(Default, Clone)]
struct Sample {
    ttft: f64,
    e2e: f64,
    tokens: u64,
    prompt_tokens: u64,
}

async fn one(
    c: &reqwest::Client,
    a: &Args,
    i: usize,
    img: &Option<String>,
) -> Result<Sample, String> {
    let mut content = vec![
        json!({"type": "text", "text": format!("Request {i}: describe what you see in detail.")}),
    ];
    if let Some(u) = img {
        content.insert(0, json!({"type": "image_url", "image_url": {"url": u}}));
    }
    let body = json!({"model": a.model, "stream": a.stream, "max_tokens": a.max_tokens,
                      "ignore_eos": true, "temperature": 0.7, "seed": i,
                      "messages": [{"role": "user", "content": content}]});
    let t0 = Instant::now();
    let r = c
        .post(format!("{}/v1/chat/completions", a.url))
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!(
            "{}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    let mut s = Sample::default();
    if !a.stream {
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        s.e2e = t0.elapsed().as_secs_f64();
        s.tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        s.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        return Ok(s);
    }
    let mut stream = r.bytes_stream();
    let mut buf = String::new();
    let mut done = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if s.ttft == 0.0 {
            s.ttft = t0.elapsed().as_secs_f64();
        }
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let ev: String = buf.drain(..end + 2).collect();
            let Some(data) = ev.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).map_err(|e| format!("{e}: {data}"))?;
            if v.get("error").is_some() {
                return Err(data.to_string());
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                s.tokens = u["completion_tokens"].as_u64().unwrap_or(0);
                s.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
            }
        }
    }
    s.e2e = t0.elapsed().as_secs_f64();
    if !done {
        return Err("stream ended without [DONE]".into());
    }
    Ok(s)
}

fn percentiles(name: &str, unit_ms: bool, mut v: Vec<f64>) {
    if v.is_empty() {
        return;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // Linear interpolation, as numpy.percentile (AISBench / vLLM bench).
    let p = |q: f64| {
        let pos = q / 100.0 * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let scale = if unit_ms { 1000.0 } else { 1.0 };
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{name:<22} mean {:>9.1}  p50 {:>9.1}  p90 {:>9.1}  p99 {:>9.1}  max {:>9.1}{}",
        mean * scale,
        p(50.0) * scale,
        p(90.0) * scale,
        p(99.0) * scale,
        v[v.len() - 1] * scale,
        if unit_ms { "  (ms)" } else { "" }
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = std::sync::Arc::new(parse_args());
    let img = std::sync::Arc::new(a.image.then(image_url));
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .pool_max_idle_per_host(a.clients)
        .build()
        .expect("client");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..a.clients)
        .map(|_| {
            let (a, c, img, next) = (a.clone(), c.clone(), img.clone(), next.clone());
            async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= a.requests {
                        return out;
                    }
                    out.push(one(&c, &a, i, &img).await);
                }
            }
        })
        .collect();
    let results: Vec<_> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    let (ok, errs): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    let ok: Vec<Sample> = ok.into_iter().map(Result::unwrap).collect();
    println!(
        "requests {}  ok {}  errors {}  clients {}  max_tokens {}  image {}  stream {}",
        a.requests,
        ok.len(),
        errs.len(),
        a.clients,
        a.max_tokens,
        a.image,
        a.stream
    );
    for e in errs.iter().take(5) {
        println!("error: {}", e.as_ref().err().unwrap());
    }
    let tokens: u64 = ok.iter().map(|s| s.tokens).sum();
    println!(
        "wall {wall:.1}s  request throughput {:.2} req/s  output {:.1} tok/s  prompt tokens/request {:.0}",
        ok.len() as f64 / wall,
        tokens as f64 / wall,
        ok.iter().map(|s| s.prompt_tokens).sum::<u64>() as f64 / ok.len().max(1) as f64
    );
    if a.stream {
        percentiles("TTFT", true, ok.iter().map(|s| s.ttft).collect());
        percentiles(
            "TPOT",
            true,
            ok.iter()
                .filter(|s| s.tokens > 1)
                .map(|s| (s.e2e - s.ttft) / (s.tokens - 1) as f64)
                .collect(),
        );
    }
    percentiles("E2E", true, ok.iter().map(|s| s.e2e).collect());
    if !errs.is_empty() {
        std::process::exit(1);
    }
}
