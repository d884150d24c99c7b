//! Whole runs (perf and accuracy) against the fixture peer: request counts, token totals
//! equal to the peer's usage, files written, `--compare`, and the CLI wiring.
//! The real server and the in-process pipeline are measured in `bench_e2e.rs`.

mod bench_peer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bench_peer::PeerConfig;
use qwen3vl::bench::backends::BackendKind;
use qwen3vl::bench::compare::{compare_rows, compare_text};
use qwen3vl::bench::dataset::{DatasetFormat, MediaMode};
use qwen3vl::bench::load::LoadConfig;
use qwen3vl::bench::metrics::default_stats;
use qwen3vl::bench::report::Report;
use qwen3vl::bench::runner::{run_bench, BenchConfig, Mode, Target};
use qwen3vl::service::Settings;

/// A small PNG-looking file (the peer does not decode images).
fn write_image(path: &Path, seed: u8) {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..64).map(|i| i ^ seed));
    std::fs::write(path, bytes).unwrap();
}

fn mm_custom(dir: &Path, n: usize) -> PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let img = dir.join(format!("img{i}.png"));
        write_image(&img, i as u8);
        lines.push_str(
            &serde_json::json!({"type": "image", "path": [img], "question": format!("question {i}?"), "answer": "dakota"})
                .to_string(),
        );
        lines.push('\n');
    }
    let p = dir.join("mm_custom.jsonl");
    std::fs::write(&p, lines).unwrap();
    p
}

fn config(dataset: PathBuf, base_url: &str, out: &Path, name: &str) -> BenchConfig {
    BenchConfig {
        dataset,
        dataset_format: DatasetFormat::Auto,
        mode: Mode::Perf,
        target: Target::Http {
            kind: BackendKind::OpenaiChat,
            base_url: base_url.to_string(),
            api_key: None,
            attempts: 2,
            timeout: Some(Duration::from_secs(20)),
        },
        model: None,
        media: MediaMode::Path,
        num_frames: 5,
        load: LoadConfig {
            concurrency: 2,
            request_rate: 0.0,
            burstiness: 1.0,
            seed: 0,
        },
        num_requests: None,
        warmup: 1,
        max_tokens: 32,
        temperature: 0.0,
        ignore_eos: false,
        stream: true,
        stats: default_stats(),
        output_dir: out.to_path_buf(),
        name: Some(name.to_string()),
        tokenizer: None,
        progress: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf_run_writes_report_and_matches_server_usage() {
    let dir = tempfile::tempdir().unwrap();
    let ds = mm_custom(dir.path(), 6);
    let peer = bench_peer::start(PeerConfig::default()).await;
    let out = dir.path().join("out");
    let mut cfg = config(ds, &peer.base_url, &out, "perf");
    cfg.num_requests = Some(8); // cycles through the 6 samples
    cfg.media = MediaMode::Base64;
    let o = run_bench(&cfg).await.unwrap();

    // Warm-up (1) + measured (8) chat requests; the model name came from /v1/models.
    assert_eq!(peer.requests("/v1/chat/completions").len(), 9);
    assert_eq!(peer.requests("/v1/models").len(), 1);
    let sent = peer.requests("/v1/chat/completions");
    assert_eq!(sent[1].body["model"], "qwen3vl");
    assert!(
        sent[1].body["messages"][0]["content"][0]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );

    let c = &o.report.summary.common;
    assert_eq!(c.total_requests, 8);
    assert_eq!(c.success_requests, 8);
    assert_eq!(c.failed_requests, 0);
    assert_eq!(c.max_concurrency, 2);
    assert_eq!(c.total_input_tokens, 8 * 321);
    assert_eq!(c.total_generated_tokens, 8 * 3);
    assert!(
        c.concurrency > 1.0 && c.concurrency <= 2.0 + 1e-9,
        "{}",
        c.concurrency
    );
    let names: Vec<&str> = o
        .report
        .summary
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "E2EL",
            "TTFT",
            "TPOT",
            "ITL",
            "InputTokens",
            "OutputTokens",
            "OutputTokenThroughput",
            "PrefillTokenThroughput"
        ]
    );
    let ttft = o.report.summary.metric("TTFT").unwrap();
    // The peer waits 30 ms before the first event.
    assert!(ttft.values[1] >= 29.0, "min TTFT {}", ttft.values[1]);
    assert_eq!(o.report.run.model.as_deref(), Some("qwen3vl"));
    assert_eq!(o.records.len(), 8);

    for f in [&o.files.json, &o.files.csv, &o.files.details, &o.files.plot] {
        assert!(f.exists(), "{} missing", f.display());
    }
    assert!(o.files.accuracy.is_none());
    let back = Report::read(&o.files.json).unwrap();
    assert_eq!(back.run, o.report.run);
    assert_eq!(back.summary.common.total_generated_tokens, 24);
    for (x, y) in back.summary.metrics.iter().zip(&o.report.summary.metrics) {
        assert_eq!(x.name, y.name);
        for (u, v) in x.values.iter().zip(&y.values) {
            assert!((u - v).abs() <= 1e-9 * v.abs().max(1.0));
        }
    }
    let csv = std::fs::read_to_string(&o.files.csv).unwrap();
    assert!(csv.starts_with("Performance Parameters,Stage,Average,Min,Max,Median,P75,P90,P99,N\n"));
    assert!(csv.contains("\nTTFT,total,"));
    assert!(csv.contains("Total Generated Tokens,total,24"));
    let details = std::fs::read_to_string(&o.files.details).unwrap();
    assert_eq!(details.lines().count(), 8);
    let first: serde_json::Value = serde_json::from_str(details.lines().next().unwrap()).unwrap();
    assert_eq!(first["prediction"], "Dakota Digital camera");
    assert_eq!(first["metrics"]["output_tokens"], 3);
    let svg = std::fs::read_to_string(&o.files.plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("TTFT (ms)") && svg.contains("E2EL (ms)"));
    assert!(o.text.contains("Performance Parameters"));
    assert!(o.text.contains("Request Throughput"));
}

