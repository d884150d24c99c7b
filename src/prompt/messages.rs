//! OpenAI-style chat messages (the shape the HTTP server and `preprocess --messages` accept).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::media::{ImageInput, MediaError, MediaSource, VideoInput};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Plain text or a list of parts; absent/`null` for assistant turns that only call tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part. Besides OpenAI's `text` / `image_url` / `video_url`, the Hugging Face /
/// qwen-vl-utils spellings `{"type":"image","image":…}` and `{"type":"video","video":…}` are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: UrlRef,
    },
    VideoUrl {
        video_url: VideoRef,
    },
    Image {
        #[serde(alias = "url", alias = "path")]
        image: String,
    },
    Video {
        #[serde(alias = "url", alias = "path")]
        video: VideoRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<f64>,
    },
}

/// `"url"` or `{"url": "…", "detail": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UrlRef {
    Url(String),
    Object {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

impl UrlRef {
    pub fn url(&self) -> &str {
        match self {
            UrlRef::Url(u) | UrlRef::Object { url: u, .. } => u,
        }
    }
}

/// A video: one URL, `{"url": …}`, a list of frame URLs, or `{"frames": [...], "fps": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VideoRef {
    Url(String),
    Frames(Vec<String>),
    Object {
        url: String,
    },
    FrameObject {
        frames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<f64>,
    },
}

/// An assistant tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

/// Function name and arguments (a JSON string, as OpenAI sends it, or an object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

/// A visual item in message order.
#[derive(Debug, Clone, PartialEq)]
pub enum Visual {
    Image(ImageInput),
    Video(VideoInput),
}

fn video_input(v: &VideoRef, fps: Option<f64>) -> Result<VideoInput, MediaError> {
    let frames = |list: &[String], fps: Option<f64>| -> Result<VideoInput, MediaError> {
        Ok(VideoInput::Frames {
            frames: list
                .iter()
                .map(|s| MediaSource::parse(s))
                .collect::<Result<_, _>>()?,
            fps,
        })
    };
    match v {
        VideoRef::Url(u) | VideoRef::Object { url: u } => {
            Ok(VideoInput::Source(MediaSource::parse(u)?))
        }
        VideoRef::Frames(list) => frames(list, fps),
        VideoRef::FrameObject {
            frames: list,
            fps: f,
        } => frames(list, f.or(fps)),
    }
}

/// Collects the images and videos of all messages in order of appearance (the order in which the
/// chat template emits their placeholders).
pub fn collect_visuals(messages: &[ChatMessage]) -> Result<Vec<Visual>, MediaError> {
    let mut out = Vec::new();
    for m in messages {
        if let Some(MessageContent::Parts(parts)) = &m.content {
            for p in parts {
                match p {
                    ContentPart::Text { .. } => {}
                    ContentPart::ImageUrl { image_url } => out.push(Visual::Image(ImageInput {
                        source: MediaSource::parse(image_url.url())?,
                    })),
                    ContentPart::Image { image } => out.push(Visual::Image(ImageInput {
                        source: MediaSource::parse(image)?,
                    })),
                    ContentPart::VideoUrl { video_url } => {
                        out.push(Visual::Video(video_input(video_url, None)?))
                    }
                    ContentPart::Video { video, fps } => {
                        out.push(Visual::Video(video_input(video, *fps)?))
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Converts messages into the JSON the chat template sees: the Hugging Face processor's shape,
/// where each visual part is `{"type": "image"}` / `{"type": "video"}` and content is never null.
pub fn template_messages(messages: &[ChatMessage]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut obj = Map::new();
            obj.insert("role".into(), Value::String(m.role.clone()));
            let content = match &m.content {
                None => Value::String(String::new()),
                Some(MessageContent::Text(t)) => Value::String(t.clone()),
                Some(MessageContent::Parts(parts)) => Value::Array(
                    parts
                        .iter()
                        .map(|p| match p {
                            ContentPart::Text { text } => json!({"type": "text", "text": text}),
                            ContentPart::ImageUrl { .. } | ContentPart::Image { .. } => {
                                json!({"type": "image"})
                            }
                            ContentPart::VideoUrl { .. } | ContentPart::Video { .. } => {
                                json!({"type": "video"})
                            }
                        })
                        .collect(),
                ),
            };
            obj.insert("content".into(), content);
            if let Some(calls) = &m.tool_calls {
                obj.insert(
                    "tool_calls".into(),
                    serde_json::to_value(calls).unwrap_or(Value::Null),
                );
            }
            for (k, v) in [
                ("tool_call_id", &m.tool_call_id),
                ("name", &m.name),
                ("reasoning_content", &m.reasoning_content),
            ] {
                if let Some(v) = v {
                    obj.insert(k.into(), Value::String(v.clone()));
                }
            }
            Value::Object(obj)
        })
        .collect()
}
