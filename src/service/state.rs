//! What every handler shares: the pipeline, the tokenizer (raw-text prompts, `/v1/tokenizer`,
//! logprob token strings), the configuration, metrics, the connection limiter and the
//! stopping flag; plus the steps every inference route takes (admit, check the model name,
//! build the prompt, submit, wait for the first event).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::config::ServiceConfig;
use super::disconnect::PeerSocket;
use super::errors::ApiError;
use super::generation::Generation;
use super::limits::{LinkLimiter, LinkPermit};
use super::metrics::Metrics;
use crate::actors::error::RequestError;
use crate::engine::MultimodalInput;
use crate::media::MediaOverrides;
use crate::pipeline::{ChatMessage, Pipeline, SamplingParams};
use crate::prompt::{ContentPart, MessageContent, Tokenizer};

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub tokenizer: Option<Arc<Tokenizer>>,
    pub config: ServiceConfig,
    pub metrics: Metrics,
    pub links: LinkLimiter,
    /// Set on SIGTERM: new requests get 503 while in-flight ones finish.
    pub stopping: AtomicBool,
    /// Turns `true` at the shutdown deadline: every in-flight generation ends with an error
    /// naming the shutdown (see `service::shutdown`).
    pub cutoff: tokio::sync::watch::Sender<bool>,
    /// Unix seconds at start (`created` of `/v1/models/{m}`).
    pub created: u64,
    next_id: AtomicU64,
}

/// What a request asks the model to continue.
#[derive(Debug, Clone)]
pub enum PromptInput {
    /// Raw text, tokenized as is (no chat template).
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// Chat messages (chat template, media) with the request's `mm_processor_kwargs`.
    Chat(Vec<ChatMessage>, MediaOverrides),
}

impl PromptInput {
    /// MindIE's list prompts (`/generate` `prompt`, `/infer` and TGI `inputs`): the parts
    /// become one user message and go through the chat template with the generation prompt.
    pub fn from_parts(parts: Vec<ContentPart>, media: MediaOverrides) -> Self {
        PromptInput::Chat(
            vec![ChatMessage {
                role: "user".into(),
                content: Some(MessageContent::Parts(parts)),
                tool_calls: None,
                tool_call_id: None,
                name: None,
                reasoning_content: None,
            }],
            media,
        )
    }
}

/// Media items in a conversation (a frame list counts as one, as in the processor).
pub fn media_count(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .filter_map(|m| match &m.content {
            Some(MessageContent::Parts(p)) => Some(p),
            _ => None,
        })
        .flatten()
        .filter(|p| !matches!(p, ContentPart::Text { .. }))
        .count()
}

impl AppState {
    pub fn new(
        pipeline: Arc<Pipeline>,
        tokenizer: Option<Arc<Tokenizer>>,
        config: ServiceConfig,
    ) -> Self {
        AppState {
            pipeline,
            tokenizer,
            links: LinkLimiter::new(config.max_link_num),
            config,
            metrics: Metrics::default(),
            stopping: AtomicBool::new(false),
            cutoff: tokio::sync::watch::Sender::new(false),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            next_id: AtomicU64::new(0),
        }
    }

