//! Hostile conversations → media references, per-item settings and the built-in chat template.
//!
//! Odd first byte: the rest is a JSON document `{"messages": [...], "tools": [...],
//! "add_generation_prompt": bool, "add_vision_id": bool}` (or a bare message list), read with
//! the server's own serde types. Even first byte: the rest drives `arbitrary` into messages
//! with any role, content, part list, tool calls and tool definitions, which reaches the
//! template's branches without having to spell valid JSON. Both then take the path a chat
//! request takes to its prompt: `collect_visual_refs` (media references and their settings),
//! `MediaOverrides::{image,video}_config` against the operator's caps, `template_messages`, and
//! `ChatTemplate::builtin().render`. Properties:
//! * nothing panics; bad references and settings are typed errors;
//! * one visual reference per non-text part, agreeing with the server's `media_count`;
//! * per-item settings that pass are within the caps;
//! * every non-empty conversation renders, whatever its roles and strings;
//! * the output ends with the generation prompt when asked for, contains every user text
//!   verbatim, and has exactly one placeholder per visual part of a rendered message (when no
//!   string of the input could spell a placeholder itself).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use qwen3vl::media::config::{ImageProcessorConfig, VideoProcessorConfig};
use qwen3vl::media::MediaCaps;
use qwen3vl::prompt::messages::{collect_visual_refs, template_messages, Visual};
use qwen3vl::prompt::{
    ChatMessage, ChatTemplate, ContentPart, FunctionCall, MessageContent, RenderOptions, ToolCall,
    UrlRef, VideoRef,
};
use qwen3vl::service::state::media_count;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The roles the template knows, plus a few it must ignore without failing.
const ROLES: [&str; 7] = [
    "system",
    "user",
    "assistant",
    "tool",
    "developer",
    "",
    "User",
];
const RENDERED: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Operator caps the per-item settings are checked against.
const CAPS: MediaCaps = MediaCaps {
    max_image_pixels: Some(1 << 22),
    max_video_frames: Some(64),
};

fn template() -> &'static ChatTemplate {
    static T: OnceLock<ChatTemplate> = OnceLock::new();
    T.get_or_init(ChatTemplate::builtin)
}

fn configs() -> &'static (ImageProcessorConfig, VideoProcessorConfig) {
    static C: OnceLock<(ImageProcessorConfig, VideoProcessorConfig)> = OnceLock::new();
    C.get_or_init(Default::default)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Doc {
    List(Vec<ChatMessage>),
    Full {
        messages: Vec<ChatMessage>,
        #[serde(default)]
        tools: Option<Vec<Value>>,
        #[serde(default)]
        add_generation_prompt: bool,
        #[serde(default)]
        add_vision_id: bool,
    },
}

struct Conversation {
    messages: Vec<ChatMessage>,
    tools: Option<Vec<Value>>,
    add_generation_prompt: bool,
    add_vision_id: bool,
}

/// A JSON value from `arbitrary`, nested at most `depth` levels.
fn value(u: &mut Unstructured, depth: u32) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=if depth == 0 { 3 } else { 5 })? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<f64>()?),
        3 => Value::String(u.arbitrary()?),
        4 => Value::Array(
            (0..u.int_in_range(0..=3)?)
                .map(|_| value(u, depth - 1))
                .collect::<arbitrary::Result<_>>()?,
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..u.int_in_range(0..=3)? {
                m.insert(u.arbitrary()?, value(u, depth - 1)?);
            }
            Value::Object(m)
        }
    })
}

/// Per-item settings: mostly the real keys, with hostile values.
fn settings(u: &mut Unstructured) -> arbitrary::Result<Map<String, Value>> {
    const KEYS: [&str; 10] = [
        "min_pixels",
        "max_pixels",
        "size",
        "total_pixels",
        "fps",
        "nframes",
        "num_frames",
        "min_frames",
        "max_frames",
        "do_sample_frames",
    ];
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let key = match u.choose(&KEYS) {
            Ok(k) if u.arbitrary()? => k.to_string(),
            _ => u.arbitrary()?,
        };
        let v = match u.int_in_range(0..=2)? {
            0 => json!(u.arbitrary::<u64>()?),
            1 => {
                json!({"shortest_edge": u.arbitrary::<u32>()?, "longest_edge": u.arbitrary::<u32>()?})
            }
            _ => value(u, 1)?,
        };
        m.insert(key, v);
    }
    Ok(m)
}

