//! MindIE native `POST /infer` (spec §1.7; AISBench `MindieStreamApi`): body
//! `{"inputs": [parts], "stream", "parameters": {"temperature", "ignore_eos",
//! "max_new_tokens", "details": true}}`. Stream frames are `data: {...}` with
//! `token.text` deltas and, in the last frame, the full `generated_text`; there is no
//! `[DONE]`. `details.generated_tokens` (asked for with `details: true`) is taken as the
//! server's output token count; the protocol has no prompt token count.

use serde_json::Value;

use super::framing::{Framer, SseFramer};
use super::http::{content_json, exchange, HttpTarget, Protocol};
use super::{Backend, BenchRequest, BoxFuture, GenParams};
use crate::bench::dataset::Part;
use crate::bench::record::{Clock, Recorder, RequestRecord, Usage};
use crate::wire::mindie::{InferParameters, InferRequest};

pub struct MindieInfer {
    target: HttpTarget,
    params: GenParams,
}

impl MindieInfer {
    pub fn new(target: HttpTarget, params: GenParams) -> Self {
        MindieInfer { target, params }
    }
}

pub fn request_body(params: &GenParams, parts: &[Part]) -> Value {
    let body = InferRequest {
        inputs: content_json(parts),
        stream: params.stream,
        parameters: InferParameters {
            temperature: Some(params.temperature),
            ignore_eos: Some(params.ignore_eos),
            max_new_tokens: Some(params.max_tokens as u64),
            details: Some(true),
        },
    };
    serde_json::to_value(body).unwrap_or_default()
}

/// Reads `/infer` responses, field by field rather than through
/// [`crate::wire::mindie::InferFrame`]: MindIE builds differ in which fields a frame carries,
/// and a missing one must not lose the others.
pub struct InferProtocol;

fn details(v: &Value, rec: &mut Recorder) {
    if let Some(n) = v
        .pointer("/details/generated_tokens")
        .and_then(Value::as_u64)
    {
        rec.set_usage(Usage {
            prompt_tokens: None,
            completion_tokens: Some(n),
        });
    }
}

fn check_error(v: &Value) -> Result<(), String> {
    match v.get("error") {
        Some(e) => Err(format!("server error: {e}")),
        None => Ok(()),
    }
}

impl Protocol for InferProtocol {
    fn framer(&self) -> Framer {
        Framer::Sse(SseFramer::new())
    }

    fn on_event(&self, event: &Value, rec: &mut Recorder) -> Result<(), String> {
        check_error(event)?;
        if let Some(t) = event.pointer("/token/text").and_then(Value::as_str) {
            rec.push_content(t);
        }
        if let Some(full) = event.get("generated_text").and_then(Value::as_str) {
            rec.set_content(full.to_string());
        }
        details(event, rec);
        Ok(())
    }

    fn on_body(&self, body: &Value, rec: &mut Recorder) -> Result<(), String> {
        check_error(body)?;
        let text = body
            .get("generated_text")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("expected {{\"generated_text\": ...}}, got {body}"))?;
        rec.set_content(text.to_string());
        details(body, rec);
        Ok(())
    }
}

impl Backend for MindieInfer {
    fn name(&self) -> String {
        if self.params.stream {
            "mindie-infer (stream)".into()
        } else {
            "mindie-infer (non-stream)".into()
        }
    }

    fn streaming(&self) -> bool {
        self.params.stream
    }

    fn send<'a>(&'a self, req: &'a BenchRequest, clock: Clock) -> BoxFuture<'a, RequestRecord> {
        Box::pin(async move {
            let mut rec = req.recorder(clock);
            let result = match req.parts() {
                Ok(parts) => {
                    let body = request_body(&self.params, &parts);
                    exchange(
                        &self.target,
                        "/infer",
                        &body,
                        self.params.stream,
                        &InferProtocol,
                        &mut rec,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            rec.finish(result)
        })
    }
}
