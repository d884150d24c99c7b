//! Per-request and per-item processor settings: vLLM's `mm_processor_kwargs` and the
//! qwen-vl-utils message fields (`{"type": "image", "image": …, "max_pixels": …}`), layered on the
//! checkpoint's processor configs, and the operator's caps that a request may lower but never raise.
//!
//! Layering follows the `__init__` of transformers' processors (which is how vLLM builds them
//! from `mm_processor_kwargs`): `size` replaces both bounds, then `min_pixels` / `max_pixels`
//! replace one bound each. (transformers 4.57.6 *at call time* ignores a lone `max_pixels`; we
//! do not copy that, since a lone `max_pixels` is the most common request.)

use serde_json::{Map, Value};

use super::config::{ImageProcessorConfig, VideoProcessorConfig};

/// `size` as the processors take it: pixel bounds of one image, or of a whole video (t·h·w).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeOverride {
    pub shortest_edge: u64,
    pub longest_edge: u64,
}

/// Settings a request (or one media item) may change. `None` keeps the layer below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaOverrides {
    /// Images and videos: both pixel bounds (for a video, of all its sampled frames together).
    pub size: Option<SizeOverride>,
    /// Images: lower bound of the resized pixel count.
    pub min_pixels: Option<u64>,
    /// Images: upper bound of the resized pixel count.
    pub max_pixels: Option<u64>,
    /// Videos: upper bound of t·h·w over the sampled frames (qwen-vl-utils' name).
    pub total_pixels: Option<u64>,
    /// Videos: frames sampled per second.
    pub fps: Option<f64>,
    /// Videos: exactly this many frames, evenly spaced (excludes `fps`).
    pub num_frames: Option<u32>,
    pub min_frames: Option<u32>,
    pub max_frames: Option<u32>,
    /// Videos: `false` keeps every frame (still subject to the frame limits).
    pub do_sample_frames: Option<bool>,
}

/// A bad processor setting: `field` is the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct KwargError {
    pub field: String,
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> KwargError {
    KwargError {
        field: field.into(),
        message: message.into(),
    }
}

/// Hard limits set by the operator; a request may lower these but never raise them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaCaps {
    /// Most pixels one image may be resized to (`--max-image-pixels`).
    pub max_image_pixels: Option<u64>,
    /// Most frames one video may be sampled to (`--max-video-frames`).
    pub max_video_frames: Option<u32>,
}

/// Which keys a JSON object may carry, by where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KwargScope {
    /// `mm_processor_kwargs` (request or server): every setting.
    Request,
    /// An image item: pixel bounds only.
    Image,
    /// A video item: frame sampling, `size`, `total_pixels`.
    Video,
}

const IMAGE_KEYS: &[&str] = &["size", "min_pixels", "max_pixels"];
const VIDEO_KEYS: &[&str] = &[
    "size",
    "total_pixels",
    "fps",
    "num_frames",
    "nframes",
    "min_frames",
    "max_frames",
    "do_sample_frames",
];

fn positive_int(v: &Value, field: &str) -> Result<u64, KwargError> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(x), _) if x > 0 => Ok(x),
            // 1e6 or 1000000.0 are integers too.
            (None, Some(f)) if f >= 1.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(f as u64),
            _ => Err(bad(field, format!("must be a positive integer, got {n}"))),
        },
        other => Err(bad(
            field,
            format!("must be a positive integer, got {}", type_name(other)),
        )),
    }
}

