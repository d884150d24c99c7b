//! AISBench performance metrics as pure functions over recorded requests (spec §3.3;
//! `summarizers/default_perf.py::_calc_perf_data`, `calculators/base_perf_metric_calculator.py`,
//! `calculators/default_perf_metric_calculator.py`).
//!
//! Values are kept at full precision (AISBench rounds seconds to 4 decimals before converting
//! to milliseconds, so its ms figures are multiples of 0.1 ms); reports print 4 decimals.

use serde::{Deserialize, Serialize};

use super::record::RequestRecord;
use super::{BenchError, Result};

/// Per-request metrics of one successful request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMetrics {
    pub index: usize,
    pub sample_id: String,
    /// `tp[0]`, seconds on the run clock.
    pub start_time: f64,
    /// `tp[-1]`.
    pub end_time: f64,
    /// `tp[-1] − tp[0]`, seconds.
    pub e2el: f64,
    /// `tp[1] − tp[0]` (stream); 0 for non-stream.
    pub ttft: f64,
    /// `(E2EL − TTFT) / (OutputTokens − 1)` if OutputTokens > 1, else 0; 0 for non-stream.
    pub tpot: f64,
    /// `diff(tp[1:])` (empty unless there are ≥ 3 time points).
    pub itl: Vec<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// OutputTokens / E2EL (token/s).
    pub output_token_throughput: f64,
    /// InputTokens / TTFT (token/s), 0 when TTFT is 0.
    pub prefill_token_throughput: f64,
}

/// Token counts used for a request's metrics, after applying the AISBench precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
}

/// AISBench's token precedence: InputTokens = server `prompt_tokens` if > 0, else 0 for a
/// multimodal prompt, else `input_fallback` (a tokenizer count of a text prompt);
/// OutputTokens = server `completion_tokens` if reported, else `output_fallback`
/// (a tokenizer count of the prediction; AISBench's `Output` defaults it to 0).
pub fn token_counts(
    rec: &RequestRecord,
    input_fallback: Option<u64>,
    output_fallback: Option<u64>,
) -> TokenCounts {
    let input = match rec.usage.prompt_tokens {
        Some(n) if n > 0 => n,
        _ if rec.multimodal => 0,
        _ => input_fallback.unwrap_or(0),
    };
    let output = rec.usage.completion_tokens.or(output_fallback).unwrap_or(0);
    TokenCounts { input, output }
}

/// Per-request metrics, or the failure reason (the request's own error, or AISBench's
/// "chunk size is less than 2" when fewer than two time points were recorded).
pub fn request_metrics(
    rec: &RequestRecord,
    tokens: TokenCounts,
    stream: bool,
) -> std::result::Result<RequestMetrics, String> {
    if !rec.success {
        return Err(rec
            .error
            .clone()
            .unwrap_or_else(|| "request failed".to_string()));
    }
    let tp = &rec.time_points;
    if tp.len() <= 1 {
        return Err("chunk size is less than 2".to_string());
    }
    let start = tp[0];
    let end = tp[tp.len() - 1];
    let e2el = end - start;
    let (ttft, tpot) = if stream {
        let ttft = tp[1] - tp[0];
        let tpot = if tokens.output > 1 {
            (e2el - ttft) / (tokens.output - 1) as f64
        } else {
            0.0
        };
        (ttft, tpot)
    } else {
        (0.0, 0.0)
    };
    let itl = if tp.len() > 2 {
        tp[1..].windows(2).map(|w| w[1] - w[0]).collect()
    } else {
        Vec::new()
    };
    Ok(RequestMetrics {
        index: rec.index,
        sample_id: rec.sample_id.clone(),
        start_time: start,
        end_time: end,
        e2el,
        ttft,
        tpot,
        itl,
        input_tokens: tokens.input,
        output_tokens: tokens.output,
        output_token_throughput: safe_div(tokens.output as f64, e2el),
        prefill_token_throughput: safe_div(tokens.input as f64, ttft),
    })
}

fn safe_div(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// One statistic of the AISBench table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Average,
    Min,
    Max,
    Median,
    /// `Pnn`, 1 ≤ nn ≤ 99.
    Percentile(u8),
}

