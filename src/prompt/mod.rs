//! Tokenizer, chat template, placeholder expansion and incremental detokenization.
//!
//! [`Processor`] is the entry point: it turns OpenAI-style [`ChatMessage`]s into the
//! `input_ids` / `pixel_values` / `image_grid_thw` / `pixel_values_videos` / `video_grid_thw`
//! that the Hugging Face `Qwen3VLProcessor` produces.

pub mod defaults;
pub mod detok;
pub mod escape;
pub mod messages;
pub mod processor;
pub mod template;
pub mod tokenizer;

pub use self::defaults::write_default_processor_files;
pub use self::detok::IncrementalDetokenizer;
pub use self::messages::{
    ChatMessage, ContentPart, FunctionCall, MessageContent, ToolCall, UrlRef, VideoRef,
};
pub use self::processor::{ProcessedInputs, Processor};
pub use self::template::{ChatTemplate, RenderOptions, BUILTIN_CHAT_TEMPLATE};
pub use self::tokenizer::Tokenizer;

use crate::media::MediaError;

/// An error while turning a conversation into model inputs.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("processor config: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("the conversation has no messages")]
    NoMessages,
    #[error("media item {index}: {source}")]
    Media {
        index: usize,
        #[source]
        source: MediaError,
    },
    #[error(
        "the prompt has {placeholders} {kind} placeholders but {items} {kind} items were given"
    )]
    PlaceholderMismatch {
        kind: &'static str,
        placeholders: usize,
        items: usize,
    },
    #[error("invalid processor setting {0}")]
    Setting(#[from] crate::media::KwargError),
    #[error("writing output: {0}")]
    Output(String),
    #[error("internal error: {0}")]
    Internal(String),
}
