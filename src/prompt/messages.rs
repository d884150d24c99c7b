//! OpenAI-style chat messages (the shape the HTTP server and `preprocess --messages` accept).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::media::overrides::KwargScope;
use crate::media::{ImageInput, KwargError, MediaError, MediaOverrides, MediaSource, VideoInput};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part. Besides OpenAI's `text` / `image_url` / `video_url`, the Hugging Face /
/// qwen-vl-utils spellings `{"type":"image","image":…}` and `{"type":"video","video":…}` are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: UrlRef,
        /// Processor settings beside `image_url` (see [`MediaOverrides`]).
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
    VideoUrl {
        video_url: VideoRef,
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
    Image {
        #[serde(alias = "url", alias = "path")]
        image: String,
        /// qwen-vl-utils' per-image fields: `min_pixels`, `max_pixels`, `size`.
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
    Video {
        #[serde(alias = "url", alias = "path")]
        video: VideoRef,
        /// For a frame list, the rate the frames were taken at; for a video file, the sampling
        /// rate (qwen-vl-utils' meaning).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<f64>,
        /// qwen-vl-utils' per-video fields: `nframes`/`num_frames`, `min_frames`, `max_frames`,
        /// `total_pixels`, `size`.
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
}

/// `"url"` or `{"url": "…", "detail": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum UrlRef {
    Url(String),
    Object {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// Processor settings inside the object (`{"url": …, "max_pixels": 200704}`).
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
}

impl UrlRef {
    pub fn url(&self) -> &str {
        match self {
            UrlRef::Url(u) | UrlRef::Object { url: u, .. } => u,
        }
    }

    fn settings(&self) -> Option<&Map<String, Value>> {
        match self {
            UrlRef::Url(_) => None,
            UrlRef::Object { settings, .. } => Some(settings),
        }
    }
}

/// A video: one URL, `{"url": …}`, a list of frame URLs, or `{"frames": [...], "fps": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum VideoRef {
    Url(String),
    Frames(Vec<String>),
    Object {
        url: String,
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
    FrameObject {
        frames: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fps: Option<f64>,
        #[serde(flatten, default, skip_serializing_if = "Map::is_empty")]
        settings: Map<String, Value>,
    },
}

impl VideoRef {
    fn settings(&self) -> Option<&Map<String, Value>> {
        match self {
            VideoRef::Url(_) | VideoRef::Frames(_) => None,
            VideoRef::Object { settings, .. } | VideoRef::FrameObject { settings, .. } => {
                Some(settings)
            }
        }
    }
}

/// An assistant tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: FunctionCall,
}

/// Function name and arguments (a JSON string, as OpenAI sends it, or an object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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

/// A visual item with the processor settings given on it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualRef {
    pub visual: Visual,
    /// Per-item settings (empty when none were given).
    pub overrides: MediaOverrides,
    /// Where the item is in the request (`messages[i].content[j]`), for error messages.
    pub path: String,
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
        VideoRef::Url(u) | VideoRef::Object { url: u, .. } => match MediaSource::parse(u)? {
            // vLLM's (and AISBench's) frame-list data URL: `data:video/jpeg;base64,f1,f2,…`,
            // each part one JPEG frame.
            MediaSource::DataUrl { mime, base64 } if mime.eq_ignore_ascii_case("video/jpeg") => {
                Ok(VideoInput::Frames {
                    frames: base64
                        .split(',')
                        .map(|f| MediaSource::DataUrl {
                            mime: "image/jpeg".into(),
                            base64: f.to_string(),
                        })
                        .collect(),
                    fps,
                })
            }
            src => Ok(VideoInput::Source(src)),
        },
        VideoRef::Frames(list) => frames(list, fps),
        VideoRef::FrameObject {
            frames: list,
            fps: f,
            ..
        } => frames(list, f.or(fps)),
    }
}

/// Collects the images and videos of all messages in order of appearance (the order in which the
/// chat template emits their placeholders).
pub fn collect_visuals(messages: &[ChatMessage]) -> Result<Vec<Visual>, VisualRefError> {
    Ok(collect_visual_refs(messages)?
        .into_iter()
        .map(|v| v.visual)
        .collect())
}

