//! The library [`Pipeline`] as a benchmark target (`qwen3vl bench --in-process --model DIR`):
//! the requests the OpenAI chat backend would send, handed to [`Pipeline::chat`] instead of
//! going over HTTP. Comparing the two runs separates the engine's cost from the server's
//! (HTTP, JSON, SSE framing, connection handling).
//!
//! The pipeline is started from a [`ServiceConfig`] exactly as `qwen3vl serve` starts its own
//! (MindIE defaults, or the settings of a MindIE `config.json`), with one exception: media may be
//! read from anywhere by default, because the dataset's files belong to whoever runs the bench.
//!
//! Timing, streaming: `tp[0]` just before the request is submitted, then one point per `Delta`
//! that carries generated tokens, i.e. per token as it leaves the stream stage. An SSE client
//! sees the same tokens as content chunks, plus a role chunk with the first token and a usage
//! chunk after the last, which add time points here absent; text flushed at the end without a
//! token (the detokenizer's tail) joins the content without a point of its own. Non-streaming:
//! one point when `Finished` arrives. Token counts are the `Finished` event's usage, the numbers
//! the server puts in `usage`.

use std::path::PathBuf;

use futures::StreamExt;

use super::{Backend, BenchRequest, BoxFuture, GenParams};
use crate::bench::dataset::Part;
use crate::bench::record::{Clock, Recorder, RequestRecord, Usage};
use crate::bench::{BenchError, Result};
use crate::pipeline::{Event, Pipeline, SamplingParams};
use crate::prompt::{ChatMessage, ContentPart, MessageContent, UrlRef, VideoRef};
use crate::service::{pipeline_builder, ServiceConfig, Settings};

/// The pipeline configuration for `settings` (`model_dir` must be set). Without a `media_root`
/// the whole file system is readable (the server's default, `/data/multimodal_inputs`, would
/// refuse every dataset stored elsewhere).
pub fn service_config(mut settings: Settings) -> Result<ServiceConfig> {
    settings
        .media_root
        .get_or_insert_with(|| PathBuf::from("/"));
    settings
        .finish()
        .map_err(|e| BenchError::Config(format!("--in-process: {e}")))
}

