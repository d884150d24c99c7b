//! Shared HTTP plumbing: the client, `tp[0]` / per-event timing, retries
//! (AISBench `BaseAPIModel.generate`: `retry` attempts on exceptions, none on an HTTP error).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::framing::{Frame, Framer};
use crate::bench::record::Recorder;
use crate::bench::{BenchError, Result};

/// Where and how to send requests.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub client: reqwest::Client,
    /// `http://host:port` (no trailing slash).
    pub base_url: String,
    pub api_key: Option<String>,
    /// Attempts per request (AISBench `retry`, default 2); at least 1.
    pub attempts: u32,
}

impl HttpTarget {
    /// A client with a pool sized like AISBench's connector (`concurrency + 1`) and an
    /// optional whole-request timeout.
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        attempts: u32,
        concurrency: usize,
        timeout: Option<Duration>,
    ) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency + 1)
            .tcp_nodelay(true);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        let client = b.build().map_err(|e| BenchError::Http(e.to_string()))?;
        Ok(HttpTarget {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            attempts: attempts.max(1),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// `GET /v1/models` → `data[0].id` (AISBench `_get_service_model_path`).
    pub async fn served_model(&self) -> Result<String> {
        let mut req = self.client.get(self.url("/v1/models"));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| BenchError::Http(format!("GET /v1/models: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| BenchError::Http(format!("GET /v1/models: {e}")))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        body.pointer("/data/0/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                BenchError::Http(format!(
                    "GET /v1/models ({status}) named no model; pass --model"
                ))
            })
    }
}

/// How one wire protocol reads responses.
pub trait Protocol: Send + Sync {
    fn framer(&self) -> Framer;
    /// One parsed stream event.
    fn on_event(&self, event: &Value, rec: &mut Recorder) -> std::result::Result<(), String>;
    /// A whole non-stream body.
    fn on_body(&self, body: &Value, rec: &mut Recorder) -> std::result::Result<(), String>;
}

enum AttemptError {
    /// A transport failure or a malformed response: tried again.
    Retry(String),
    /// An HTTP error status: recorded as is.
    Final(String),
}

fn transport(e: reqwest::Error) -> AttemptError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    AttemptError::Retry(format!("{kind}: {e}"))
}

fn parse_json(payload: &str) -> std::result::Result<Value, AttemptError> {
    serde_json::from_str(payload).map_err(|_| {
        let mut shown: String = payload.chars().take(200).collect();
        if shown.len() < payload.len() {
            shown.push('…');
        }
        AttemptError::Retry(format!("Unexpected response format: {shown}"))
    })
}

async fn attempt(
    target: &HttpTarget,
    path: &str,
    body: &[u8],
    stream: bool,
    proto: &dyn Protocol,
    rec: &mut Recorder,
) -> std::result::Result<(), AttemptError> {
    let mut req = target
        .client
        .post(target.url(path))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(k) = &target.api_key {
        req = req.bearer_auth(k);
    }
    rec.mark(); // tp[0]
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        let reason = status.canonical_reason().unwrap_or("");
        return Err(AttemptError::Final(
            format!("HTTP {} {reason}: {}", status.as_u16(), text.trim())
                .trim_end_matches(": ")
                .to_string(),
        ));
    }
    if !stream {
        let bytes = resp.bytes().await.map_err(transport)?;
        rec.mark();
        let text = String::from_utf8_lossy(&bytes);
        let v = parse_json(&text)?;
        return proto.on_body(&v, rec).map_err(AttemptError::Retry);
    }
    let mut framer = proto.framer();
    let mut body = resp.bytes_stream();
    let handle = |frame: Frame, rec: &mut Recorder| -> std::result::Result<bool, AttemptError> {
        match frame {
            Frame::Done => Ok(true),
            Frame::Event(payload) => {
                rec.mark();
                let v = parse_json(&payload)?;
                proto.on_event(&v, rec).map_err(AttemptError::Retry)?;
                Ok(false)
            }
        }
    };
    'outer: while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(transport)?;
        for frame in framer.push(&chunk).map_err(AttemptError::Retry)? {
            if handle(frame, rec)? {
                break 'outer;
            }
        }
    }
    if let Some(frame) = framer.finish().map_err(AttemptError::Retry)? {
        handle(frame, rec)?;
    }
    Ok(())
}

/// Sends `body` to `path`, retrying transport failures and malformed responses up to
/// `target.attempts` times (each retry starts a fresh record). Returns the failure reason.
pub async fn exchange(
    target: &HttpTarget,
    path: &str,
    body: &Value,
    stream: bool,
    proto: &dyn Protocol,
    rec: &mut Recorder,
) -> std::result::Result<(), String> {
    let bytes = serde_json::to_vec(body).map_err(|e| format!("request body: {e}"))?;
    let mut last = String::new();
    for _ in 0..target.attempts {
        rec.reset();
        match attempt(target, path, &bytes, stream, proto, rec).await {
            Ok(()) => return Ok(()),
            Err(AttemptError::Final(e)) => return Err(e),
            Err(AttemptError::Retry(e)) => last = e,
        }
    }
    Err(last)
}

/// `{"type":"image_url","image_url":{"url":...}}` style content parts (OpenAI chat and the
/// MindIE list prompts accept the `{url}` object form).
pub fn content_json(parts: &[crate::bench::dataset::Part]) -> Value {
    use crate::bench::dataset::Part;
    Value::Array(
        parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => serde_json::json!({"type": "text", "text": t}),
                Part::Image(u) => serde_json::json!({"type": "image_url", "image_url": {"url": u}}),
                Part::Video(u) => serde_json::json!({"type": "video_url", "video_url": {"url": u}}),
                Part::Audio(u) => serde_json::json!({"type": "audio_url", "audio_url": {"url": u}}),
            })
            .collect(),
    )
}
