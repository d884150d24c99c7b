//! Typed errors for everything that can go wrong between a user's media reference and pixel patches.

use std::path::PathBuf;

/// An error while fetching, decoding or preprocessing an image or a video.
///
/// The `Display` text is what an API caller sees: it never shows the media root, a resolved path
/// or a raw network error (those stay in the fields, for the server log via `Debug`). None of
/// them is a panic.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media source `{0}` is not a supported reference (expected a path, file://, data:, http(s):// or base64)")]
    UnsupportedSource(String),
    #[error("local media access is disabled: no media root is configured")]
    LocalAccessDisabled,
    #[error("path is outside the allowed media folder")]
    OutsideMediaRoot { path: PathBuf, root: PathBuf },
    // Missing, unreadable and not-a-file read the same, so nothing is learnt about the folder.
    #[error("the local file cannot be read (missing, not a regular file, or not readable)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid base64 payload: {0}")]
    BadBase64(String),
    #[error("invalid data URL: {0}")]
    BadDataUrl(String),
    #[error("remote media access is disabled")]
    RemoteDisabled,
    /// `reason` is ours and safe to show; `detail` (the HTTP client's error) is for the log.
    #[error("fetching `{url}` failed: {reason}")]
    Http {
        url: String,
        reason: String,
        detail: String,
    },
    #[error("the media URL is not usable: {0}")]
    BadUrl(String),
    /// The host name does not resolve (the name and the resolver's error are for the log).
    #[error("the media URL's host name cannot be resolved")]
    Unresolvable(String),
    /// The SSRF policy: the host is (or resolves to) an internal address and is not on the
    /// allow-list. The host and address are for the log.
    #[error("the media URL points to a loopback, private, link-local or otherwise internal address, which this server does not fetch (operators: --allowed-media-domains)")]
    BlockedAddress(String),
    #[error("the request's media was not fetched within its deadline of {0:?}")]
    Deadline(std::time::Duration),
    #[error("media item is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("request has {count} media items, above the limit of {limit}")]
    TooManyItems { count: usize, limit: usize },
    #[error("image is {width}x{height} = {pixels} pixels, above the limit of {limit}")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("video has {frames} frames to process, above the limit of {limit}")]
    TooManyFrames { frames: u64, limit: u64 },
    #[error("unsupported image format{}", .0.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    UnsupportedImageFormat(Option<String>),
    #[error("corrupt or truncated image: {0}")]
    CorruptImage(String),
    #[error("image is empty ({width}x{height})")]
    EmptyImage { width: u32, height: u32 },
    #[error("absolute aspect ratio must be at most 200, got {width}x{height}")]
    AspectRatio { width: u32, height: u32 },
    #[error("video frame {width}x{height} is smaller than {factor} pixels on a side")]
    VideoTooSmall {
        width: u32,
        height: u32,
        factor: u32,
    },
    #[error("video needs at least {min} frames, got {got}")]
    TooFewFrames { got: usize, min: usize },
    #[error("video frames differ in size: frame 0 is {0}x{1}, frame {2} is {3}x{4}")]
    FrameSizeMismatch(u32, u32, usize, u32, u32),
    #[error("unsupported or corrupt video: {0}")]
    BadVideo(String),
    #[error("video is truncated: expected at least {expected} frames, decoded {decoded}")]
    TruncatedVideo { expected: u64, decoded: u64 },
    #[error("invalid processor configuration: {0}")]
    Config(String),
}

/// Result alias for media operations.
pub type Result<T, E = MediaError> = std::result::Result<T, E>;
