//! Server behaviour under load and over its lifetime: the maxLinkNum queue and its 503, HTTPS
//! with a certificate made at test time, and the real binary reading a MindIE config.json and
//! stopping gracefully on SIGTERM (exit 0, in-flight stream completed, new requests refused),
//! and the shutdown deadline giving every request still running a proper ending.

mod service_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qwen3vl::service::Server;
use serde_json::{json, Value};
use service_support::*;

fn long_stream(tokens: usize) -> Value {
    json!({"model": "qwen3vl", "stream": true, "max_tokens": tokens, "ignore_eos": true,
           "temperature": 0, "messages": [{"role": "user", "content": "Count to a million"}]})
}

#[tokio::test]
async fn max_link_num_queues_then_rejects_quickly() {
    let mut s = settings();
    s.max_link_num = Some(1);
    s.max_iter_times = Some(2000);
    let server = Server::start(config(s), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    // One request holds the only slot (it streams 1500 tokens), two wait for it.
    let first = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(1500))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let queued: Vec<_> = (0..2)
        .map(|_| {
            let (c, base) = (c.clone(), base.clone());
            tokio::spawn(async move {
                let r = c
                    .post(format!("{base}/v1/chat/completions"))
                    .json(&long_stream(2))
                    .send()
                    .await
                    .unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            })
        })
        .collect();
    // Wait until both are counted in the queue, then the 4th is refused at once.
    let t0 = Instant::now();
    while server.state().links.stats().queued < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "queue never filled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        t.elapsed()
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "Service Unavailable");
    // Readiness says busy meanwhile.
    assert_eq!(
        c.get(format!("{base}/v2/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        c.get(format!("{base}/v2/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Finishing the first lets the queued ones through.
    let (frames, done) = sse_json(&first.text().await.unwrap());
    assert!(done);
    assert_eq!(frames.last().unwrap()["usage"]["completion_tokens"], 1500);
    for q in queued {
        let (status, body) = q.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    server.stop().unwrap();
}

#[tokio::test]
async fn https_with_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key.pem"),
    );
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut s = settings();
    s.https = Some(true);
    s.tls_cert = Some(cert_path);
    s.tls_key = Some(key_path);
    let server = Server::start(config(s), false).unwrap();
    let port = server.local_addr().port();
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.local_addr())
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = c
        .post(format!("https://localhost:{port}/v1/chat/completions"))
        .json(&json!({"model": "qwen3vl", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    // Plain HTTP to the TLS port gets no successful answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answered = plain
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(!answered);
    server.stop().unwrap();
}

/// The binary with a MindIE config.json: serves, reports ignored fields, and on SIGTERM lets
/// the in-flight stream finish, refuses new work, and exits 0.
#[test]
fn binary_reads_mindie_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = json!({
        "Version": "1.0.0",
        "ServerConfig": {"ipAddress": "127.0.0.1", "port": 1025, "httpsEnabled": false,
                         "maxLinkNum": 10, "npuUsageThreshold": 0, "interCommPort": 1121,
                         "tokenTimeout": 600, "e2eTimeout": 600},
        "BackendConfig": {
            "npuDeviceIds": [[0, 1]], "tokenizerProcessNumber": 2,
            "ModelDeployConfig": {"maxSeqLen": 4096, "maxInputTokenLen": 2048, "truncation": false,
                "ModelConfig": [{"modelName": "qwen3vl", "modelWeightPath": tiny_model(), "worldSize": 2, "npuMemSize": 0.1}]},
            "ScheduleConfig": {"cacheBlockSize": 16, "maxBatchSize": 8, "maxPrefillBatchSize": 8,
                               "maxPrefillTokens": 4096, "maxIterTimes": 2000, "maxQueueDelayMicroseconds": 5000}
        }
    });
    let cfg_path = dir.path().join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .args([
            "--port",
            "0",
            "--shutdown-timeout",
            "20",
            "--http-workers",
            "2",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    let ignored = log
        .iter()
        .find(|l| l.contains("accepted and ignored"))
        .cloned()
        .unwrap_or_default();
    assert!(
        ignored.contains("npuDeviceIds") && ignored.contains("worldSize"),
        "{log:?}"
    );
    // Keep draining stderr so the server never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let base = format!("http://{addr}");
        let r = c
            .post(format!("{base}/v1/chat/completions"))
            .json(&long_stream(600))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        use futures::StreamExt;
        let first = body.next().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("data:"));
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        // New connections are refused, or answered 503, while the stream goes on.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fresh = reqwest::Client::new()
            .get(format!("{base}/health"))
            .send()
            .await;
        assert!(fresh.map(|r| r.status().as_u16() == 503).unwrap_or(true));
        let mut rest = first.to_vec();
        while let Some(chunk) = body.next().await {
            rest.extend_from_slice(&chunk.unwrap());
        }
        let (frames, done) = sse_json(&String::from_utf8_lossy(&rest));
        assert!(done, "in-flight stream finished");
        assert_eq!(frames.last().unwrap()["usage"]["completion_tokens"], 600);
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let tail = drain.join().unwrap();
    assert!(status.success(), "exit {status:?}: {tail:?}");
    assert!(tail.iter().any(|l| l.contains("SIGTERM")), "{tail:?}");
}

/// `e2eTimeout`: a request that runs past it ends with MindIE's "Engine callback timeout"
/// (500 before any output; plain text at the end of a stream that has started), and the
/// server keeps serving.
#[tokio::test]
async fn e2e_timeout_ends_requests() {
    let mut s = settings();
    s.e2e_timeout_s = Some(1);
    s.max_iter_times = Some(4000);
    let server = Server::start(config(s), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let mut body = long_stream(4000);
    body["stream"] = json!(false);
    let t = Instant::now();
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(t.elapsed() < Duration::from_secs(10));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_type"], "Incomplete Generation");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Engine callback timeout"),
        "{v}"
    );
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(4000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("e2eTimeout of 1s"),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    assert!(!text.contains("[DONE]"));
    // The timed-out requests were cancelled: their blocks come back.
    let t0 = Instant::now();
    while server.state().pipeline.stats().running > 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = server.state().pipeline.stats();
    assert_eq!(st.free_blocks, st.total_blocks, "{st:?}");
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().unwrap();
}

/// A checkpoint without a tokenizer: text and chat requests get 424 (MindIE's "Generation
/// Error": the request cannot be turned into an inference request); token-id requests work.
#[tokio::test]
async fn no_tokenizer_gives_424_but_token_ids_work() {
    let dir = tempfile::tempdir().unwrap();
    qwen3vl::tools::random_checkpoint::write_random_checkpoint(
        qwen3vl::tools::random_checkpoint::Arch::Tiny,
        Some(1),
        dir.path(),
        3,
    )
    .unwrap();
    let mut s = settings();
    s.model_dir = Some(dir.path().to_path_buf());
    let server = Server::start(config(s), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(2))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 424);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error_type"],
        "Generation Error"
    );
    let r = c
        .post(format!("{base}/generate"))
        .json(&json!({"prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 424);
    let v: Value = c
        .post(format!("{base}/infer"))
        .json(&json!({"input_id": [1, 2, 3], "parameters": {"max_new_tokens": 3, "details": true}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["details"]["generated_token_ids"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{v}"
    );
    server.stop().unwrap();
}

/// A client that hangs up on a non-streaming request (nothing sent yet, so actix-web cannot
/// notice by writing) still cancels it: the handler watches the connection.
#[tokio::test]
async fn hang_up_cancels_non_stream_requests() {
    let mut s = settings();
    s.max_iter_times = Some(4000);
    let server = Server::start(config(s), false).unwrap();
    let base = format!("http://{}", server.local_addr());
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(600))
        .build()
        .unwrap();
    let mut body = long_stream(4000);
    body["stream"] = json!(false);
    let r = impatient
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await;
    assert!(r.is_err(), "4000 tokens finished within 600 ms?");
    let t0 = Instant::now();
    loop {
        let st = server.state().pipeline.stats();
        let cancelled = server
            .state()
            .metrics
            .cancelled
            .load(std::sync::atomic::Ordering::Relaxed);
        if cancelled == 1 && st.running == 0 && st.free_blocks == st.total_blocks {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "still generating: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().unwrap();
}

/// The shutdown deadline: requests still running when it comes each get a proper ending — a
/// 503 naming the shutdown for a non-streaming request, an error frame then `[DONE]` on an
/// OpenAI stream, an error object on a vLLM `/generate` stream — and their blocks come back.
#[tokio::test]
async fn shutdown_deadline_ends_every_request_properly() {
    let mut s = settings();
    s.shutdown_timeout_s = Some(1);
    s.max_iter_times = Some(4000);
    let server = Server::start(config(s), false).unwrap();
    let state = server.state().clone();
    let base = format!("http://{}", server.local_addr());
    let c = reqwest::Client::new();
    let stream = c
        .post(format!("{base}/v1/chat/completions"))
        .json(&long_stream(4000))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut whole = long_stream(4000);
    whole["stream"] = json!(false);
    let non_stream = tokio::spawn(
        c.post(format!("{base}/v1/chat/completions"))
            .json(&whole)
            .send(),
    );
    let generate = c
        .post(format!("{base}/generate"))
        .json(
            &json!({"prompt": "Count to a million", "stream": true, "max_tokens": 4000,
                      "ignore_eos": true, "temperature": 0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(generate.status(), 200);
    let t0 = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || server.stop());
    let chat = stream.text().await.unwrap();
    let (frames, done) = sse_json(&chat);
    let last = frames.last().unwrap();
    assert!(
        last["error"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{last}"
    );
    assert!(done, "no [DONE] after the shutdown error");
    let r = non_stream.await.unwrap().unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("shutdown deadline"),
        "{v}"
    );
    let gen = generate.text().await.unwrap();
    let objects: Vec<Value> = gen
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    let last = objects.last().unwrap();
    assert!(
        last["error"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{last}"
    );
    stopped.await.unwrap().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(
        state
            .metrics
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    let t0 = Instant::now();
    loop {
        let st = state.pipeline.stats();
        if st.running == 0 && st.free_blocks == st.total_blocks {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The real binary with `--shutdown-timeout 1` and a stream still running at the deadline:
/// the stream ends with the shutdown error and `[DONE]`, and the process exits 0.
#[test]
fn binary_exits_zero_after_ending_streams_at_the_deadline() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .arg("serve")
        .arg("--model")
        .arg(tiny_model())
        .args([
            "--port",
            "0",
            "--shutdown-timeout",
            "1",
            "--max-seq-len",
            "4096",
        ])
        .args(["--max-iter-times", "4000", "--http-workers", "2"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited early").unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&long_stream(4000))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        r.text().await.unwrap()
    });
    let (frames, done) = sse_json(&text);
    let last = frames.last().unwrap();
    assert!(
        last["error"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{last}"
    );
    assert!(done);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "server did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let tail = drain.join().unwrap();
    assert!(status.success(), "exit {status:?}: {tail:?}");
}
