//! Run reports: the terminal tables (AISBench layout: `Performance Parameters | Stage |
//! Average | Min | Max | Median | P75 | P90 | P99 | N`, then the common metrics), the JSON
//! report, the AISBench-style CSV, the per-request details JSONL and the per-question
//! accuracy JSONL.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metrics::{CommonMetrics, RequestMetrics, Summary};
use super::record::RequestRecord;
use super::vqa::{GtAnswer, QuestionScore};
use super::{BenchError, Result};

/// How the run was set up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub name: String,
    pub tool: String,
    /// Backend description, e.g. "openai-chat (stream)" or "in-process".
    pub backend: String,
    pub target: String,
    pub model: Option<String>,
    pub dataset: String,
    pub dataset_format: String,
    pub mode: String,
    pub media: String,
    pub stream: bool,
    pub concurrency: usize,
    pub request_rate: f64,
    pub burstiness: f64,
    pub num_requests: usize,
    pub warmup_requests: usize,
    pub warmup_failures: usize,
    pub max_tokens: u32,
    pub temperature: f64,
    pub ignore_eos: bool,
    pub seed: u64,
    /// Unix time (seconds) at the start of the measured stage.
    pub started_at_unix: u64,
}

/// Accuracy-mode result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccuracyResult {
    /// VQA accuracy × 100 over all measured questions (failed requests score 0).
    pub accuracy: f64,
    pub questions: usize,
    /// Questions with score > 0.5.
    pub correct: usize,
    /// Requests that failed (scored 0).
    pub failed: usize,
}

/// The JSON report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub run: RunInfo,
    pub summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<AccuracyResult>,
}

impl Report {
    pub fn read(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| BenchError::Report {
            path: path.display().to_string(),
            message: format!("not a qwen3vl bench report: {e}"),
        })
    }
}

/// A value with 4 decimals, trailing zeros trimmed.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        fmt_num(v)
    } else {
        format!("{} {unit}", fmt_num(v))
    }
}

