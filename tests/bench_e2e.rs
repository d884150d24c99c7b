//! `qwen3vl bench` end to end: a synthetic mm_custom dataset with images drawn at test time,
//! measured against the real server (tiny random checkpoint, real tokenizer) in perf mode
//! (streaming) and accuracy mode (non-streaming), then through the library pipeline in-process
//! on the same checkpoint, from the API and from the command line. Checked: request counts, no
//! failures, output lengths equal to `max_tokens` (ignore_eos), token totals equal to what the
//! server itself counted, in-process prompt lengths equal to the server's, and report files
//! that parse.

mod service_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use qwen3vl::bench::backends::BackendKind;
use qwen3vl::bench::dataset::{DatasetFormat, MediaMode};
use qwen3vl::bench::load::LoadConfig;
use qwen3vl::bench::metrics::default_stats;
use qwen3vl::bench::report::Report;
use qwen3vl::bench::runner::{run_bench, BenchConfig, Mode, RunOutcome, Target};
use qwen3vl::service::{Server, Settings};
use serde_json::Value;
use service_support::{config, settings, tiny_model};

/// Output tokens per request: enough for several inter-token gaps, few enough to be quick.
const MAX_TOKENS: u32 = 6;

/// Sizes (and formats) of the dataset's images; the two-image sample uses the first two.
const IMAGES: [(u32, u32, image::ImageFormat); 5] = [
    (64, 64, image::ImageFormat::Png),
    (96, 80, image::ImageFormat::Jpeg),
    (128, 96, image::ImageFormat::Png),
    (72, 128, image::ImageFormat::Jpeg),
    (112, 112, image::ImageFormat::Png),
];

fn write_image(path: &Path, w: u32, h: u32, format: image::ImageFormat, seed: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 3 + seed) as u8,
            (y * 5) as u8,
            ((x ^ y) + seed * 40) as u8,
        ])
    });
    img.save_with_format(path, format).expect("image written");
}