fn frames(v: &Value, field: &str) -> Result<u32, KwargError> {
    let x = positive_int(v, field)?;
    u32::try_from(x).map_err(|_| bad(field, format!("{x} is too large")))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl MediaOverrides {
    /// Parses `mm_processor_kwargs` (a JSON object); `path` names it in errors. Unknown keys
    /// are refused rather than ignored, so a misspelt setting never silently does nothing.
    pub fn from_json(v: &Value, path: &str) -> Result<Self, KwargError> {
        match v {
            Value::Null => Ok(Self::default()),
            Value::Object(obj) => Self::from_fields(obj, path, KwargScope::Request, true),
            other => Err(bad(
                path,
                format!("must be an object, got {}", type_name(other)),
            )),
        }
    }

    /// Reads the processor settings among an item's fields (other keys, such as `url` or
    /// `type`, belong to the message format and are skipped).
    pub fn from_item(
        obj: &Map<String, Value>,
        path: &str,
        scope: KwargScope,
    ) -> Result<Self, KwargError> {
        Self::from_fields(obj, path, scope, false)
    }

    fn from_fields(
        obj: &Map<String, Value>,
        path: &str,
        scope: KwargScope,
        strict: bool,
    ) -> Result<Self, KwargError> {
        let mut o = Self::default();
        for (key, v) in obj {
            let field = format!("{path}.{key}");
            let allowed = match scope {
                KwargScope::Request => {
                    IMAGE_KEYS.contains(&key.as_str()) || VIDEO_KEYS.contains(&key.as_str())
                }
                KwargScope::Image => IMAGE_KEYS.contains(&key.as_str()),
                KwargScope::Video => VIDEO_KEYS.contains(&key.as_str()),
            };
            if !allowed {
                let other_kind = match scope {
                    KwargScope::Image => VIDEO_KEYS.contains(&key.as_str()),
                    KwargScope::Video => IMAGE_KEYS.contains(&key.as_str()),
                    KwargScope::Request => false,
                };
                if other_kind {
                    let hint = if scope == KwargScope::Video {
                        "videos take `total_pixels` or `size` (a budget over all sampled frames)"
                    } else {
                        "a video setting on an image"
                    };
                    return Err(bad(field, format!("not a setting of this item: {hint}")));
                }
                if strict {
                    return Err(bad(
                        field,
                        "unknown processor setting (expected one of size, min_pixels, max_pixels, total_pixels, fps, num_frames, min_frames, max_frames, do_sample_frames)",
                    ));
                }
                continue;
            }
            // `null` means "not set", as a client that serialises every field sends it.
            if v.is_null() {
                continue;
            }
            match key.as_str() {
                "size" => o.size = Some(parse_size(v, &field)?),
                "min_pixels" => o.min_pixels = Some(positive_int(v, &field)?),
                "max_pixels" => o.max_pixels = Some(positive_int(v, &field)?),
                "total_pixels" => o.total_pixels = Some(positive_int(v, &field)?),
                "fps" => {
                    let f = v.as_f64().filter(|f| *f > 0.0 && f.is_finite());
                    o.fps = Some(f.ok_or_else(|| {
                        bad(&field, format!("must be a positive number, got {v}"))
                    })?);
                }
                "num_frames" | "nframes" => o.num_frames = Some(frames(v, &field)?),
                "min_frames" => o.min_frames = Some(frames(v, &field)?),
                "max_frames" => o.max_frames = Some(frames(v, &field)?),
                "do_sample_frames" => {
                    o.do_sample_frames = Some(v.as_bool().ok_or_else(|| {
                        bad(
                            &field,
                            format!("must be true or false, got {}", type_name(v)),
                        )
                    })?)
                }
                _ => unreachable!("key checked against the allowed lists"),
            }
        }
        if let (Some(lo), Some(hi)) = (o.min_pixels, o.max_pixels) {
            if lo > hi {
                return Err(bad(
                    format!("{path}.min_pixels"),
                    format!("{lo} is greater than max_pixels {hi}"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (o.min_frames, o.max_frames) {
            if lo > hi {
                return Err(bad(
                    format!("{path}.min_frames"),
                    format!("{lo} is greater than max_frames {hi}"),
                ));
            }
        }
        if o.fps.is_some() && o.num_frames.is_some() {
            return Err(bad(
                format!("{path}.num_frames"),
                "`num_frames` and `fps` are mutually exclusive",
            ));
        }
        Ok(o)
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `self` with every field that `top` sets replaced by `top`'s. `num_frames` and `fps`
    /// exclude each other, so the upper layer's choice of one clears the other.
    pub fn then(&self, top: &Self) -> Self {
        let mut o = Self {
            size: top.size.or(self.size),
            min_pixels: top.min_pixels.or(self.min_pixels),
            max_pixels: top.max_pixels.or(self.max_pixels),
            total_pixels: top.total_pixels.or(self.total_pixels),
            fps: top.fps.or(self.fps),
            num_frames: top.num_frames.or(self.num_frames),
            min_frames: top.min_frames.or(self.min_frames),
            max_frames: top.max_frames.or(self.max_frames),
            do_sample_frames: top.do_sample_frames.or(self.do_sample_frames),
        };
        if top.fps.is_some() {
            o.num_frames = None;
        } else if top.num_frames.is_some() {
            o.fps = None;
        }
        // A `size` above replaces bounds set below it.
        if top.size.is_some() {
            o.min_pixels = top.min_pixels;
            o.max_pixels = top.max_pixels;
            o.total_pixels = top.total_pixels;
        }
        o
    }

    /// The image processor settings for one image; `path` names the request's settings in errors.
    pub fn image_config(
        &self,
        base: &ImageProcessorConfig,
        caps: &MediaCaps,
        path: &str,
    ) -> Result<ImageProcessorConfig, KwargError> {
        let mut cfg = base.clone();
        let v = &mut cfg.vision;
        if let Some(s) = self.size {
            check_cap(
                s.longest_edge,
                caps.max_image_pixels,
                &format!("{path}.size.longest_edge"),
            )?;
            check_cap(
                s.shortest_edge,
                caps.max_image_pixels,
                &format!("{path}.size.shortest_edge"),
            )?;
            v.min_pixels = s.shortest_edge;
            v.max_pixels = s.longest_edge;
        }
        if let Some(x) = self.min_pixels {
            check_cap(x, caps.max_image_pixels, &format!("{path}.min_pixels"))?;
            v.min_pixels = x;
        }
        if let Some(x) = self.max_pixels {
            check_cap(x, caps.max_image_pixels, &format!("{path}.max_pixels"))?;
            v.max_pixels = x;
        }
        Ok(cfg)
    }

    /// The video processor settings for one video.
    pub fn video_config(
        &self,
        base: &VideoProcessorConfig,
        caps: &MediaCaps,
        path: &str,
    ) -> Result<VideoProcessorConfig, KwargError> {
        let mut cfg = base.clone();
        if let Some(s) = self.size {
            cfg.vision.min_pixels = s.shortest_edge;
            cfg.vision.max_pixels = s.longest_edge;
        }
        if let Some(x) = self.total_pixels {
            cfg.vision.max_pixels = x;
        }
        if let Some(f) = self.fps {
            cfg.fps = f;
            cfg.num_frames = None;
        }
        if let Some(n) = self.num_frames {
            check_frames(n, caps.max_video_frames, &format!("{path}.num_frames"))?;
            cfg.num_frames = Some(n);
        }
        if let Some(n) = self.min_frames {
            check_frames(n, caps.max_video_frames, &format!("{path}.min_frames"))?;
            cfg.min_frames = n;
        }
        if let Some(n) = self.max_frames {
            check_frames(n, caps.max_video_frames, &format!("{path}.max_frames"))?;
            cfg.max_frames = n;
        }
        if let Some(b) = self.do_sample_frames {
            cfg.do_sample_frames = b;
        }
        if cfg.min_frames > cfg.max_frames {
            return Err(bad(
                format!("{path}.min_frames"),
                format!(
                    "min_frames {} is greater than max_frames {}",
                    cfg.min_frames, cfg.max_frames
                ),
            ));
        }
        Ok(cfg)
    }
}

fn check_cap(x: u64, cap: Option<u64>, field: &str) -> Result<(), KwargError> {
    match cap {
        Some(c) if x > c => Err(bad(
            field,
            format!("{x} is above the server's limit of {c} pixels per image"),
        )),
        _ => Ok(()),
    }
}

fn check_frames(n: u32, cap: Option<u32>, field: &str) -> Result<(), KwargError> {
    match cap {
        Some(c) if n > c => Err(bad(
            field,
            format!("{n} is above the server's limit of {c} frames per video"),
        )),
        _ => Ok(()),
    }
}

fn parse_size(v: &Value, field: &str) -> Result<SizeOverride, KwargError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad(field, format!("must be an object, got {}", type_name(v))))?;
    for key in obj.keys() {
        if key != "shortest_edge" && key != "longest_edge" {
            return Err(bad(
                format!("{field}.{key}"),
                "unknown key (size takes shortest_edge and longest_edge)",
            ));
        }
    }
    let get = |k: &str| -> Result<u64, KwargError> {
        let f = format!("{field}.{k}");
        obj.get(k)
            .ok_or_else(|| {
                bad(
                    &f,
                    "missing (size must contain shortest_edge and longest_edge)",
                )
            })
            .and_then(|x| positive_int(x, &f))
    };
    let s = SizeOverride {
        shortest_edge: get("shortest_edge")?,
        longest_edge: get("longest_edge")?,
    };
    if s.shortest_edge > s.longest_edge {
        return Err(bad(
            format!("{field}.shortest_edge"),
            format!(
                "{} is greater than longest_edge {}",
                s.shortest_edge, s.longest_edge
            ),
        ));
    }
    Ok(s)
}

/// Applies the operator's caps to the server's default settings: a default above a cap is
/// lowered to it (the checkpoint's image budget, 16.7 Mpx, is far above what most servers want).
pub fn capped_defaults(
    image: &mut ImageProcessorConfig,
    video: &mut VideoProcessorConfig,
    caps: &MediaCaps,
) {
    if let Some(c) = caps.max_image_pixels {
        image.vision.max_pixels = image.vision.max_pixels.min(c);
        image.vision.min_pixels = image.vision.min_pixels.min(c);
    }
    if let Some(c) = caps.max_video_frames {
        video.max_frames = video.max_frames.min(c);
        video.min_frames = video.min_frames.min(c);
        video.num_frames = video.num_frames.map(|n| n.min(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<MediaOverrides, KwargError> {
        MediaOverrides::from_json(&v, "mm_processor_kwargs")
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"max_pixels": -5}), "mm_processor_kwargs.max_pixels"),
            (
                json!({"max_pixels": "big"}),
                "mm_processor_kwargs.max_pixels",
            ),
            (json!({"min_pixels": 0}), "mm_processor_kwargs.min_pixels"),
            (
                json!({"min_pixels": 9, "max_pixels": 4}),
                "mm_processor_kwargs.min_pixels",
            ),
            (json!({"fps": 0}), "mm_processor_kwargs.fps"),
            (json!({"fps": "x"}), "mm_processor_kwargs.fps"),
            (json!({"num_frames": 1.5}), "mm_processor_kwargs.num_frames"),
            (
                json!({"fps": 2, "num_frames": 4}),
                "mm_processor_kwargs.num_frames",
            ),
            (
                json!({"min_frames": 9, "max_frames": 4}),
                "mm_processor_kwargs.min_frames",
            ),
            (
                json!({"size": {"shortest_edge": 10}}),
                "mm_processor_kwargs.size.longest_edge",
            ),
            (
                json!({"size": {"shortest_edge": 10, "longest_edge": 5}}),
                "mm_processor_kwargs.size.shortest_edge",
            ),
            (json!({"size": 5}), "mm_processor_kwargs.size"),
            (json!({"max_pixel": 5}), "mm_processor_kwargs.max_pixel"),
        ];
        for (v, field) in cases {
            let e = parse(v.clone()).expect_err(&v.to_string());
            assert_eq!(e.field, field, "{v}: {e}");
        }
        assert_eq!(parse(json!(3)).unwrap_err().field, "mm_processor_kwargs");
        let e = parse(json!({"do_sample_frames": "yes"})).unwrap_err();
        assert_eq!(e.field, "mm_processor_kwargs.do_sample_frames");
        // The spec's typical vLLM request parses.
        let o = parse(json!({"fps": 2, "do_sample_frames": true})).unwrap();
        assert_eq!((o.fps, o.do_sample_frames), (Some(2.0), Some(true)));
        // `null` is "not set".
        assert!(parse(json!({"max_pixels": null})).unwrap().is_empty());
    }

    #[test]
    fn layers_and_caps() {
        let base = ImageProcessorConfig::default();
        let caps = MediaCaps {
            max_image_pixels: Some(1_000_000),
            max_video_frames: Some(64),
        };
        let server = parse(json!({"max_pixels": 500_000})).unwrap();
        let req = parse(json!({"min_pixels": 1000})).unwrap();
        let o = server.then(&req);
        let cfg = o.image_config(&base, &caps, "x").unwrap();
        assert_eq!(
            (cfg.vision.min_pixels, cfg.vision.max_pixels),
            (1000, 500_000)
        );
        // Raising above the cap is refused, lowering is fine.
        let e = parse(json!({"max_pixels": 2_000_000}))
            .unwrap()
            .image_config(&base, &caps, "x")
            .unwrap_err();
        assert_eq!(e.field, "x.max_pixels");
        // `size` on top resets the bounds set below it.
        let sized =
            o.then(&parse(json!({"size": {"shortest_edge": 10, "longest_edge": 20}})).unwrap());
        let cfg = sized.image_config(&base, &caps, "x").unwrap();
        assert_eq!((cfg.vision.min_pixels, cfg.vision.max_pixels), (10, 20));
        // Video: frame caps, and fps / num_frames replacing each other across layers.
        let vbase = VideoProcessorConfig::default();
        let e = parse(json!({"num_frames": 65}))
            .unwrap()
            .video_config(&vbase, &caps, "v")
            .unwrap_err();
        assert_eq!(e.field, "v.num_frames");
        let v = parse(json!({"num_frames": 8}))
            .unwrap()
            .then(&parse(json!({"fps": 1.0})).unwrap())
            .video_config(&vbase, &caps, "v")
            .unwrap();
        assert_eq!((v.num_frames, v.fps), (None, 1.0));
    }

    #[test]
    fn item_scopes() {
        let obj = json!({"url": "x.png", "detail": "auto", "max_pixels": 4096})
            .as_object()
            .unwrap()
            .clone();
        let o =
            MediaOverrides::from_item(&obj, "messages[0].content[0].image_url", KwargScope::Image)
                .unwrap();
        assert_eq!(o.max_pixels, Some(4096));
        let obj = json!({"video": "a.mp4", "max_pixels": 4096})
            .as_object()
            .unwrap()
            .clone();
        let e = MediaOverrides::from_item(&obj, "p", KwargScope::Video).unwrap_err();
        assert_eq!(e.field, "p.max_pixels");
        let obj = json!({"video": "a.mp4", "nframes": 6})
            .as_object()
            .unwrap()
            .clone();
        let o = MediaOverrides::from_item(&obj, "p", KwargScope::Video).unwrap();
        assert_eq!(o.num_frames, Some(6));
    }
}
