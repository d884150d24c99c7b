//! One benchmark run from configuration to written files: dataset → warm-up → measured
//! load → token counts → metrics (→ accuracy) → report files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::backends::in_process::{self, InProcess};
use super::backends::{
    http::HttpTarget, http_backend, Backend, BackendKind, BenchRequest, GenParams,
};
use super::dataset::{self, DatasetFormat, MediaMode, Sample};
use super::load::{self, LoadConfig, OnDone};
use super::metrics::{self, Stat, TokenCounts};
use super::plot::{latency_svg, Series};
use super::record::{Clock, RequestRecord};
use super::report::{self, AccuracyLine, AccuracyResult, DetailLine, Report, RunFiles, RunInfo};
use super::tokens::{TokenCounter, TokenizerFile};
use super::vqa::{self, QuestionScore};
use super::{BenchError, Result};
use crate::service::Settings;

/// AISBench `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Performance only.
    Perf,
    /// Performance and accuracy (TextVQA-style VQA scoring).
    All,
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Http {
        kind: BackendKind,
        /// `http://host:port`.
        base_url: String,
        api_key: Option<String>,
        /// Attempts per request on transport errors (AISBench `retry`).
        attempts: u32,
        timeout: Option<Duration>,
    },
    /// The library pipeline, no HTTP (`--in-process --model <dir>`), started with the settings
    /// `qwen3vl serve` would take (`model_dir` required; media readable anywhere unless
    /// `media_root` says otherwise).
    InProcess { settings: Box<Settings> },
}

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    pub dataset: PathBuf,
    pub dataset_format: DatasetFormat,
    pub mode: Mode,
    pub target: Target,
    /// Served model name (`model` field); for OpenAI chat, asked from `/v1/models` if `None`.
    pub model: Option<String>,
    pub media: MediaMode,
    pub num_frames: usize,
    pub load: LoadConfig,
    /// Measured requests (default: the dataset size; larger values cycle the dataset).
    pub num_requests: Option<usize>,
    pub warmup: usize,
    pub max_tokens: u32,
    pub temperature: f64,
    pub ignore_eos: bool,
    pub stream: bool,
    pub stats: Vec<Stat>,
    pub output_dir: PathBuf,
    pub name: Option<String>,
    /// `tokenizer.json` for output token counts when the server reports none.
    pub tokenizer: Option<PathBuf>,
    pub progress: bool,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    pub files: RunFiles,
    pub records: Vec<RequestRecord>,
    /// The text printed at the end (tables, failures, accuracy).
    pub text: String,
}

/// `YYYYmmdd-HHMMSS` (UTC) of a Unix time.
pub fn timestamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn requests(samples: &[Arc<Sample>], n: usize, cfg: &BenchConfig) -> Vec<BenchRequest> {
    (0..n)
        .map(|i| BenchRequest {
            index: i,
            sample: samples[i % samples.len()].clone(),
            media: cfg.media,
            num_frames: cfg.num_frames,
        })
        .collect()
}

async fn make_backend(cfg: &BenchConfig) -> Result<(Arc<dyn Backend>, String, Option<String>)> {
    match &cfg.target {
        Target::Http {
            kind,
            base_url,
            api_key,
            attempts,
            timeout,
        } => {
            let target = HttpTarget::new(
                base_url,
                api_key.clone(),
                *attempts,
                cfg.load.concurrency,
                *timeout,
            )?;
            let model = match (&cfg.model, kind) {
                (Some(m), _) => Some(m.clone()),
                (None, BackendKind::OpenaiChat) => Some(target.served_model().await?),
                (None, _) => None,
            };
            let params = GenParams {
                model: model.clone(),
                max_tokens: cfg.max_tokens,
                temperature: cfg.temperature,
                ignore_eos: cfg.ignore_eos,
                stream: cfg.stream,
            };
            Ok((http_backend(*kind, target, params), base_url.clone(), model))
        }
        Target::InProcess { settings } => {
            let config = in_process::service_config((**settings).clone())?;
            let params = GenParams {
                model: None,
                max_tokens: cfg.max_tokens,
                temperature: cfg.temperature,
                ignore_eos: cfg.ignore_eos,
                stream: cfg.stream,
            };
            let progress = cfg.progress;
            // Loading weights blocks for seconds to minutes: keep it off the runtime's workers.
            let backend =
                tokio::task::spawn_blocking(move || InProcess::start(&config, params, progress))
                    .await
                    .map_err(|e| BenchError::RunFailed(format!("starting the pipeline: {e}")))??;
            let dir = backend.model_dir().display().to_string();
            Ok((Arc::new(backend), format!("in-process {dir}"), Some(dir)))
        }
    }
}