/// A boxed text table.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |l: char, m: char, r: char| {
        let mut s = String::new();
        s.push(l);
        for (i, wi) in w.iter().enumerate() {
            s.push_str(&"─".repeat(wi + 2));
            s.push(if i + 1 == cols { r } else { m });
        }
        s.push('\n');
        s
    };
    let row = |cells: &[String]| {
        let mut s = String::from("│");
        for (i, wi) in w.iter().enumerate() {
            let c = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = wi - c.chars().count();
            if i < 2 {
                let _ = write!(s, " {c}{} │", " ".repeat(pad));
            } else {
                let _ = write!(s, " {}{c} │", " ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line('┌', '┬', '┐');
    out.push_str(&row(header));
    out.push_str(&line('├', '┼', '┤'));
    for r in rows {
        out.push_str(&row(r));
    }
    out.push_str(&line('└', '┴', '┘'));
    out
}

/// The per-request metric table.
pub fn metrics_table(s: &Summary) -> String {
    let mut header = vec!["Performance Parameters".to_string(), "Stage".to_string()];
    header.extend(s.stats.iter().cloned());
    header.push("N".into());
    let rows: Vec<Vec<String>> = s
        .metrics
        .iter()
        .map(|m| {
            let mut r = vec![m.name.clone(), "total".into()];
            r.extend(m.values.iter().map(|v| with_unit(*v, &m.unit)));
            r.push(m.n.to_string());
            r
        })
        .collect();
    table(&header, &rows)
}

/// (name, value, unit) of the common metrics, in AISBench order.
pub fn common_rows(c: &CommonMetrics) -> Vec<(&'static str, f64, &'static str)> {
    vec![
        ("Benchmark Duration", c.benchmark_duration_ms, "ms"),
        ("Total Requests", c.total_requests as f64, ""),
        ("Failed Requests", c.failed_requests as f64, ""),
        ("Success Requests", c.success_requests as f64, ""),
        ("Concurrency", c.concurrency, ""),
        ("Max Concurrency", c.max_concurrency as f64, ""),
        ("Request Throughput", c.request_throughput, "req/s"),
        ("Total Input Tokens", c.total_input_tokens as f64, ""),
        (
            "Total Generated Tokens",
            c.total_generated_tokens as f64,
            "",
        ),
        (
            "Input Token Throughput",
            c.input_token_throughput,
            "token/s",
        ),
        (
            "Output Token Throughput",
            c.output_token_throughput,
            "token/s",
        ),
        (
            "Total Token Throughput",
            c.total_token_throughput,
            "token/s",
        ),
    ]
}

pub fn common_table(c: &CommonMetrics) -> String {
    let header = vec![
        "Common Metric".to_string(),
        "Stage".to_string(),
        "Value".to_string(),
    ];
    let rows: Vec<Vec<String>> = common_rows(c)
        .into_iter()
        .map(|(n, v, u)| vec![n.to_string(), "total".into(), with_unit(v, u)])
        .collect();
    table(&header, &rows)
}

/// Failure reasons with counts, then up to `list` individual failures.
pub fn failures_text(s: &Summary, list: usize) -> String {
    if s.failures.is_empty() {
        return String::new();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &s.failures {
        *counts.entry(f.reason.as_str()).or_default() += 1;
    }
    let header = vec!["Failed Reason".to_string(), "Count".to_string()];
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|(r, n)| vec![r.to_string(), n.to_string()])
        .collect();
    let mut out = format!("Failed Reasons:\n{}", table(&header, &rows));
    for f in s.failures.iter().take(list) {
        let _ = writeln!(
            out,
            "  request {} (sample {}): {}",
            f.index, f.sample_id, f.reason
        );
    }
    if s.failures.len() > list {
        let _ = writeln!(out, "  ... {} more", s.failures.len() - list);
    }
    out
}

/// Everything printed at the end of a run.
pub fn terminal(report: &Report) -> String {
    let mut out = String::new();
    let r = &report.run;
    let _ = writeln!(
        out,
        "{} | {} | {} | concurrency {} | rate {} | {} requests",
        r.name,
        r.backend,
        r.target,
        r.concurrency,
        if r.request_rate < super::load::MIN_RATE {
            "unpaced".to_string()
        } else {
            format!("{} req/s", fmt_num(r.request_rate))
        },
        r.num_requests
    );
    out.push_str(&metrics_table(&report.summary));
    out.push_str(&common_table(&report.summary.common));
    out.push_str(&failures_text(&report.summary, 10));
    if let Some(a) = &report.accuracy {
        let _ = writeln!(
            out,
            "Accuracy (VQA): {} over {} questions ({} correct, {} failed requests)",
            fmt_num(a.accuracy),
            a.questions,
            a.correct,
            a.failed
        );
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// AISBench `save_performance` CSV: `Performance Parameters,Stage,<stats...>,N` with units
/// attached to the values, followed by a blank line and the common metrics.
pub fn csv(s: &Summary) -> String {
    let mut out = String::from("Performance Parameters,Stage");
    for st in &s.stats {
        out.push(',');
        out.push_str(&csv_cell(st));
    }
    out.push_str(",N\n");
    for m in &s.metrics {
        out.push_str(&csv_cell(&m.name));
        out.push_str(",total");
        for v in &m.values {
            out.push(',');
            out.push_str(&csv_cell(&with_unit(*v, &m.unit)));
        }
        let _ = writeln!(out, ",{}", m.n);
    }
    out.push_str("\nCommon Metric,Stage,Value\n");
    for (n, v, u) in common_rows(&s.common) {
        let _ = writeln!(out, "{},total,{}", csv_cell(n), csv_cell(&with_unit(v, u)));
    }
    out
}

/// One line of the per-request details file.
#[derive(Debug, Clone, Serialize)]
pub struct DetailLine<'a> {
    #[serde(flatten)]
    pub record: &'a RequestRecord,
    pub prediction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<&'a RequestMetrics>,
}

/// One line of the per-question accuracy file.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyLine<'a> {
    pub index: usize,
    pub sample_id: &'a str,
    pub prediction: String,
    pub answers: Vec<&'a str>,
    #[serde(flatten)]
    pub score: &'a QuestionScore,
}

impl<'a> AccuracyLine<'a> {
    pub fn new(
        index: usize,
        sample_id: &'a str,
        prediction: String,
        answers: &'a [GtAnswer],
        score: &'a QuestionScore,
    ) -> Self {
        AccuracyLine {
            index,
            sample_id,
            prediction,
            answers: answers.iter().map(|a| a.answer.as_str()).collect(),
            score,
        }
    }
}

/// Writes text to a file, creating its directory.
pub fn write_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
        }
    }
    std::fs::write(path, contents).map_err(|e| BenchError::io(path, e))
}

/// JSON lines of serialisable items.
pub fn jsonl<T: Serialize>(items: &[T]) -> Result<String> {
    let mut out = String::new();
    for it in items {
        let line = serde_json::to_string(it).map_err(|e| BenchError::Report {
            path: "jsonl".into(),
            message: e.to_string(),
        })?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFiles {
    pub json: PathBuf,
    pub csv: PathBuf,
    pub details: PathBuf,
    pub plot: PathBuf,
    pub accuracy: Option<PathBuf>,
}

impl RunFiles {
    pub fn new(dir: &Path, name: &str, accuracy: bool) -> Self {
        RunFiles {
            json: dir.join(format!("{name}.json")),
            csv: dir.join(format!("{name}.csv")),
            details: dir.join(format!("{name}_details.jsonl")),
            plot: dir.join(format!("{name}_latency.svg")),
            accuracy: accuracy.then(|| dir.join(format!("{name}_accuracy.jsonl"))),
        }
    }
}

/// Writes the JSON report and the CSV.
pub fn write_report(files: &RunFiles, report: &Report) -> Result<()> {
    let json = serde_json::to_string_pretty(report).map_err(|e| BenchError::Report {
        path: files.json.display().to_string(),
        message: e.to_string(),
    })?;
    write_file(&files.json, &(json + "\n"))?;
    write_file(&files.csv, &csv(&report.summary))
}