/// A media reference: data URLs, paths, http URLs and junk.
fn reference(u: &mut Unstructured) -> arbitrary::Result<String> {
    let tail: String = u.arbitrary()?;
    Ok(match u.int_in_range(0..=4)? {
        0 => format!("data:image/png;base64,{tail}"),
        1 => format!("data:video/jpeg;base64,{tail}"),
        2 => format!("file://{tail}"),
        3 => format!("http://{tail}"),
        _ => tail,
    })
}

fn part(u: &mut Unstructured) -> arbitrary::Result<ContentPart> {
    Ok(match u.int_in_range(0..=4)? {
        0 => ContentPart::Text {
            text: u.arbitrary()?,
        },
        1 => ContentPart::ImageUrl {
            image_url: if u.arbitrary()? {
                UrlRef::Url(reference(u)?)
            } else {
                UrlRef::Object {
                    url: reference(u)?,
                    detail: u.arbitrary()?,
                    settings: settings(u)?,
                }
            },
            settings: settings(u)?,
        },
        2 => ContentPart::Image {
            image: reference(u)?,
            settings: settings(u)?,
        },
        3 => ContentPart::VideoUrl {
            video_url: video_ref(u)?,
            settings: settings(u)?,
        },
        _ => ContentPart::Video {
            video: video_ref(u)?,
            fps: u.arbitrary()?,
            settings: settings(u)?,
        },
    })
}

fn video_ref(u: &mut Unstructured) -> arbitrary::Result<VideoRef> {
    let frames = |u: &mut Unstructured| -> arbitrary::Result<Vec<String>> {
        (0..u.int_in_range(0..=3)?).map(|_| reference(u)).collect()
    };
    Ok(match u.int_in_range(0..=3)? {
        0 => VideoRef::Url(reference(u)?),
        1 => VideoRef::Frames(frames(u)?),
        2 => VideoRef::Object {
            url: reference(u)?,
            settings: settings(u)?,
        },
        _ => VideoRef::FrameObject {
            frames: frames(u)?,
            fps: u.arbitrary()?,
            settings: settings(u)?,
        },
    })
}

fn message(u: &mut Unstructured) -> arbitrary::Result<ChatMessage> {
    let role = match u.choose(&ROLES) {
        Ok(r) if u.ratio(7, 8)? => r.to_string(),
        _ => u.arbitrary()?,
    };
    let content = match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(MessageContent::Text(u.arbitrary()?)),
        _ => Some(MessageContent::Parts(
            (0..u.int_in_range(0..=4)?)
                .map(|_| part(u))
                .collect::<arbitrary::Result<_>>()?,
        )),
    };
    let tool_calls = if u.arbitrary()? {
        Some(
            (0..u.int_in_range(0..=2)?)
                .map(|_| {
                    Ok(ToolCall {
                        id: u.arbitrary()?,
                        kind: u.arbitrary()?,
                        function: FunctionCall {
                            name: u.arbitrary()?,
                            arguments: value(u, 2)?,
                        },
                    })
                })
                .collect::<arbitrary::Result<_>>()?,
        )
    } else {
        None
    };
    Ok(ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id: u.arbitrary()?,
        name: u.arbitrary()?,
        reasoning_content: u.arbitrary()?,
    })
}

fn from_arbitrary(data: &[u8]) -> arbitrary::Result<Conversation> {
    let mut u = Unstructured::new(data);
    let messages = (0..u.int_in_range(1..=6)?)
        .map(|_| message(&mut u))
        .collect::<arbitrary::Result<_>>()?;
    let tools = if u.arbitrary()? {
        Some(
            (0..u.int_in_range(0..=2)?)
                .map(|_| value(&mut u, 3))
                .collect::<arbitrary::Result<_>>()?,
        )
    } else {
        None
    };
    Ok(Conversation {
        messages,
        tools,
        add_generation_prompt: u.arbitrary()?,
        add_vision_id: u.arbitrary()?,
    })
}