/// Six mm_custom samples: five single images of different sizes, one with two images (last, so
/// the warm-up request, which repeats sample 0, has a single image).
fn write_dataset(dir: &Path) -> (PathBuf, Vec<Vec<PathBuf>>) {
    let mut files = Vec::new();
    for (i, &(w, h, format)) in IMAGES.iter().enumerate() {
        let ext = if format == image::ImageFormat::Png {
            "png"
        } else {
            "jpg"
        };
        let p = dir.join(format!("img{i}.{ext}"));
        write_image(&p, w, h, format, i as u32);
        files.push(p);
    }
    let mut samples: Vec<Vec<PathBuf>> = files.iter().map(|f| vec![f.clone()]).collect();
    samples.push(vec![files[0].clone(), files[1].clone()]);
    let mut lines = String::new();
    for (i, paths) in samples.iter().enumerate() {
        let line = serde_json::json!({
            "type": "image",
            "path": paths,
            "question": format!("What is shown in picture {i}?"),
            "answer": if i % 2 == 0 { "dakota" } else { "camera" },
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let path = dir.join("mm_custom.jsonl");
    std::fs::write(&path, lines).expect("dataset written");
    (path, samples)
}

fn bench_config(dataset: &Path, target: Target, out: &Path, name: &str) -> BenchConfig {
    BenchConfig {
        dataset: dataset.to_path_buf(),
        dataset_format: DatasetFormat::Auto,
        mode: Mode::Perf,
        target,
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
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        ignore_eos: true,
        stream: true,
        stats: default_stats(),
        output_dir: out.to_path_buf(),
        name: Some(name.to_string()),
        tokenizer: None,
        progress: false,
    }
}

/// What every successful run must show: all `n` requests succeeded with `MAX_TOKENS` output
/// tokens each and a prompt count, the totals are the per-request sums, and the files parse.
fn check_run(o: &RunOutcome, n: usize, stream: bool) {
    let c = &o.report.summary.common;
    assert_eq!(
        (c.total_requests, c.success_requests, c.failed_requests),
        (n, n, 0),
        "{:?}",
        o.report.summary.failures
    );
    assert_eq!(o.records.len(), n);
    for r in &o.records {
        assert!(r.success, "{:?}", r.error);
        assert_eq!(r.usage.completion_tokens, Some(u64::from(MAX_TOKENS)));
        assert!(r.usage.prompt_tokens.unwrap_or(0) > 0, "{r:?}");
    }
    // Two slots kept busy by unpaced requests: the measured concurrency is close to 2.
    assert!(
        c.concurrency > 1.0 && c.concurrency <= 2.0 + 1e-9,
        "concurrency {}",
        c.concurrency
    );
    let input: u64 = o.records.iter().filter_map(|r| r.usage.prompt_tokens).sum();
    assert_eq!(c.total_input_tokens, input);
    assert_eq!(c.total_generated_tokens, n as u64 * u64::from(MAX_TOKENS));
    let with_n = |name: &str| o.report.summary.metric(name).map(|m| m.n);
    assert_eq!(with_n("E2EL"), Some(n));
    if stream {
        assert_eq!(with_n("TTFT"), Some(n));
        assert_eq!(with_n("TPOT"), Some(n));
    }

    // JSON: the same report back (floats to the last digit or so: serde_json's parser rounds).
    let back = Report::read(&o.files.json).expect("report parses");
    assert_eq!(back.run, o.report.run);
    assert_eq!(back.accuracy, o.report.accuracy);
    let c2 = &back.summary.common;
    assert_eq!(
        (
            c2.total_requests,
            c2.total_input_tokens,
            c2.total_generated_tokens
        ),
        (
            c.total_requests,
            c.total_input_tokens,
            c.total_generated_tokens
        )
    );
    assert_eq!(back.summary.metrics.len(), o.report.summary.metrics.len());
    for (a, b) in back.summary.metrics.iter().zip(&o.report.summary.metrics) {
        assert_eq!((&a.name, a.n), (&b.name, b.n));
        for (x, y) in a.values.iter().zip(&b.values) {
            assert!(
                (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                "{}: {x} vs {y}",
                a.name
            );
        }
    }
    // CSV: the AISBench header, then one row per metric and per common metric.
    let csv = std::fs::read_to_string(&o.files.csv).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("Performance Parameters,Stage,"),
        "{csv}"
    );
    let cols = lines[0].split(',').count();
    let e2el = lines
        .iter()
        .find(|l| l.starts_with("E2EL,"))
        .expect("E2EL row");
    assert_eq!(e2el.split(',').count(), cols, "{e2el}");
    assert!(csv.contains(&format!("Total Requests,total,{n}")), "{csv}");
    // Details: one parsable line per request, carrying its metrics.
    let details = std::fs::read_to_string(&o.files.details).expect("details");
    let details: Vec<Value> = details
        .lines()
        .map(|l| serde_json::from_str(l).expect("details line parses"))
        .collect();
    assert_eq!(details.len(), n);
    for d in &details {
        assert_eq!(d["metrics"]["output_tokens"], u64::from(MAX_TOKENS));
    }
    let svg = std::fs::read_to_string(&o.files.plot).expect("plot");
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
}

/// Prompt tokens per dataset sample, from the records of a run over the whole dataset.
fn prompt_tokens(o: &RunOutcome) -> Vec<u64> {
    let mut recs: Vec<_> = o.records.iter().collect();
    recs.sort_by_key(|r| r.index);
    recs.iter()
        .map(|r| r.usage.prompt_tokens.unwrap_or(0))
        .collect()
}

fn server_counts(s: &Server) -> (u64, u64) {
    let m = &s.state().metrics;
    (
        m.prompt_tokens.load(Ordering::Relaxed),
        m.generation_tokens.load(Ordering::Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_in_process_runs_agree_with_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, samples) = write_dataset(dir.path());
    let n = samples.len();
    let out = dir.path().join("out");
    let server_settings = Settings {
        media_root: Some(dir.path().to_path_buf()),
        ..settings()
    };
    let server = Server::start(config(server_settings), false).expect("server starts");
    let http = Target::Http {
        kind: BackendKind::OpenaiChat,
        base_url: format!("http://{}", server.local_addr()),
        api_key: None,
        // One attempt: a retried request would be counted twice by the server.
        attempts: 1,
        timeout: Some(Duration::from_secs(60)),
    };

    // Perf mode, streaming, one warm-up request (sample 0) before the six measured ones.
    let before = server_counts(&server);
    let perf = run_bench(&bench_config(&dataset, http.clone(), &out, "perf"))
        .await
        .expect("perf run");
    let after = server_counts(&server);
    check_run(&perf, n, true);
    assert_eq!(perf.report.run.model.as_deref(), Some("qwen3vl"));
    let http_prompts = prompt_tokens(&perf);
    // The server counted the warm-up too: the same prompt as measured sample 0.
    let c = &perf.report.summary.common;
    assert_eq!(after.0 - before.0, c.total_input_tokens + http_prompts[0]);
    assert_eq!(
        after.1 - before.1,
        c.total_generated_tokens + u64::from(MAX_TOKENS)
    );
    // Both images of the last sample reached the model.
    assert!(
        http_prompts[n - 1] > http_prompts[0] && http_prompts[n - 1] > http_prompts[1],
        "{http_prompts:?}"
    );
    // Streaming: a role chunk, content chunks and a usage chunk after tp[0].
    assert!(perf.records.iter().all(|r| r.time_points.len() >= 3));

    // Accuracy mode, non-streaming, no warm-up.
    let mut acc_cfg = bench_config(&dataset, http, &out, "accuracy");
    acc_cfg.mode = Mode::All;
    acc_cfg.stream = false;
    acc_cfg.warmup = 0;
    let before = server_counts(&server);
    let acc = run_bench(&acc_cfg).await.expect("accuracy run");
    let after = server_counts(&server);
    check_run(&acc, n, false);
    let c = &acc.report.summary.common;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (c.total_input_tokens, c.total_generated_tokens)
    );
    assert_eq!(prompt_tokens(&acc), http_prompts);
    let a = acc.report.accuracy.as_ref().expect("accuracy result");
    assert!((0.0..=100.0).contains(&a.accuracy), "{a:?}");
    assert_eq!((a.questions, a.failed), (n, 0));
    let lines = std::fs::read_to_string(acc.files.accuracy.as_ref().expect("accuracy file"))
        .expect("accuracy file written");
    let lines: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("accuracy line parses"))
        .collect();
    assert_eq!(lines.len(), n);
    for (l, r) in lines.iter().zip(&acc.records) {
        assert_eq!(l["prediction"], r.prediction());
        let score = l["score"].as_f64().expect("score");
        assert!((0.0..=1.0).contains(&score), "{l}");
    }
    server.stop().expect("server stops");

    // In-process on the same checkpoint and schedule, media readable anywhere (the default).
    let inproc = Target::InProcess {
        settings: Box::new(Settings {
            media_root: None,
            kv_cache_gib: Some(0.125),
            ..settings()
        }),
    };
    let local = run_bench(&bench_config(&dataset, inproc, &out, "inproc"))
        .await
        .expect("in-process run");
    check_run(&local, n, true);
    assert_eq!(local.report.run.backend, "in-process (stream)");
    // The same chat template and preprocessing as the server: the same prompts.
    assert_eq!(prompt_tokens(&local), http_prompts);
    // One time point per generated token after tp[0].
    for r in &local.records {
        assert_eq!(r.time_points.len(), MAX_TOKENS as usize + 1, "{r:?}");
    }
}

#[test]
fn cli_in_process_run() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, _) = write_dataset(dir.path());
    let out = dir.path().join("out");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["bench", "--in-process", "--quiet", "--ignore-eos"])
        .arg("--model")
        .arg(tiny_model())
        .arg("--dataset")
        .arg(&dataset)
        .args(["--num-requests", "2", "--warmup", "0", "--max-tokens", "3"])
        .args(["--output-dir"])
        .arg(&out)
        .args(["--name", "cli"])
        .output()
        .expect("qwen3vl runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("TTFT") && stdout.contains("cli.json"),
        "{stdout}"
    );
    let r = Report::read(&out.join("cli.json")).expect("report");
    assert_eq!(r.run.backend, "in-process (stream)");
    let c = &r.summary.common;
    assert_eq!((c.success_requests, c.failed_requests), (2, 0));
    assert_eq!(c.total_generated_tokens, 2 * 3);
    assert!(c.total_input_tokens > 0);

    // A MindIE config.json's schedule applies: maxIterTimes 2 caps the 3 tokens asked for.
    let mindie = dir.path().join("config.json");
    std::fs::write(
        &mindie,
        r#"{"BackendConfig": {"ScheduleConfig": {"maxIterTimes": 2, "cacheBlockSize": 16}}}"#,
    )
    .unwrap();
    let capped = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["bench", "--in-process", "--quiet", "--ignore-eos"])
        .arg("--model")
        .arg(tiny_model())
        .arg("--server-config")
        .arg(&mindie)
        .arg("--dataset")
        .arg(&dataset)
        .args(["--num-requests", "2", "--warmup", "0", "--max-tokens", "3"])
        .args(["--output-dir"])
        .arg(&out)
        .args(["--name", "capped"])
        .output()
        .expect("qwen3vl runs");
    assert!(
        capped.status.success(),
        "{}",
        String::from_utf8_lossy(&capped.stderr)
    );
    let r = Report::read(&out.join("capped.json")).expect("report");
    assert_eq!(r.summary.common.success_requests, 2);
    assert_eq!(r.summary.common.total_generated_tokens, 2 * 2);

    // A missing checkpoint is a clear error naming it, not a panic.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["bench", "--in-process", "--quiet", "--model"])
        .arg(dir.path().join("nowhere"))
        .arg("--dataset")
        .arg(&dataset)
        .output()
        .expect("qwen3vl runs");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("error: in-process pipeline for ") && err.contains("nowhere"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_failures_are_recorded_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ok.png");
    write_image(&img, 64, 64, image::ImageFormat::Png, 0);
    let lines = [
        serde_json::json!({"type": "image", "path": [img], "question": "fine?"}),
        serde_json::json!({"type": "image", "path": [dir.path().join("gone.png")], "question": "missing?"}),
        serde_json::json!({"type": "audio", "path": [img], "question": "heard?"}),
    ];
    let dataset = dir.path().join("mixed.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&dataset, text.join("\n")).unwrap();
    let target = Target::InProcess {
        settings: Box::new(Settings {
            media_root: None,
            kv_cache_gib: Some(0.125),
            ..settings()
        }),
    };
    let mut cfg = bench_config(&dataset, target, &dir.path().join("out"), "mixed");
    cfg.warmup = 0;
    let o = run_bench(&cfg).await.expect("a run with some failures");
    let c = &o.report.summary.common;
    assert_eq!(
        (c.total_requests, c.success_requests, c.failed_requests),
        (3, 1, 2)
    );
    let reasons: Vec<&str> = o
        .report
        .summary
        .failures
        .iter()
        .map(|f| f.reason.as_str())
        .collect();
    assert!(
        reasons[0].starts_with("pipeline: media")
            && reasons[0].contains("media item 0: the local file cannot be read"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("audio"), "{reasons:?}");
    assert_eq!(c.total_generated_tokens, u64::from(MAX_TOKENS));
}