impl Stat {
    pub fn parse(s: &str) -> Option<Stat> {
        match s {
            "Average" => Some(Stat::Average),
            "Min" => Some(Stat::Min),
            "Max" => Some(Stat::Max),
            "Median" => Some(Stat::Median),
            _ => {
                let n: u8 = s.strip_prefix('P')?.parse().ok()?;
                (1..=99).contains(&n).then_some(Stat::Percentile(n))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Stat::Average => "Average".into(),
            Stat::Min => "Min".into(),
            Stat::Max => "Max".into(),
            Stat::Median => "Median".into(),
            Stat::Percentile(p) => format!("P{p}"),
        }
    }
}

/// AISBench's default statistics: Average, Min, Max, Median, P75, P90, P99.
pub fn default_stats() -> Vec<Stat> {
    vec![
        Stat::Average,
        Stat::Min,
        Stat::Max,
        Stat::Median,
        Stat::Percentile(75),
        Stat::Percentile(90),
        Stat::Percentile(99),
    ]
}

/// `np.percentile(data, p)` with the default linear interpolation (numpy's `_lerp`, which
/// interpolates from the upper neighbour when the fraction is ≥ 0.5). Empty data → 0.
pub fn percentile(data: &[f64], p: f64) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut v: Vec<f64> = data.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = p / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    let (a, b) = (v[lo], v[hi]);
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The statistics of one data set (`_calculate_statistics`); all 0 for empty data.
pub fn statistics(data: &[f64], stats: &[Stat]) -> Vec<f64> {
    stats
        .iter()
        .map(|s| {
            if data.is_empty() {
                return 0.0;
            }
            match s {
                Stat::Average => data.iter().sum::<f64>() / data.len() as f64,
                Stat::Min => data.iter().copied().fold(f64::INFINITY, f64::min),
                Stat::Max => data.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Stat::Median => percentile(data, 50.0),
                Stat::Percentile(p) => percentile(data, *p as f64),
            }
        })
        .collect()
}

/// One row of the per-request metric table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// AISBench name: E2EL, TTFT, TPOT, ITL, InputTokens, OutputTokens,
    /// OutputTokenThroughput, PrefillTokenThroughput.
    pub name: String,
    /// "ms", "token/s" or "" (counts).
    pub unit: String,
    /// One value per statistic of [`Summary::stats`], in `unit`.
    pub values: Vec<f64>,
    /// Requests counted (success count; for TPOT and ITL, requests with a non-zero gap).
    #[serde(rename = "N")]
    pub n: usize,
}

impl MetricRow {
    pub fn get(&self, stats: &[String], stat: &str) -> Option<f64> {
        stats
            .iter()
            .position(|s| s == stat)
            .and_then(|i| self.values.get(i).copied())
    }
}

/// The run-wide metrics (`_calc_common_metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommonMetrics {
    /// `max(end_time) − min(start_time)` over successful requests, ms.
    pub benchmark_duration_ms: f64,
    pub total_requests: usize,
    pub failed_requests: usize,
    pub success_requests: usize,
    /// Achieved average concurrency: `Σ E2EL / Duration`.
    pub concurrency: f64,
    /// The configured limit (`batch_size`).
    pub max_concurrency: usize,
    /// `success / Duration`, req/s.
    pub request_throughput: f64,
    pub total_input_tokens: u64,
    pub total_generated_tokens: u64,
    /// `Σ InputTokens / Duration`, token/s.
    pub input_token_throughput: f64,
    /// `Σ OutputTokens / Duration`, token/s.
    pub output_token_throughput: f64,
    /// `(Σ InputTokens + Σ OutputTokens) / Duration`, token/s.
    pub total_token_throughput: f64,
}

/// A failed request and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub index: usize,
    pub sample_id: String,
    pub reason: String,
}

/// Everything the perf report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub stats: Vec<String>,
    pub metrics: Vec<MetricRow>,
    pub common: CommonMetrics,
    pub failures: Vec<Failure>,
}