/// The user message the OpenAI backend would send for `parts` (media first, then the text).
pub fn chat_messages(parts: &[Part]) -> std::result::Result<Vec<ChatMessage>, String> {
    let content = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => Ok(ContentPart::Text { text: t.clone() }),
            // The `{"url": ...}` object forms, as `content_json` writes them.
            Part::Image(u) => Ok(ContentPart::ImageUrl {
                image_url: UrlRef::Object {
                    url: u.clone(),
                    detail: None,
                    settings: Default::default(),
                },
                settings: Default::default(),
            }),
            Part::Video(u) => Ok(ContentPart::VideoUrl {
                video_url: VideoRef::Object {
                    url: u.clone(),
                    settings: Default::default(),
                },
                settings: Default::default(),
            }),
            Part::Audio(_) => {
                Err("audio inputs are not supported: Qwen3-VL has no audio encoder".to_string())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(vec![ChatMessage {
        role: "user".into(),
        content: Some(MessageContent::Parts(content)),
        tool_calls: None,
        tool_call_id: None,
        name: None,
        reasoning_content: None,
    }])
}

/// The engine parameters the server derives from the OpenAI body's `temperature`,
/// `ignore_eos` and `max_tokens` (everything else takes the checkpoint's defaults there too).
pub fn sampling(params: &GenParams) -> SamplingParams {
    SamplingParams {
        temperature: Some(params.temperature as f32),
        ignore_eos: params.ignore_eos,
        max_tokens: Some(params.max_tokens as usize),
        ..Default::default()
    }
}

/// The in-process backend: one pipeline shared by every request of the run.
pub struct InProcess {
    pipeline: Pipeline,
    params: GenParams,
    model_dir: PathBuf,
}

impl InProcess {
    /// Loads the model and starts the pipeline. Blocks for as long as loading takes, so call it
    /// off the async worker threads.
    pub fn start(config: &ServiceConfig, params: GenParams, progress: bool) -> Result<Self> {
        let model_dir = config.model_dir.clone();
        let fail = |message: String| BenchError::Pipeline {
            model_dir: model_dir.display().to_string(),
            message,
        };
        let mut builder = pipeline_builder(config);
        if progress {
            builder = builder.on_progress(|m| tracing::info!("[in-process] {m}"));
        }
        let pipeline = builder.build().map_err(|e| fail(e.to_string()))?;
        // Chat requests need the tokenizer; without it every request would fail the same way.
        if !pipeline.has_processor() {
            return Err(fail(
                "no tokenizer.json in the model folder; pass --tokenizer".into(),
            ));
        }
        Ok(InProcess {
            pipeline,
            params,
            model_dir,
        })
    }

    pub fn model_dir(&self) -> &std::path::Path {
        &self.model_dir
    }

    async fn exchange(
        &self,
        messages: Vec<ChatMessage>,
        rec: &mut Recorder,
    ) -> std::result::Result<(), String> {
        rec.mark(); // tp[0]
        let mut events = self.pipeline.chat(messages, sampling(&self.params));
        while let Some(ev) = events.next().await {
            match ev {
                Event::Delta {
                    text, token_ids, ..
                } => {
                    if self.params.stream && !token_ids.is_empty() {
                        rec.mark();
                    }
                    rec.push_content(&text);
                }
                Event::Finished { usage, .. } => {
                    if !self.params.stream {
                        rec.mark();
                    }
                    rec.set_usage(Usage {
                        prompt_tokens: Some(usage.prompt_tokens as u64),
                        completion_tokens: Some(usage.completion_tokens as u64),
                    });
                    // One choice (n = 1): nothing follows that the bench needs.
                    return Ok(());
                }
                Event::Error(e) => return Err(format!("pipeline: {e}")),
            }
        }
        Err("pipeline: the event stream ended before the request finished".into())
    }
}

impl Backend for InProcess {
    fn name(&self) -> String {
        if self.params.stream {
            "in-process (stream)".into()
        } else {
            "in-process (non-stream)".into()
        }
    }

    fn streaming(&self) -> bool {
        self.params.stream
    }

    fn send<'a>(&'a self, req: &'a BenchRequest, clock: Clock) -> BoxFuture<'a, RequestRecord> {
        Box::pin(async move {
            let mut rec = req.recorder(clock);
            // Content is built before tp[0], as for HTTP: file reads and base64 are not latency.
            let result = match req.parts().and_then(|p| chat_messages(&p)) {
                Ok(messages) => self.exchange(messages, &mut rec).await,
                Err(e) => Err(e),
            };
            rec.finish(result)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(stream: bool) -> GenParams {
        GenParams {
            model: None,
            max_tokens: 7,
            temperature: 0.5,
            ignore_eos: true,
            stream,
        }
    }

    #[test]
    fn messages_match_the_openai_body() {
        let parts = vec![
            Part::Image("file:///d/a.png".into()),
            Part::Video("data:video/mp4;base64,AAAA".into()),
            Part::Text("what?".into()),
        ];
        let ours = serde_json::to_value(chat_messages(&parts).unwrap()).unwrap();
        let body = super::super::openai::request_body(&params(true), &parts);
        assert_eq!(ours, body["messages"]);
        let err = chat_messages(&[Part::Audio("file:///a.wav".into())]).unwrap_err();
        assert!(err.contains("audio"), "{err}");
    }

    #[test]
    fn sampling_carries_the_request_fields() {
        let s = sampling(&params(false));
        assert_eq!(s.temperature, Some(0.5));
        assert_eq!(s.max_tokens, Some(7));
        assert!(s.ignore_eos);
        assert_eq!(s.n, None);
        assert_eq!(s.seed, None);
    }

    #[test]
    fn media_may_come_from_anywhere_unless_limited() {
        let base = Settings {
            model_dir: Some("/m".into()),
            ..Default::default()
        };
        let c = service_config(base.clone()).unwrap();
        assert_eq!(c.media.media_root, Some(PathBuf::from("/")));
        let c = service_config(Settings {
            media_root: Some("/data".into()),
            ..base
        })
        .unwrap();
        assert_eq!(c.media.media_root, Some(PathBuf::from("/data")));
        let err = service_config(Settings::default()).unwrap_err().to_string();
        assert!(
            err.contains("--in-process") && err.contains("model"),
            "{err}"
        );
    }
}
