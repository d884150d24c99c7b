//! Counters and latency histograms for `GET /metrics` (Prometheus text format 0.0.4, written by
//! hand). Names follow MindIE's `prometheus_metrics.cpp` (label `model_name`), plus gauges for
//! the KV cache blocks, batch size and the HTTP admission queue.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pipeline::PipelineStats;

/// Seconds buckets for TTFT and end-to-end latency.
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0,
];
/// Seconds buckets for the time per output token.
const TPOT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
];
/// Token-count buckets.
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0,
];

/// A cumulative histogram with fixed bounds; lock-free.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths, so that an atomic integer can hold it.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Mean of all observations (MindIE's `/metrics-json` reports averages).
    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        (n > 0).then(|| self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6 / n as f64)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{b}\"}} {acc}");
        }
        let n = self.count();
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {n}");
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{label}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{label}}} {n}");
    }
}

/// Everything `/metrics` reports that the server (not the engine) counts.
pub struct Metrics {
    pub received: AtomicU64,
    pub success: AtomicU64,
    pub failed: AtomicU64,
    /// Rejected with 503 by the connection limit.
    pub rejected: AtomicU64,
    pub cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
    pub prompt_len: Histogram,
    pub generation_len: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            received: AtomicU64::new(0),
            success: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(LATENCY_BUCKETS),
            tpot: Histogram::new(TPOT_BUCKETS),
            e2e: Histogram::new(LATENCY_BUCKETS),
            prompt_len: Histogram::new(TOKEN_BUCKETS),
            generation_len: Histogram::new(TOKEN_BUCKETS),
        }
    }
}

/// Queue state of the HTTP admission limiter.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    pub active: usize,
    pub queued: usize,
    pub limit: usize,
}

impl Metrics {
    /// A finished request: latency in seconds, token counts.
    pub fn record_success(&self, ttft: Option<f64>, e2e: f64, prompt: usize, generated: usize) {
        self.success.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.generation_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
        self.e2e.observe(e2e);
        self.prompt_len.observe(prompt as f64);
        self.generation_len.observe(generated as f64);
        if let Some(t) = ttft {
            self.ttft.observe(t);
            if generated > 1 {
                self.tpot.observe((e2e - t) / (generated - 1) as f64);
            }
        }
    }

    /// The Prometheus exposition.
    pub fn render(&self, model: &str, engine: PipelineStats, link: LinkStats) -> String {
        let label = format!("model_name=\"{}\"", model.replace(['"', '\\', '\n'], "_"));
        let mut out = String::with_capacity(8192);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{label}}} {v}"
            );
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "request_received_total",
            "Requests received.",
            ld(&self.received),
        );
        counter(
            &mut out,
            "request_success_total",
            "Requests completed.",
            ld(&self.success),
        );
        counter(
            &mut out,
            "request_failed_total",
            "Requests that failed.",
            ld(&self.failed),
        );
        counter(
            &mut out,
            "request_rejected_total",
            "Requests refused with 503 by the connection limit (maxLinkNum) or while stopping.",
            ld(&self.rejected),
        );
        counter(
            &mut out,
            "request_cancelled_total",
            "Requests whose client went away before the end.",
            ld(&self.cancelled),
        );
        counter(
            &mut out,
            "prompt_tokens_total",
            "Prompt tokens processed (vision tokens included).",
            ld(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "generation_tokens_total",
            "Tokens generated.",
            ld(&self.generation_tokens),
        );
        counter(
            &mut out,
            "num_preemptions_total",
            "Sequences preempted (KV blocks reclaimed, recomputed later).",
            engine.preemptions,
        );
        // vLLM's names for the speculative-decoding counters.
        counter(
            &mut out,
            "spec_decode_num_draft_tokens_total",
            "Draft tokens verified (speculative decoding).",
            engine.drafted_tokens,
        );
        counter(
            &mut out,
            "spec_decode_num_accepted_tokens_total",
            "Draft tokens accepted (each one a model step saved).",
            engine.accepted_tokens,
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}}} {v}"
            );
        };
        gauge(
            &mut out,
            "num_requests_running",
            "Sequences in the running batch.",
            engine.running as f64,
        );
        gauge(
            &mut out,
            "num_requests_waiting",
            "Requests waiting: in the engine's queue plus queued at the HTTP door.",
            (engine.waiting + link.queued) as f64,
        );
        gauge(
            &mut out,
            "batch_size",
            "Sequences decoded together at the last step.",
            engine.running as f64,
        );
        gauge(
            &mut out,
            "http_requests_in_flight",
            "Requests holding one of the maxLinkNum slots.",
            link.active as f64,
        );
        gauge(
            &mut out,
            "http_requests_queued",
            "Requests waiting for a maxLinkNum slot.",
            link.queued as f64,
        );
        gauge(
            &mut out,
            "http_max_link_num",
            "maxLinkNum.",
            link.limit as f64,
        );
        let used = engine.total_blocks.saturating_sub(engine.free_blocks);
        gauge(
            &mut out,
            "kv_cache_blocks_used",
            "KV cache blocks in use.",
            used as f64,
        );
        gauge(
            &mut out,
            "kv_cache_blocks_free",
            "KV cache blocks free.",
            engine.free_blocks as f64,
        );
        let perc = if engine.total_blocks > 0 {
            used as f64 / engine.total_blocks as f64
        } else {
            0.0
        };
        gauge(
            &mut out,
            "npu_cache_usage_perc",
            "Fraction of KV cache blocks in use (MindIE's name; CPU memory here).",
            perc,
        );
        self.ttft.render(
            &mut out,
            "time_to_first_token_seconds",
            "Time to first token.",
            &label,
        );
        self.tpot.render(
            &mut out,
            "time_per_output_token_seconds",
            "Time per output token after the first.",
            &label,
        );
        self.e2e.render(
            &mut out,
            "e2e_request_latency_seconds",
            "End-to-end request latency.",
            &label,
        );
        self.prompt_len.render(
            &mut out,
            "request_prompt_tokens",
            "Prompt tokens per request.",
            &label,
        );
        self.generation_len.render(
            &mut out,
            "request_generation_tokens",
            "Generated tokens per request.",
            &label,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.record_success(Some(0.02), 1.0, 10, 11);
        m.record_success(Some(3.0), 4.0, 10, 1);
        let text = m.render(
            "q",
            PipelineStats {
                total_blocks: 10,
                free_blocks: 4,
                running: 2,
                waiting: 1,
                steps: 0,
                preemptions: 0,
                generated_tokens: 0,
                drafted_tokens: 0,
                accepted_tokens: 0,
                admitted: 0,
            },
            LinkStats::default(),
        );
        assert!(
            text.contains("time_to_first_token_seconds_bucket{model_name=\"q\",le=\"0.025\"} 1")
        );
        assert!(text.contains("time_to_first_token_seconds_bucket{model_name=\"q\",le=\"+Inf\"} 2"));
        assert!(text.contains("time_per_output_token_seconds_count{model_name=\"q\"} 1"));
        assert!(text.contains("kv_cache_blocks_used{model_name=\"q\"} 6"));
        assert!(text.contains("request_success_total{model_name=\"q\"} 2"));
    }
}
