//! OpenAI chat completions (`POST /v1/chat/completions`), as AISBench `VLLMCustomAPIChat`
//! sends and parses it (spec §3.2): body `{"stream", "messages", ["stream_options":
//! {"include_usage": true}], "temperature", "ignore_eos", "max_tokens", "model"}`; stream
//! events append `choices[*].delta.content` and `reasoning_content|reasoning`, and usage is
//! read from any event with a non-empty `usage` (MindIE puts it in the last content chunk,
//! vLLM in a trailing `choices: []` chunk).

use serde_json::{json, Value};

use super::framing::{Framer, SseFramer};
use super::http::{content_json, exchange, HttpTarget, Protocol};
use super::{Backend, BenchRequest, BoxFuture, GenParams};
use crate::bench::record::{Clock, Recorder, RequestRecord, Usage};
use crate::wire::openai as wire;

pub struct OpenAiChat {
    target: HttpTarget,
    params: GenParams,
}

impl OpenAiChat {
    pub fn new(target: HttpTarget, params: GenParams) -> Self {
        OpenAiChat { target, params }
    }
}

/// The request body for one prompt.
pub fn request_body(params: &GenParams, parts: &[crate::bench::dataset::Part]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("stream".into(), json!(params.stream));
    m.insert(
        "messages".into(),
        json!([{"role": "user", "content": content_json(parts)}]),
    );
    if params.stream {
        m.insert("stream_options".into(), json!({"include_usage": true}));
    }
    m.insert("temperature".into(), json!(params.temperature));
    m.insert("ignore_eos".into(), json!(params.ignore_eos));
    m.insert("max_tokens".into(), json!(params.max_tokens));
    if let Some(model) = &params.model {
        m.insert("model".into(), json!(model));
    }
    Value::Object(m)
}

/// `_parse_usage`: a truthy `usage` sets both counts (missing fields count as 0).
fn record_usage(u: Option<&wire::Usage>, rec: &mut Recorder) {
    if let Some(u) = u {
        rec.set_usage(Usage {
            prompt_tokens: Some(u.prompt_tokens),
            completion_tokens: Some(u.completion_tokens),
        });
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The OpenAI chat response reader (typed by [`crate::wire::openai`], forgiving as AISBench).
pub struct ChatProtocol;

impl Protocol for ChatProtocol {
    fn framer(&self) -> Framer {
        Framer::Sse(SseFramer::new())
    }

    fn on_event(&self, event: &Value, rec: &mut Recorder) -> Result<(), String> {
        let chunk: wire::ChatChunk = serde_json::from_value(event.clone()).unwrap_or_default();
        for c in &chunk.choices {
            if let Some(t) = non_empty(&c.delta.content) {
                rec.push_content(t);
            }
            if let Some(t) = non_empty(&c.delta.reasoning_content).or(non_empty(&c.delta.reasoning))
            {
                rec.push_reasoning(t);
            }
        }
        record_usage(chunk.usage.flatten().as_ref(), rec);
        Ok(())
    }

    fn on_body(&self, body: &Value, rec: &mut Recorder) -> Result<(), String> {
        if let Some(e) = body.get("error") {
            return Err(format!("server error: {e}"));
        }
        let whole: wire::ChatCompletion = serde_json::from_value(body.clone()).unwrap_or_default();
        for c in &whole.choices {
            if let Some(t) = non_empty(&c.message.content) {
                rec.push_content(t);
            }
            if let Some(t) =
                non_empty(&c.message.reasoning_content).or(non_empty(&c.message.reasoning))
            {
                rec.push_reasoning(t);
            }
        }
        record_usage(whole.usage.as_ref(), rec);
        Ok(())
    }
}

impl Backend for OpenAiChat {
    fn name(&self) -> String {
        if self.params.stream {
            "openai-chat (stream)".into()
        } else {
            "openai-chat (non-stream)".into()
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
                        "/v1/chat/completions",
                        &body,
                        self.params.stream,
                        &ChatProtocol,
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
