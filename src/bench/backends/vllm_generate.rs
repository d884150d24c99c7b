//! MindIE's vLLM-compatible `POST /generate` (spec §1.4): body `{"prompt": [parts],
//! "max_tokens", "temperature", "ignore_eos", "stream", ["model"]}`. Non-stream answers
//! `{"text": [<first text item of the prompt> + " " + <generated>]}`; the stream is a series
//! of `{"text": [<delta>]}` objects each ended by `\0` (no SSE framing, no `[DONE]`).
//! The protocol reports no usage, so token counts fall back to the tokenizer (`--tokenizer`).

use serde_json::Value;

use super::framing::{Framer, NulFramer};
use super::http::{content_json, exchange, HttpTarget, Protocol};
use super::{Backend, BenchRequest, BoxFuture, GenParams};
use crate::bench::dataset::Part;
use crate::bench::record::{Clock, Recorder, RequestRecord};
use crate::wire::vllm::{GenerateRequest, GenerateText};

pub struct VllmGenerate {
    target: HttpTarget,
    params: GenParams,
}

impl VllmGenerate {
    pub fn new(target: HttpTarget, params: GenParams) -> Self {
        VllmGenerate { target, params }
    }
}

pub fn request_body(params: &GenParams, parts: &[Part]) -> Value {
    let body = GenerateRequest {
        prompt: content_json(parts),
        max_tokens: Some(params.max_tokens as u64),
        temperature: Some(params.temperature),
        ignore_eos: Some(params.ignore_eos),
        stream: Some(params.stream),
        model: params.model.clone(),
    };
    serde_json::to_value(body).unwrap_or_default()
}

/// Reads `/generate` responses; `prompt_text` is the prompt's first text item, which the
/// non-stream answer repeats before the generated text.
pub struct GenerateProtocol {
    pub prompt_text: String,
}

fn first_text(v: &Value) -> Result<String, String> {
    if let Some(e) = v.get("error") {
        return Err(format!("server error: {e}"));
    }
    serde_json::from_value::<GenerateText>(v.clone())
        .ok()
        .and_then(|g| g.text.into_iter().next())
        .ok_or_else(|| format!("expected {{\"text\": [...]}}, got {v}"))
}

impl Protocol for GenerateProtocol {
    fn framer(&self) -> Framer {
        Framer::Nul(NulFramer::new())
    }

    fn on_event(&self, event: &Value, rec: &mut Recorder) -> Result<(), String> {
        let t = first_text(event)?;
        rec.push_content(&t);
        Ok(())
    }

    fn on_body(&self, body: &Value, rec: &mut Recorder) -> Result<(), String> {
        let t = first_text(body)?;
        let prefix = format!("{} ", self.prompt_text);
        let text = t.strip_prefix(&prefix).map(str::to_string).unwrap_or(t);
        rec.set_content(text);
        Ok(())
    }
}

impl Backend for VllmGenerate {
    fn name(&self) -> String {
        if self.params.stream {
            "vllm-generate (stream)".into()
        } else {
            "vllm-generate (non-stream)".into()
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
                    let prompt_text = parts
                        .iter()
                        .find_map(|p| match p {
                            Part::Text(t) => Some(t.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    let body = request_body(&self.params, &parts);
                    let proto = GenerateProtocol { prompt_text };
                    exchange(
                        &self.target,
                        "/generate",
                        &body,
                        self.params.stream,
                        &proto,
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