fn from_json(data: &[u8]) -> Option<Conversation> {
    Some(match serde_json::from_slice::<Doc>(data).ok()? {
        Doc::List(messages) => Conversation {
            messages,
            tools: None,
            add_generation_prompt: true,
            add_vision_id: false,
        },
        Doc::Full {
            messages,
            tools,
            add_generation_prompt,
            add_vision_id,
        } => Conversation {
            messages,
            tools,
            add_generation_prompt,
            add_vision_id,
        },
    })
}

/// Visual parts (images, videos) of one message.
fn visual_parts(m: &ChatMessage) -> (usize, usize) {
    match &m.content {
        Some(MessageContent::Parts(p)) => p.iter().fold((0, 0), |(i, v), p| match p {
            ContentPart::Text { .. } => (i, v),
            ContentPart::ImageUrl { .. } | ContentPart::Image { .. } => (i + 1, v),
            ContentPart::VideoUrl { .. } | ContentPart::Video { .. } => (i, v + 1),
        }),
        _ => (0, 0),
    }
}

fn media(messages: &[ChatMessage]) {
    let Ok(refs) = collect_visual_refs(messages) else {
        return;
    };
    let parts: usize = messages
        .iter()
        .map(|m| {
            let (i, v) = visual_parts(m);
            i + v
        })
        .sum();
    assert_eq!(refs.len(), parts);
    assert_eq!(media_count(messages), parts);
    let (image, video) = configs();
    for r in &refs {
        let o = &r.overrides;
        match &r.visual {
            Visual::Image(_) => {
                if o.image_config(image, &CAPS, &r.path).is_ok() {
                    let cap = CAPS.max_image_pixels.unwrap_or(u64::MAX);
                    for x in [o.min_pixels, o.max_pixels].into_iter().flatten() {
                        assert!(x <= cap, "{x} passed the image cap");
                    }
                }
            }
            Visual::Video(_) => {
                if let Ok(cfg) = o.video_config(video, &CAPS, &r.path) {
                    assert!(cfg.min_frames <= cfg.max_frames);
                    let cap = CAPS.max_video_frames.unwrap_or(u32::MAX);
                    assert!(cfg.num_frames.is_none_or(|n| n <= cap));
                }
            }
        }
    }
}

/// Every string a conversation carries, for the placeholder-count property.
fn spells_placeholder(c: &Conversation) -> bool {
    // Cheap and conservative: any '<' or '|' anywhere in the input could build one.
    let v = json!({"m": c.messages, "t": c.tools});
    let s = v.to_string();
    s.contains('<') || s.contains('|')
}

fn render(c: &Conversation) {
    let msgs = template_messages(&c.messages);
    assert_eq!(msgs.len(), c.messages.len());
    assert!(msgs.iter().all(|m| !m["content"].is_null()));
    let mut extra = Map::new();
    extra.insert("add_vision_id".into(), Value::Bool(c.add_vision_id));
    let opts = RenderOptions {
        tools: c.tools.clone(),
        add_generation_prompt: c.add_generation_prompt,
        extra,
    };
    let out = match template().render(&msgs, &opts) {
        Ok(s) => s,
        // The processor refuses an empty conversation before rendering.
        Err(_) if c.messages.is_empty() => return,
        Err(e) => panic!("a non-empty conversation failed to render: {e}"),
    };
    // The tokenizer's input contract (holds by construction for `String`).
    assert!(std::str::from_utf8(out.as_bytes()).is_ok());
    if c.add_generation_prompt {
        assert!(out.ends_with("<|im_start|>assistant\n"));
    }
    for m in &c.messages {
        if let (Some(MessageContent::Text(t)), true) = (&m.content, m.role == "user") {
            assert!(
                out.contains(t.as_str()),
                "user text missing from the prompt"
            );
        }
    }
    if !spells_placeholder(c) {
        let (images, videos) = c
            .messages
            .iter()
            .filter(|m| RENDERED.contains(&m.role.as_str()))
            .map(visual_parts)
            .fold((0, 0), |(a, b), (i, v)| (a + i, b + v));
        assert_eq!(out.matches("<|image_pad|>").count(), images);
        assert_eq!(out.matches("<|video_pad|>").count(), videos);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let conversation = if mode % 2 == 1 {
        from_json(rest)
    } else {
        from_arbitrary(rest).ok()
    };
    let Some(c) = conversation else {
        return;
    };
    media(&c.messages);
    render(&c);
});
