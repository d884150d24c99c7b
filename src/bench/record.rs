//! What one benchmark request leaves behind, and the [`Recorder`] backends fill while the
//! response arrives (AISBench `models/output.py::Output`, spec §3.3).

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A monotonic clock shared by every request of a run; times are seconds since `epoch`
/// (AISBench uses `time.perf_counter()`).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Token counts a server reported for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// The outcome of one request, as AISBench keeps it before computing metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in the measured request sequence.
    pub index: usize,
    /// Dataset sample id (`question_id` for TextVQA, line number for mm_custom).
    pub sample_id: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `tp[0]` just before the request is sent, then one point per parsed stream event
    /// (stream) or one after the whole body was read (non-stream); seconds on the run clock.
    pub time_points: Vec<f64>,
    /// Generated text (`delta.content` / `message.content` / `text` / `generated_text`).
    pub content: String,
    /// Reasoning text (`reasoning_content` / `reasoning`), if the server splits it out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// What the server said about token counts.
    pub usage: Usage,
    /// Whether the request's content included images or video (AISBench `is_mm_prompt`).
    pub multimodal: bool,
}

impl RequestRecord {
    /// AISBench `Output.get_prediction`: reasoning + `</think>` + content when reasoning
    /// was returned separately, else the content.
    pub fn prediction(&self) -> String {
        if self.reasoning.is_empty() {
            self.content.clone()
        } else if self.content.is_empty() {
            self.reasoning.clone()
        } else {
            format!("{}</think>{}", self.reasoning, self.content)
        }
    }
}

/// Filled by a [`super::backends::Backend`] while one request runs. Every timestamp comes from
/// the shared [`Clock`], so all backends are timed identically.
#[derive(Debug)]
pub struct Recorder {
    clock: Clock,
    record: RequestRecord,
}

impl Recorder {
    pub fn new(clock: Clock, index: usize, sample_id: String, multimodal: bool) -> Self {
        Recorder {
            clock,
            record: RequestRecord {
                index,
                sample_id,
                multimodal,
                ..RequestRecord::default()
            },
        }
    }

    /// Forgets everything recorded so far (a retry starts afresh).
    pub fn reset(&mut self) {
        let r = &mut self.record;
        r.time_points.clear();
        r.content.clear();
        r.reasoning.clear();
        r.usage = Usage::default();
        r.error = None;
        r.success = false;
    }

    /// Records a time point now (`Output.record_time_point`).
    pub fn mark(&mut self) {
        let t = self.clock.now();
        self.record.time_points.push(t);
    }

    /// Records a time point taken earlier (e.g. when the bytes of an event arrived).
    pub fn mark_at(&mut self, t: f64) {
        self.record.time_points.push(t);
    }

    pub fn now(&self) -> f64 {
        self.clock.now()
    }

    pub fn push_content(&mut self, text: &str) {
        self.record.content.push_str(text);
    }

    pub fn set_content(&mut self, text: String) {
        self.record.content = text;
    }

    pub fn push_reasoning(&mut self, text: &str) {
        self.record.reasoning.push_str(text);
    }

    pub fn set_usage(&mut self, usage: Usage) {
        self.record.usage = usage;
    }

    pub fn record(&self) -> &RequestRecord {
        &self.record
    }

    /// Finishes the request: success, or failure with a reason.
    pub fn finish(mut self, result: Result<(), String>) -> RequestRecord {
        match result {
            Ok(()) => {
                self.record.success = true;
                self.record.error = None;
            }
            Err(e) => {
                self.record.success = false;
                self.record.error = Some(e);
            }
        }
        self.record
    }
}