/// The http(s) URLs of a conversation with the index of the media item each belongs to (a frame
/// list gives several). Bad references are skipped: processing reports them.
pub fn http_sources(messages: &[ChatMessage]) -> Vec<(usize, String)> {
    let Ok(refs) = collect_visual_refs(messages) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let sources: Vec<&MediaSource> = match &r.visual {
            Visual::Image(img) => vec![&img.source],
            Visual::Video(VideoInput::Source(s)) => vec![s],
            Visual::Video(VideoInput::Frames { frames, .. }) => frames.iter().collect(),
        };
        out.extend(sources.into_iter().filter_map(|s| match s {
            MediaSource::Http(u) => Some((i, u.clone())),
            _ => None,
        }));
    }
    out
}

/// A bad media reference or a bad per-item processor setting.
#[derive(Debug, thiserror::Error)]
pub enum VisualRefError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Setting(#[from] KwargError),
}

/// [`collect_visuals`] with each item's processor settings (qwen-vl-utils fields on the part, or
/// inside the `image_url` / `video_url` object; the inner ones win).
pub fn collect_visual_refs(messages: &[ChatMessage]) -> Result<Vec<VisualRef>, VisualRefError> {
    let mut out = Vec::new();
    for (mi, m) in messages.iter().enumerate() {
        if let Some(MessageContent::Parts(parts)) = &m.content {
            for (pi, p) in parts.iter().enumerate() {
                let path = format!("messages[{mi}].content[{pi}]");
                let layered = |outer: &Map<String, Value>,
                               inner: Option<&Map<String, Value>>,
                               inner_name: &str,
                               scope: KwargScope|
                 -> Result<MediaOverrides, KwargError> {
                    let o = MediaOverrides::from_item(outer, &path, scope)?;
                    Ok(match inner {
                        Some(i) => o.then(&MediaOverrides::from_item(
                            i,
                            &format!("{path}.{inner_name}"),
                            scope,
                        )?),
                        None => o,
                    })
                };
                let item = match p {
                    ContentPart::Text { .. } => continue,
                    ContentPart::ImageUrl {
                        image_url,
                        settings,
                    } => VisualRef {
                        visual: Visual::Image(ImageInput {
                            source: MediaSource::parse(image_url.url())?,
                        }),
                        overrides: layered(
                            settings,
                            image_url.settings(),
                            "image_url",
                            KwargScope::Image,
                        )?,
                        path: path.clone(),
                    },
                    ContentPart::Image { image, settings } => VisualRef {
                        visual: Visual::Image(ImageInput {
                            source: MediaSource::parse(image)?,
                        }),
                        overrides: layered(settings, None, "", KwargScope::Image)?,
                        path: path.clone(),
                    },
                    ContentPart::VideoUrl {
                        video_url,
                        settings,
                    } => VisualRef {
                        visual: Visual::Video(video_input(video_url, None)?),
                        overrides: layered(
                            settings,
                            video_url.settings(),
                            "video_url",
                            KwargScope::Video,
                        )?,
                        path: path.clone(),
                    },
                    ContentPart::Video {
                        video,
                        fps,
                        settings,
                    } => {
                        let visual = video_input(video, *fps)?;
                        let mut overrides =
                            layered(settings, video.settings(), "video", KwargScope::Video)?;
                        // On a video file, `fps` is the sampling rate (on a frame list it is
                        // the rate the frames were taken at, used above).
                        if let (VideoInput::Source(_), Some(f)) = (&visual, fps) {
                            if !(*f > 0.0 && f.is_finite()) {
                                return Err(KwargError {
                                    field: format!("{path}.fps"),
                                    message: format!("must be a positive number, got {f}"),
                                }
                                .into());
                            }
                            if overrides.num_frames.is_none() {
                                overrides.fps = Some(*f);
                            }
                        }
                        VisualRef {
                            visual: Visual::Video(visual),
                            overrides,
                            path: path.clone(),
                        }
                    }
                };
                out.push(item);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_frame_list_data_urls_are_frame_lists() {
        let v = VideoRef::Url("data:video/jpeg;base64,QUFB,QkJC,Q0ND".into());
        match video_input(&v, Some(4.0)).unwrap() {
            VideoInput::Frames { frames, fps } => {
                assert_eq!(fps, Some(4.0));
                assert_eq!(
                    frames,
                    ["QUFB", "QkJC", "Q0ND"]
                        .map(|b| MediaSource::DataUrl {
                            mime: "image/jpeg".into(),
                            base64: b.into()
                        })
                        .to_vec()
                );
            }
            other => panic!("expected frames, got {other:?}"),
        }
        // An mp4 data URL stays one encoded video.
        let v = VideoRef::Url("data:video/mp4;base64,QUFB".into());
        assert!(matches!(
            video_input(&v, None).unwrap(),
            VideoInput::Source(MediaSource::DataUrl { .. })
        ));
    }
}