fn textvqa(dir: &Path) -> PathBuf {
    let json_dir = dir.join("textvqa_json");
    let img_dir = dir.join("train_images");
    std::fs::create_dir_all(&json_dir).unwrap();
    std::fs::create_dir_all(&img_dir).unwrap();
    let mut two = vec!["2", "2"];
    two.extend(["4"; 8]);
    let qs: Vec<(u64, &str, Vec<&str>)> = vec![
        (1, "what brand", vec!["dakota"; 10]),
        (2, "how many", two),
        (3, "what color", vec!["blue"; 10]),
        (4, "FAIL this one", vec!["x"; 10]),
    ];
    let mut lines = String::new();
    let mut anns = Vec::new();
    for (id, q, answers) in &qs {
        let img = img_dir.join(format!("{id}.jpg"));
        write_image(&img, *id as u8);
        lines.push_str(
            &serde_json::json!({"question_id": id, "image": img, "question": q}).to_string(),
        );
        lines.push('\n');
        let answers: Vec<_> = answers
            .iter()
            .enumerate()
            .map(|(i, a)| serde_json::json!({"answer": a, "answer_id": i + 1}))
            .collect();
        anns.push(serde_json::json!({"question_id": id, "answers": answers}));
    }
    std::fs::write(json_dir.join("textvqa_val.jsonl"), lines).unwrap();
    std::fs::write(
        json_dir.join("textvqa_val_annotations.json"),
        serde_json::json!({"annotations": anns}).to_string(),
    )
    .unwrap();
    json_dir.join("textvqa_val.jsonl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accuracy_run_scores_fixed_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let ds = textvqa(dir.path());
    let peer = bench_peer::start(PeerConfig {
        answer: Arc::new(|q: &str| {
            if q.starts_with("what brand") {
                "Dakota."
            } else if q.starts_with("how many") {
                "Two"
            } else {
                "red"
            }
            .to_string()
        }),
        ..PeerConfig::default()
    })
    .await;
    let out = dir.path().join("out");
    let mut cfg = config(ds, &peer.base_url, &out, "acc");
    cfg.mode = Mode::All;
    cfg.warmup = 0;
    cfg.model = Some("qwen3vl".into());
    let o = run_bench(&cfg).await.unwrap();
    let a = o.report.accuracy.as_ref().unwrap();
    // Scores 1, 0.6, 0, and 0 for the failed request.
    assert!((a.accuracy - 40.0).abs() < 1e-9, "{}", a.accuracy);
    assert_eq!(a.questions, 4);
    assert_eq!(a.correct, 2);
    assert_eq!(a.failed, 1);
    assert_eq!(o.report.summary.common.failed_requests, 1);
    assert_eq!(o.report.summary.failures[0].sample_id, "4");
    assert!(o.report.summary.failures[0].reason.contains("422"));
    // The TextVQA prompt template is used.
    let sent = peer.requests("/v1/chat/completions");
    assert!(sent
        .iter()
        .any(|s| s.body["messages"][0]["content"][1]["text"]
            == "what brand Answer the question using a single word or phrase."));
    let acc_file = o.files.accuracy.as_ref().unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(acc_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["sample_id"], "1");
    assert_eq!(lines[0]["normalized"], "dakota");
    assert_eq!(lines[0]["score"], 1.0);
    assert_eq!(lines[1]["normalized"], "2");
    assert!((lines[1]["score"].as_f64().unwrap() - 0.6).abs() < 1e-12);
    assert_eq!(lines[1]["answers"].as_array().unwrap().len(), 10);
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("request failed"));
    assert!(o.text.contains("Accuracy (VQA): 40 over 4 questions"));

    // Accuracy mode needs answers.
    let plain = mm_custom(dir.path(), 2);
    std::fs::write(
        &plain,
        r#"{"type": "image", "path": ["img0.png"], "question": "q"}"#,
    )
    .unwrap();
    let mut cfg2 = config(plain, &peer.base_url, &out, "noans");
    cfg2.mode = Mode::All;
    assert!(run_bench(&cfg2).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_failure_modes() {
    let dir = tempfile::tempdir().unwrap();
    let ds = mm_custom(dir.path(), 3);
    let fast = bench_peer::start(PeerConfig {
        first_delay: Duration::from_millis(10),
        ..PeerConfig::default()
    })
    .await;
    let slow = bench_peer::start(PeerConfig {
        first_delay: Duration::from_millis(60),
        ..PeerConfig::default()
    })
    .await;
    let out = dir.path().join("out");
    let a = run_bench(&config(ds.clone(), &fast.base_url, &out, "a"))
        .await
        .unwrap();
    let mut cfg_b = config(ds.clone(), &slow.base_url, &out, "b");
    cfg_b.stream = false;
    let b = run_bench(&cfg_b).await.unwrap();
    assert!(b.report.summary.metric("TTFT").is_none());
    let rows = compare_rows(&a.report, &b.report);
    let ttft_avg = rows
        .iter()
        .find(|r| r.metric == "TTFT" && r.stat == "Average")
        .unwrap();
    assert!(ttft_avg.a.is_some() && ttft_avg.b.is_none() && ttft_avg.ratio().is_none());
    let e2el = rows
        .iter()
        .find(|r| r.metric == "E2EL" && r.stat == "Median")
        .unwrap();
    assert!(e2el.ratio().unwrap() > 1.0);
    let text = compare_text(&a.report, &b.report);
    assert!(text.contains("B/A") && text.contains("Total Requests"));

    // Every request failing is an error naming the reason, with the details still written.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"type": "image", "path": ["img0.png"], "question": "FAIL"}"#,
    )
    .unwrap();
    let err = run_bench(&config(bad, &fast.base_url, &out, "bad"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("all 1 requests failed") && err.contains("422"),
        "{err}"
    );
    assert!(out.join("bad_details.jsonl").exists());

    // In-process mode on a folder without a checkpoint: an error naming the folder, no files.
    let mut cfg = config(ds, &fast.base_url, &out, "inproc");
    cfg.target = Target::InProcess {
        settings: Box::new(Settings {
            model_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }),
    };
    let err = run_bench(&cfg).await.unwrap_err().to_string();
    assert!(
        err.starts_with("in-process pipeline for ")
            && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(!out.join("inproc.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_and_compares() {
    let dir = tempfile::tempdir().unwrap();
    let ds = mm_custom(dir.path(), 3);
    let peer = bench_peer::start(PeerConfig::default()).await;
    let out = dir.path().join("out");
    let exe = env!("CARGO_BIN_EXE_qwen3vl");
    let run = |name: &'static str, extra: Vec<String>| {
        let mut args: Vec<String> = vec![
            "bench".into(),
            "--dataset".into(),
            ds.display().to_string(),
            "--url".into(),
            peer.base_url.clone(),
            "--output-dir".into(),
            out.display().to_string(),
            "--name".into(),
            name.into(),
            "--quiet".into(),
            "--concurrency".into(),
            "2".into(),
        ];
        args.extend(extra);
        tokio::task::spawn_blocking({
            let exe = exe.to_string();
            move || std::process::Command::new(exe).args(args).output().unwrap()
        })
    };
    let a = run("cli_a", vec![]).await.unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let stdout = String::from_utf8_lossy(&a.stdout);
    assert!(
        stdout.contains("Performance Parameters") && stdout.contains("TTFT"),
        "{stdout}"
    );
    let b = run(
        "cli_b",
        vec![
            "--request-rate".into(),
            "20".into(),
            "--stats".into(),
            "Average,P50".into(),
        ],
    )
    .await
    .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let cmp = std::process::Command::new(exe)
        .args(["bench", "--compare"])
        .arg(out.join("cli_a.json"))
        .arg(out.join("cli_b.json"))
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stderr)
    );
    let text = String::from_utf8_lossy(&cmp.stdout);
    assert!(text.contains("A: cli_a") && text.contains("B/A"), "{text}");
    // Bad input: a clear error, not a panic.
    let bad = std::process::Command::new(exe)
        .args([
            "bench",
            "--dataset",
            "/nonexistent/x.jsonl",
            "--url",
            &peer.base_url,
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.starts_with("error: /nonexistent/x.jsonl"), "{err}");
}

/// A word-level tokenizer.json, for the fallback token count.
fn tiny_tokenizer(dir: &Path) -> PathBuf {
    let t = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "Dakota": 1, "Digital": 2, "camera": 3}, "unk_token": "[UNK]"}
    });
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, t.to_string()).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_without_usage_counts_tokens_with_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let ds = mm_custom(dir.path(), 2);
    let peer = bench_peer::start(PeerConfig::default()).await;
    let out = dir.path().join("out");
    let mut cfg = config(ds, &peer.base_url, &out, "gen");
    cfg.target = Target::Http {
        kind: BackendKind::VllmGenerate,
        base_url: peer.base_url.clone(),
        api_key: None,
        attempts: 1,
        timeout: None,
    };
    // No usage and no tokenizer: OutputTokens are 0, as in AISBench.
    let o = run_bench(&cfg).await.unwrap();
    assert_eq!(o.report.summary.common.total_generated_tokens, 0);
    assert_eq!(o.report.summary.common.success_requests, 2);
    assert!(peer.requests("/v1/models").is_empty());
    // With a tokenizer: "Dakota Digital camera" is 3 tokens.
    cfg.tokenizer = Some(tiny_tokenizer(dir.path()));
    let o = run_bench(&cfg).await.unwrap();
    assert_eq!(o.report.summary.common.total_generated_tokens, 6);
    assert_eq!(o.report.summary.common.total_input_tokens, 0); // multimodal, no usage
                                                               // A broken tokenizer file is a clear error.
    std::fs::write(dir.path().join("tokenizer.json"), "{").unwrap();
    let err = run_bench(&cfg).await.unwrap_err().to_string();
    assert!(err.starts_with("tokenizer "), "{err}");
}