impl Summary {
    pub fn metric(&self, name: &str) -> Option<&MetricRow> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// Computes per-request metrics for every record (success or failure).
pub fn evaluate(
    records: &[RequestRecord],
    tokens: &[TokenCounts],
    stream: bool,
) -> Vec<std::result::Result<RequestMetrics, Failure>> {
    records
        .iter()
        .zip(tokens)
        .map(|(r, t)| {
            request_metrics(r, *t, stream).map_err(|reason| Failure {
                index: r.index,
                sample_id: r.sample_id.clone(),
                reason,
            })
        })
        .collect()
}

/// The AISBench table and common metrics over a run's per-request results.
pub fn summarize(
    results: &[std::result::Result<RequestMetrics, Failure>],
    stats: &[Stat],
    max_concurrency: usize,
) -> Result<Summary> {
    let ok: Vec<&RequestMetrics> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures: Vec<Failure> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    if ok.is_empty() {
        return Err(BenchError::AllFailed(results.len()));
    }
    let success = ok.len();
    let start = ok
        .iter()
        .map(|m| m.start_time)
        .fold(f64::INFINITY, f64::min);
    let end = ok
        .iter()
        .map(|m| m.end_time)
        .fold(f64::NEG_INFINITY, f64::max);
    let duration = end - start;

    let col = |f: fn(&RequestMetrics) -> f64| -> Vec<f64> { ok.iter().map(|m| f(m)).collect() };
    let e2el = col(|m| m.e2el);
    let ttft = col(|m| m.ttft);
    let tpot = col(|m| m.tpot);
    let input = col(|m| m.input_tokens as f64);
    let output = col(|m| m.output_tokens as f64);
    let otp = col(|m| m.output_token_throughput);
    let ptp = col(|m| m.prefill_token_throughput);
    let itl: Vec<f64> = ok.iter().flat_map(|m| m.itl.iter().copied()).collect();
    // N for TPOT/ITL: requests whose ITL array has any non-zero gap.
    let decode_n = ok
        .iter()
        .filter(|m| m.itl.iter().any(|&g| g != 0.0))
        .count();
    // AISBench drops ITL when there are no gaps, or when the first request that has gaps has
    // only zero gaps (`not ans["ITL"][0].any()`).
    let first_itl = ok.iter().find(|m| !m.itl.is_empty());
    let keep_itl = first_itl.is_some_and(|m| m.itl.iter().any(|&g| g != 0.0));
    // `math.isclose(sum, 0)` with default tolerances is true only for an exact 0.
    let keep_ttft = ttft.iter().sum::<f64>() != 0.0;
    let keep_tpot = tpot.iter().sum::<f64>() != 0.0;

    let row = |name: &str, unit: &str, data: &[f64], scale: f64, n: usize| MetricRow {
        name: name.to_string(),
        unit: unit.to_string(),
        values: statistics(data, stats)
            .into_iter()
            .map(|v| v * scale)
            .collect(),
        n,
    };
    let mut metrics = vec![row("E2EL", "ms", &e2el, 1e3, success)];
    if keep_ttft {
        metrics.push(row("TTFT", "ms", &ttft, 1e3, success));
    }
    if keep_tpot {
        metrics.push(row("TPOT", "ms", &tpot, 1e3, decode_n));
    }
    if keep_itl {
        metrics.push(row("ITL", "ms", &itl, 1e3, decode_n));
    }
    metrics.push(row("InputTokens", "", &input, 1.0, success));
    metrics.push(row("OutputTokens", "", &output, 1.0, success));
    metrics.push(row("OutputTokenThroughput", "token/s", &otp, 1.0, success));
    if keep_ttft {
        metrics.push(row("PrefillTokenThroughput", "token/s", &ptp, 1.0, success));
    }

    let total_in: u64 = ok.iter().map(|m| m.input_tokens).sum();
    let total_out: u64 = ok.iter().map(|m| m.output_tokens).sum();
    let common = CommonMetrics {
        benchmark_duration_ms: duration * 1e3,
        total_requests: results.len(),
        failed_requests: results.len() - success,
        success_requests: success,
        concurrency: safe_div(e2el.iter().sum(), duration),
        max_concurrency,
        request_throughput: safe_div(success as f64, duration),
        total_input_tokens: total_in,
        total_generated_tokens: total_out,
        input_token_throughput: safe_div(total_in as f64, duration),
        output_token_throughput: safe_div(total_out as f64, duration),
        total_token_throughput: safe_div((total_in + total_out) as f64, duration),
    };
    Ok(Summary {
        stats: stats.iter().map(Stat::name).collect(),
        metrics,
        common,
        failures,
    })
}