fn progress_bar(n: usize, show: bool, label: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(n as u64),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} ({per_sec}, eta {eta}) {msg}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Runs a whole benchmark and writes its files.
pub async fn run_bench(cfg: &BenchConfig) -> Result<RunOutcome> {
    if cfg.load.concurrency == 0 {
        return Err(BenchError::Config(
            "--concurrency must be at least 1".into(),
        ));
    }
    let data = dataset::load(&cfg.dataset, cfg.dataset_format)?;
    if cfg.mode == Mode::All && !data.has_answers() {
        return Err(BenchError::Config(format!(
            "--mode all needs ground-truth answers for every sample of {}",
            cfg.dataset.display()
        )));
    }
    let counter: Option<Box<dyn TokenCounter>> = match &cfg.tokenizer {
        Some(p) => Some(Box::new(TokenizerFile::open(p)?)),
        None => None,
    };
    let (backend, target_desc, model) = make_backend(cfg).await?;
    let samples: Vec<Arc<Sample>> = data.samples.iter().cloned().map(Arc::new).collect();
    let n = cfg.num_requests.unwrap_or(samples.len());
    if n == 0 {
        return Err(BenchError::Config(
            "--num-requests must be at least 1".into(),
        ));
    }
    let clock = Clock::new();

    // Warm-up (excluded from every number).
    let mut warmup_failures = 0;
    if cfg.warmup > 0 {
        let pb = progress_bar(cfg.warmup, cfg.progress, "warm-up");
        let recs = load::warmup(
            backend.clone(),
            requests(&samples, cfg.warmup, cfg),
            cfg.load.concurrency,
            clock,
        )
        .await;
        pb.finish_and_clear();
        warmup_failures = recs.iter().filter(|r| !r.success).count();
        if warmup_failures > 0 && cfg.progress {
            let reason = recs
                .iter()
                .find_map(|r| r.error.clone())
                .unwrap_or_default();
            tracing::warn!("{warmup_failures} warm-up request(s) failed: {reason}");
        }
    }

    // Measured stage.
    let started_at_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let pb = progress_bar(n, cfg.progress, "bench");
    let failed = Arc::new(AtomicUsize::new(0));
    let on_done: OnDone = {
        let pb = pb.clone();
        let failed = failed.clone();
        Arc::new(move |rec: &RequestRecord| {
            if !rec.success {
                let f = failed.fetch_add(1, Ordering::Relaxed) + 1;
                pb.set_message(format!("{f} failed"));
            }
            pb.inc(1);
        })
    };
    let records = load::run(
        backend.clone(),
        requests(&samples, n, cfg),
        &cfg.load,
        clock,
        Some(on_done),
    )
    .await;
    pb.finish_and_clear();

    // Token counts (server usage first) and metrics.
    let tokens: Vec<TokenCounts> = records
        .iter()
        .map(|r| {
            let out_fb = match (&counter, r.usage.completion_tokens) {
                (Some(c), None) => c.count(&r.prediction()),
                _ => None,
            };
            metrics::token_counts(r, None, out_fb)
        })
        .collect();
    let stream = backend.streaming();
    let per_request = metrics::evaluate(&records, &tokens, stream);
    let name = cfg.name.clone().unwrap_or_else(|| {
        format!(
            "{}-c{}-{}",
            match &cfg.target {
                Target::Http { kind, .. } => kind.name(),
                Target::InProcess { .. } => "in-process",
            },
            cfg.load.concurrency,
            timestamp(started_at_unix)
        )
    });
    let files = RunFiles::new(&cfg.output_dir, &name, cfg.mode == Mode::All);

    // Details (written even when every request failed).
    let details: Vec<DetailLine> = records
        .iter()
        .zip(&per_request)
        .map(|(r, m)| DetailLine {
            record: r,
            prediction: r.prediction(),
            metrics: m.as_ref().ok(),
        })
        .collect();
    report::write_file(&files.details, &report::jsonl(&details)?)?;

    let summary = match metrics::summarize(&per_request, &cfg.stats, cfg.load.concurrency) {
        Ok(s) => s,
        Err(BenchError::AllFailed(k)) => {
            let reasons = per_request
                .iter()
                .filter_map(|r| r.as_ref().err().map(|f| f.reason.clone()))
                .take(3)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(BenchError::RunFailed(format!(
                "all {k} requests failed (details in {}): {reasons}",
                files.details.display()
            )));
        }
        Err(e) => return Err(e),
    };

    // Accuracy.
    let accuracy = if cfg.mode == Mode::All {
        let scores: Vec<QuestionScore> = records
            .iter()
            .map(|r| {
                let s = &samples[r.index % samples.len()];
                if r.success {
                    vqa::score_question(&r.prediction(), &s.answers)
                } else {
                    QuestionScore {
                        normalized: String::new(),
                        score: 0.0,
                        correct: false,
                        error: Some(format!(
                            "request failed: {}",
                            r.error.clone().unwrap_or_default()
                        )),
                    }
                }
            })
            .collect();
        let lines: Vec<AccuracyLine> = records
            .iter()
            .zip(&scores)
            .map(|(r, sc)| {
                let s = &samples[r.index % samples.len()];
                AccuracyLine::new(r.index, &s.id, r.prediction(), &s.answers, sc)
            })
            .collect();
        if let Some(p) = &files.accuracy {
            report::write_file(p, &report::jsonl(&lines)?)?;
        }
        Some(AccuracyResult {
            accuracy: vqa::accuracy(&scores),
            questions: scores.len(),
            correct: scores.iter().filter(|s| s.correct).count(),
            failed: records.iter().filter(|r| !r.success).count(),
        })
    } else {
        None
    };

    let report = Report {
        run: RunInfo {
            name: name.clone(),
            tool: format!("qwen3vl {}", env!("CARGO_PKG_VERSION")),
            backend: backend.name(),
            target: target_desc,
            model,
            dataset: cfg.dataset.display().to_string(),
            dataset_format: format!("{:?}", data.format),
            mode: format!("{:?}", cfg.mode).to_lowercase(),
            media: format!("{:?}", cfg.media).to_lowercase(),
            stream,
            concurrency: cfg.load.concurrency,
            request_rate: cfg.load.request_rate,
            burstiness: cfg.load.burstiness,
            num_requests: n,
            warmup_requests: cfg.warmup,
            warmup_failures,
            max_tokens: cfg.max_tokens,
            temperature: cfg.temperature,
            ignore_eos: cfg.ignore_eos,
            seed: cfg.load.seed,
            started_at_unix,
        },
        summary,
        accuracy,
    };
    report::write_report(&files, &report)?;

    let ok: Vec<&metrics::RequestMetrics> =
        per_request.iter().filter_map(|r| r.as_ref().ok()).collect();
    let ttft: Vec<f64> = ok.iter().map(|m| m.ttft * 1e3).collect();
    let e2el: Vec<f64> = ok.iter().map(|m| m.e2el * 1e3).collect();
    let mut series = Vec::new();
    if stream {
        series.push(Series {
            title: "TTFT",
            values: &ttft,
        });
    }
    series.push(Series {
        title: "E2EL",
        values: &e2el,
    });
    report::write_file(
        &files.plot,
        &latency_svg(&format!("{name}: latency distributions"), &series),
    )?;

    let mut text = report::terminal(&report);
    text.push_str(&format!(
        "files: {}, {}, {}, {}{}\n",
        files.json.display(),
        files.csv.display(),
        files.details.display(),
        files.plot.display(),
        files
            .accuracy
            .as_ref()
            .map(|p| format!(", {}", p.display()))
            .unwrap_or_default()
    ));
    Ok(RunOutcome {
        report,
        files,
        records,
        text,
    })
}
