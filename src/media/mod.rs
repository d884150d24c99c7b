//! Image and video decoding and preprocessing with Hugging Face processor parity.
//!
//! * [`source`] — where bytes come from ([`MediaSource`], [`MediaFetcher`]) and the media root.
//! * [`image`] — decoding (EXIF, alpha flattening) and `Qwen2VLImageProcessorFast` parity (the
//!   slow PIL processor on request).
//! * [`overrides`] — per-request / per-item processor settings (`mm_processor_kwargs`) and the
//!   operator's caps on them.
//! * [`video`] — FFmpeg decoding, frame sampling and `Qwen3VLVideoProcessor` parity.
//! * [`resize`] — `smart_resize` and the antialiased bicubic resamplers.
//! * [`patchify`] — normalisation and patch flattening.

pub mod config;
pub mod error;
pub mod image;
mod jpeg;
pub mod net;
pub mod overrides;
mod par;
pub mod patchify;
pub mod resize;
pub mod source;
pub mod video;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::config::{
    ImageProcessorConfig, ImageProcessorKind, VideoProcessorConfig, VisionConfig,
};
pub use self::error::MediaError;
pub use self::image::{decode_image, preprocess_image, PatchedVisual, RgbImage};
pub use self::overrides::{KwargError, MediaCaps, MediaOverrides, SizeOverride};
pub use self::source::{MediaFetcher, MediaSource};
pub use self::video::{load_video, video_from_frames, VideoData, VideoMetadata};

/// Resource limits and access policy for user-supplied media.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaLimits {
    /// Local files are readable only under this directory; `None` disables local files.
    pub media_root: Option<PathBuf>,
    /// Whether `http(s)://` references may be fetched.
    pub allow_http: bool,
    /// Whole-fetch timeout for one HTTP item (all its redirects included).
    pub http_timeout: Duration,
    /// Time allowed to open one TCP (and TLS) connection.
    pub http_connect_timeout: Duration,
    /// Longest silence between bytes of an HTTP response.
    pub http_read_timeout: Duration,
    /// Redirects followed per item; every hop is re-checked against the SSRF policy.
    pub max_redirects: usize,
    /// Hosts (and their subdomains, or IP literals) that may resolve to loopback, private or
    /// link-local addresses; everything else must be public (the SSRF policy).
    pub allowed_media_domains: Vec<String>,
    /// Per request: all of its http(s) media must be fetched within this.
    pub media_deadline: Duration,
    /// Maximum encoded size of one media item, in bytes.
    pub max_item_bytes: u64,
    /// Maximum number of images plus videos (a frame list counts as one) in one request.
    pub max_items: usize,
    /// Maximum pixel count of a source image or video frame (before resizing).
    pub max_image_pixels: u64,
    /// Maximum number of frames kept from one video (after sampling).
    pub max_frames: u64,
    /// What an image's alpha channel is flattened onto.
    pub rgba_background: RgbaBackground,
}

/// How images with an alpha channel become RGB.
///
/// vLLM and qwen-vl-utils composite onto white (the default); transformers' `load_image` calls
/// PIL's `convert("RGB")`, which drops the alpha channel and keeps the colour under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RgbaBackground {
    #[default]
    White,
    Black,
    /// Drop the alpha channel (transformers' `load_image`).
    Drop,
}

impl RgbaBackground {
    /// `white`, `black` or `drop`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "white" => Some(Self::White),
            "black" => Some(Self::Black),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }

    /// The `--rgba-background` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::White => "white",
            Self::Black => "black",
            Self::Drop => "drop",
        }
    }
}

impl std::str::FromStr for RgbaBackground {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| format!("unknown background `{s}` (white, black or drop)"))
    }
}

impl std::fmt::Display for RgbaBackground {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            media_root: None,
            allow_http: true,
            http_timeout: Duration::from_secs(30),
            http_connect_timeout: net::DEFAULT_CONNECT_TIMEOUT,
            http_read_timeout: net::DEFAULT_READ_TIMEOUT,
            max_redirects: 5,
            allowed_media_domains: Vec::new(),
            media_deadline: Duration::from_secs(60),
            max_item_bytes: 256 << 20,
            max_items: 20,
            max_image_pixels: 8192 * 8192,
            max_frames: 768,
            rgba_background: RgbaBackground::White,
        }
    }
}

/// An image reference from a chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInput {
    pub source: MediaSource,
}

/// A video reference from a chat message.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoInput {
    /// An encoded video file (mp4, webm, mkv, avi, mov, …).
    Source(MediaSource),
    /// Already-extracted frames, with the rate they were taken at (default 2 fps).
    Frames {
        frames: Vec<MediaSource>,
        fps: Option<f64>,
    },
}

impl ImageInput {
    /// Fetches, decodes and preprocesses the image.
    pub fn load(
        &self,
        fetcher: &MediaFetcher,
        cfg: &ImageProcessorConfig,
    ) -> Result<PatchedVisual, MediaError> {
        let bytes = fetcher.fetch(&self.source)?;
        let img = decode_image(&bytes, fetcher.limits())?;
        preprocess_image(&img, cfg)
    }
}

impl VideoInput {
    /// Fetches, decodes, samples and preprocesses the video.
    pub fn load(
        &self,
        fetcher: &MediaFetcher,
        cfg: &VideoProcessorConfig,
    ) -> Result<(PatchedVisual, VideoMetadata), MediaError> {
        let limits = fetcher.limits();
        match self {
            VideoInput::Source(MediaSource::File(p)) => {
                let path = fetcher.resolve_path(p)?;
                let size = std::fs::metadata(&path)
                    .map_err(|source| MediaError::Io {
                        path: path.clone(),
                        source,
                    })?
                    .len();
                if size > limits.max_item_bytes {
                    return Err(MediaError::TooLarge {
                        size,
                        limit: limits.max_item_bytes,
                    });
                }
                // Decoded straight from disk: the file is never held in memory.
                load_video(&VideoData::Path(path), cfg, limits)
            }
            VideoInput::Source(src) => {
                let bytes: Arc<[u8]> = fetcher.fetch(src)?.into();
                load_video(&VideoData::Bytes(bytes), cfg, limits)
            }
            VideoInput::Frames { frames, fps } => {
                if frames.len() as u64 > limits.max_frames {
                    return Err(MediaError::TooManyFrames {
                        frames: frames.len() as u64,
                        limit: limits.max_frames,
                    });
                }
                let imgs = frames
                    .iter()
                    .map(|s| decode_image(&fetcher.fetch(s)?, limits))
                    .collect::<Result<Vec<_>, _>>()?;
                video_from_frames(&imgs, *fps, cfg, limits)
            }
        }
    }
}