    /// MindIE's request id, used as the OpenAI `id`.
    pub fn request_id(&self) -> String {
        format!(
            "endpoint_common_{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The text of one token (log-prob entries); empty without a tokenizer.
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer
            .as_ref()
            .and_then(|t| t.decode(&[id], false).ok())
            .unwrap_or_default()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Count the request and take a `maxLinkNum` slot (waiting in the queue if needed).
    pub async fn admit(&self) -> Result<LinkPermit, ApiError> {
        self.metrics.received.fetch_add(1, Ordering::Relaxed);
        let refused = |e| {
            self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            e
        };
        if self.is_stopping() {
            return Err(refused(ApiError::unavailable("the server is stopping")));
        }
        let permit = self.links.acquire().await.map_err(refused)?;
        if self.is_stopping() {
            return Err(refused(ApiError::unavailable("the server is stopping")));
        }
        Ok(permit)
    }

    /// OpenAI endpoints: `model` must name the served model (MindIE: 422 "Model not found").
    pub fn check_model(&self, model: Option<&str>, required: bool) -> Result<(), ApiError> {
        check_model_name(&self.config.served_model_name, model, required)
    }

    pub fn tokenizer(&self) -> Result<&Arc<Tokenizer>, ApiError> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ApiError::generation(
                "the server has no tokenizer (tokenizer.json in the model folder or --tokenizer)",
            )
        })
    }

    /// Tokenize raw text off the HTTP worker (a 40 MB prompt takes a while).
    pub async fn encode(&self, text: String) -> Result<Vec<u32>, ApiError> {
        let tok = self.tokenizer()?.clone();
        let ids = actix_web::web::block(move || tok.encode(&text))
            .await
            .map_err(|e| ApiError::incomplete(format!("tokenizer worker: {e}")))?
            .map_err(|e| ApiError::validation(e.to_string()))?;
        if ids.is_empty() {
            return Err(ApiError::validation("the prompt is empty"));
        }
        Ok(ids)
    }

    /// [`AppState::encode`] for a prompt: unless truncation is on, a prompt over the input
    /// limit is refused at a cost proportional to the limit, not to the prompt.
    pub async fn encode_prompt(&self, text: String) -> Result<Vec<u32>, ApiError> {
        let sched = &self.config.schedule;
        if sched.truncation != crate::pipeline::Truncation::Error {
            return self.encode(text).await;
        }
        let max = sched
            .max_input_token_len
            .min(sched.max_seq_len.saturating_sub(1));
        let tok = self.tokenizer()?.clone();
        let ids = actix_web::web::block(move || tok.encode_limited(&text, max))
            .await
            .map_err(|e| ApiError::incomplete(format!("tokenizer worker: {e}")))?
            .map_err(|e| ApiError::validation(e.to_string()))?
            .map_err(|at_least| RequestError::PromptFarTooLong { at_least, max })?;
        if ids.is_empty() {
            return Err(ApiError::validation("the prompt is empty"));
        }
        Ok(ids)
    }

    /// Submit a request and wait for its first event. `params.seed` is filled in when absent
    /// so that it can be echoed back.
    pub async fn generate(
        self: &Arc<Self>,
        prompt: PromptInput,
        mut params: SamplingParams,
        permit: LinkPermit,
        peer: Option<PeerSocket>,
    ) -> Result<Generation, ApiError> {
        let seed = *params
            .seed
            .get_or_insert_with(crate::engine::sampling::rng::random_seed);
        let n = params.n.unwrap_or(1).max(1);
        let events = match prompt {
            PromptInput::Text(text) => {
                let ids = self.encode_prompt(text).await?;
                self.pipeline.generate(tokens_input(ids), params)
            }
            PromptInput::Tokens(ids) => {
                if ids.is_empty() {
                    return Err(ApiError::validation("the prompt is empty"));
                }
                self.pipeline.generate(tokens_input(ids), params)
            }
            PromptInput::Chat(messages, media) => {
                if messages.is_empty() {
                    return Err(ApiError::validation("`messages` must not be empty"));
                }
                let items = media_count(&messages);
                let limit = self.config.media.max_items;
                if items > limit {
                    return Err(ApiError::validation(format!(
                        "the request has {items} images/videos, more than the limit of {limit}"
                    )));
                }
                if !self.pipeline.has_processor() {
                    return Err(ApiError::generation(
                        "chat requests need a tokenizer (tokenizer.json in the model folder or --tokenizer)",
                    ));
                }
                self.pipeline.chat_with_media(messages, params, media)
            }
        };
        Generation::start(self.clone(), events, n, seed, permit, peer).await
    }
}

/// [`AppState::check_model`] without a server, for request validation that runs outside one
/// (the fuzz targets).
pub fn check_model_name(served: &str, model: Option<&str>, required: bool) -> Result<(), ApiError> {
    match model {
        None if !required => Ok(()),
        None => Err(ApiError::validation("the `model` field is required")),
        Some(m) if m == served => Ok(()),
        Some(_) => Err(ApiError::validation("Model not found")),
    }
}

fn tokens_input(ids: Vec<u32>) -> MultimodalInput {
    MultimodalInput {
        input_ids: ids,
        ..Default::default()
    }
}
