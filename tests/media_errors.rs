//! Every bad input is a typed error, never a panic: corrupt/truncated/unsupported files, limits,
//! path escapes, bad base64.

mod preprocess_support;

use std::io::Cursor;
use std::path::PathBuf;

use base64::Engine;
use preprocess_support::*;
use qwen3vl::media::{
    decode_image, ImageInput, ImageProcessorConfig, MediaError, MediaFetcher, MediaLimits,
    MediaSource, VideoInput, VideoProcessorConfig,
};
use qwen3vl::prompt::{ChatMessage, PromptError};

fn inputs() -> PathBuf {
    fixtures().join("inputs")
}

fn limits() -> MediaLimits {
    MediaLimits {
        media_root: Some(inputs()),
        ..Default::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn load_image_bytes(bytes: &[u8], limits: MediaLimits) -> Result<(), MediaError> {
    let src = MediaSource::parse(&format!("data:image/png;base64,{}", b64(bytes))).unwrap();
    ImageInput { source: src }
        .load(&MediaFetcher::new(limits), &ImageProcessorConfig::default())
        .map(|_| ())
}

fn load_video_bytes(bytes: &[u8], limits: MediaLimits) -> Result<(), MediaError> {
    let src = MediaSource::parse(&format!("data:video/mp4;base64,{}", b64(bytes))).unwrap();
    VideoInput::Source(src)
        .load(&MediaFetcher::new(limits), &VideoProcessorConfig::default())
        .map(|_| ())
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 30]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(inputs().join(name)).unwrap()
}

#[test]
fn corrupt_and_truncated_images() {
    let jpeg = read("photo448.jpg");
    // Truncated JPEG: no end-of-image marker.
    let e = load_image_bytes(&jpeg[..jpeg.len() / 2], limits()).unwrap_err();
    assert!(matches!(e, MediaError::CorruptImage(_)), "{e}");
    // Corrupt JPEG: valid start, garbage body.
    let mut bad = jpeg[..20].to_vec();
    bad.extend((0..4000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    bad.extend([0xFF, 0xD9]);
    let e = load_image_bytes(&bad, limits()).unwrap_err();
    assert!(matches!(e, MediaError::CorruptImage(_)), "{e}");
    // Truncated PNG.
    let p = read("odd.png");
    let e = load_image_bytes(&p[..p.len() / 3], limits()).unwrap_err();
    assert!(matches!(e, MediaError::CorruptImage(_)), "{e}");
    // Not an image at all / an unsupported format.
    let e = load_image_bytes(b"hello, this is text and not an image at all", limits()).unwrap_err();
    assert!(matches!(e, MediaError::UnsupportedImageFormat(_)), "{e}");
    let tiff = [b'I', b'I', 42, 0, 8, 0, 0, 0, 0, 0];
    let e = load_image_bytes(&tiff, limits()).unwrap_err();
    assert!(matches!(e, MediaError::UnsupportedImageFormat(_)), "{e}");
}

#[test]
fn extreme_aspect_ratio_and_pixel_limit() {
    let e = load_image_bytes(&png(1, 10_000), limits()).unwrap_err();
    assert!(
        matches!(
            e,
            MediaError::AspectRatio {
                width: 1,
                height: 10_000
            }
        ),
        "{e}"
    );
    let e = load_image_bytes(&png(10_000, 1), limits()).unwrap_err();
    assert!(matches!(e, MediaError::AspectRatio { .. }), "{e}");
    let small = MediaLimits {
        max_image_pixels: 100 * 100,
        ..limits()
    };
    let e = load_image_bytes(&png(101, 100), small).unwrap_err();
    assert!(
        matches!(e, MediaError::TooManyPixels { pixels: 10_100, .. }),
        "{e}"
    );
    // Exactly 200:1 is accepted.
    load_image_bytes(&png(2, 400), limits()).unwrap();
}

#[test]
fn bad_base64_and_data_urls() {
    let f = MediaFetcher::new(limits());
    for s in [
        "data:image/png;base64,@@@@not base64@@@@",
        "data:image/png;base64,",
    ] {
        let e = f.fetch(&MediaSource::parse(s).unwrap()).unwrap_err();
        assert!(matches!(e, MediaError::BadBase64(_)), "{s}: {e}");
    }
    let e = MediaSource::parse("data:image/png,rawbytes").unwrap_err();
    assert!(matches!(e, MediaError::BadDataUrl(_)), "{e}");
    let e = MediaSource::parse("data:image/png;base64").unwrap_err();
    assert!(matches!(e, MediaError::BadDataUrl(_)), "{e}");
    let e = MediaSource::parse("ftp://example.com/a.png").unwrap_err();
    assert!(matches!(e, MediaError::UnsupportedSource(_)), "{e}");
    // Bare base64 (no prefix) is accepted for images, padded or not, with line breaks.
    let encoded = b64(&png(40, 40));
    let wrapped: String = encoded
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap().to_string() + "\n")
        .collect();
    let src = MediaSource::parse(&wrapped).unwrap();
    assert!(matches!(src, MediaSource::Base64(_)));
    let img = decode_image(&f.fetch(&src).unwrap(), &limits()).unwrap();
    assert_eq!((img.width, img.height), (40, 40));
    // Bare base64 with a bad character in the middle.
    let mut broken = encoded.clone();
    broken.insert(100, '*');
    let e = f.fetch(&MediaSource::Base64(broken)).unwrap_err();
    assert!(matches!(e, MediaError::BadBase64(_)), "{e}");
}

#[test]
fn path_traversal_and_symlink_escapes() {
    let f = MediaFetcher::new(limits()).with_base_dir(inputs());
    let outside = fixtures().join("cases.json");
    for p in ["../cases.json", "inputs/../../cases.json", "/etc/passwd"] {
        let e = f.fetch(&MediaSource::File(PathBuf::from(p))).unwrap_err();
        assert!(matches!(e, MediaError::OutsideMediaRoot { .. }), "{p}: {e}");
    }
    let e = f
        .fetch(&MediaSource::parse(&format!("file://{}", outside.display())).unwrap())
        .unwrap_err();
    assert!(matches!(e, MediaError::OutsideMediaRoot { .. }), "{e}");
    // A symlink inside the root that points outside it.
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&outside, root.path().join("link.png")).unwrap();
    std::os::unix::fs::symlink(fixtures(), root.path().join("dir")).unwrap();
    let f = MediaFetcher::new(MediaLimits {
        media_root: Some(root.path().to_path_buf()),
        ..Default::default()
    })
    .with_base_dir(root.path());
    for p in ["link.png", "dir/inputs/odd.png"] {
        let e = f.fetch(&MediaSource::File(PathBuf::from(p))).unwrap_err();
        assert!(matches!(e, MediaError::OutsideMediaRoot { .. }), "{p}: {e}");
    }
    // Missing file inside the root: an I/O error; no media root at all: local access refused.
    let e = f
        .fetch(&MediaSource::File(PathBuf::from("missing.png")))
        .unwrap_err();
    assert!(matches!(e, MediaError::Io { .. }), "{e}");
    let e = MediaFetcher::new(MediaLimits::default())
        .fetch(&MediaSource::File(inputs().join("odd.png")))
        .unwrap_err();
    assert!(matches!(e, MediaError::LocalAccessDisabled), "{e}");
}

#[test]
fn byte_and_item_limits() {
    let f = MediaFetcher::new(MediaLimits {
        max_item_bytes: 1000,
        ..limits()
    })
    .with_base_dir(inputs());
    let e = f.fetch(&MediaSource::File("odd.png".into())).unwrap_err();
    assert!(matches!(e, MediaError::TooLarge { limit: 1000, .. }), "{e}");
    let e = f
        .fetch(
            &MediaSource::parse(&format!("data:image/png;base64,{}", b64(&read("odd.png"))))
                .unwrap(),
        )
        .unwrap_err();
    assert!(matches!(e, MediaError::TooLarge { .. }), "{e}");

    let proc = processor("small");
    let parts: Vec<_> = (0..21)
        .map(|_| serde_json::json!({"type": "image_url", "image_url": {"url": "inputs/tiny.png"}}))
        .collect();
    let msgs: Vec<ChatMessage> =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": parts}])).unwrap();
    let e = proc.process(&msgs).unwrap_err();
    assert!(
        matches!(
            e,
            PromptError::Media {
                source: MediaError::TooManyItems {
                    count: 21,
                    limit: 20
                },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn corrupt_truncated_and_tiny_videos() {
    let mp4 = read("clip.mp4");
    // moov atom at the end: a truncated file cannot even be opened.
    let e = load_video_bytes(&mp4[..mp4.len() / 2], limits()).unwrap_err();
    assert!(matches!(e, MediaError::BadVideo(_)), "{e}");
    // moov at the front: the header promises 48 frames, the data stops early.
    let fast = read("clip_faststart.mp4");
    let e = load_video_bytes(&fast[..fast.len() * 2 / 5], limits()).unwrap_err();
    assert!(matches!(e, MediaError::TruncatedVideo { .. }), "{e}");
    let e = load_video_bytes(
        b"definitely not a video file, just some bytes....",
        limits(),
    )
    .unwrap_err();
    assert!(matches!(e, MediaError::BadVideo(_)), "{e}");
    let e = load_video_bytes(&read("odd.png"), limits()).unwrap_err();
    assert!(
        matches!(e, MediaError::BadVideo(_) | MediaError::TooFewFrames { .. }),
        "{e}"
    );
    // Frame limit.
    let e = load_video_bytes(
        &mp4,
        MediaLimits {
            max_frames: 4,
            ..limits()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            MediaError::TooManyFrames {
                frames: 8,
                limit: 4
            }
        ),
        "{e}"
    );
    // Frames smaller than 32 pixels, mismatched frame sizes, a single frame.
    let cfg = VideoProcessorConfig::default();
    let f = MediaFetcher::new(limits()).with_base_dir(inputs());
    let frames = |names: &[&str]| VideoInput::Frames {
        frames: names
            .iter()
            .map(|n| MediaSource::parse(n).unwrap())
            .collect(),
        fps: None,
    };
    let e = frames(&["tiny.png", "tiny.png"])
        .load(&f, &cfg)
        .unwrap_err();
    assert!(matches!(e, MediaError::VideoTooSmall { .. }), "{e}");
    let e = frames(&["odd.png", "rgba.png"]).load(&f, &cfg).unwrap_err();
    assert!(matches!(e, MediaError::FrameSizeMismatch(..)), "{e}");
    let e = frames(&["odd.png"]).load(&f, &cfg).unwrap_err();
    assert!(
        matches!(e, MediaError::TooFewFrames { got: 1, min: 2 }),
        "{e}"
    );
}

#[test]
fn placeholder_and_message_errors() {
    let proc = processor("small");
    let e = proc.process(&[]).unwrap_err();
    assert!(matches!(e, PromptError::NoMessages), "{e}");
    // A literal image placeholder typed by the user has no image behind it.
    let msgs: Vec<ChatMessage> = serde_json::from_value(
        serde_json::json!([{"role": "user", "content": "see <|image_pad|>"}]),
    )
    .unwrap();
    let e = proc.process(&msgs).unwrap_err();
    assert!(matches!(e, PromptError::PlaceholderMismatch { .. }), "{e}");
    // Errors name the failing item.
    let msgs: Vec<ChatMessage> =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "inputs/odd.png"}},
        {"type": "image_url", "image_url": {"url": "inputs/nope.png"}}]}]))
        .unwrap();
    let e = proc.process(&msgs).unwrap_err();
    assert!(matches!(e, PromptError::Media { index: 1, .. }), "{e}");
}

#[test]
fn bad_processor_configs() {
    // LANCZOS (1), BOX (4), HAMMING (5) are not implemented; nearest, bilinear and bicubic are
    // (checked against transformers in tests/preprocess_parity.rs).
    assert!(ImageProcessorConfig::from_json(r#"{"resample": 1}"#).is_err());
    assert!(ImageProcessorConfig::from_json(r#"{"resample": 2}"#).is_ok());
    assert!(ImageProcessorConfig::from_json(r#"{"image_mean": [1, 2]}"#).is_err());
    assert!(ImageProcessorConfig::from_json(r#"{"patch_size": 0}"#).is_err());
    assert!(VideoProcessorConfig::from_json(r#"{"max_frames": 0}"#).is_err());
    assert!(ImageProcessorConfig::from_json(r#"{"image_std": [0.5, 0, 0.5]}"#).is_err());
    assert!(ImageProcessorConfig::from_json("not json").is_err());
}

/// What transformers 4.57.6 (fast image processor, video processor) accepts, we load too
/// (docs/config-audit.md): a bare number or a one-element list for mean / std, min_pixels above
/// max_pixels (smart_resize tests `> max` first), fps ≤ 0 (sampling falls back to min_frames).
#[test]
fn odd_processor_configs_transformers_accepts() {
    let c = ImageProcessorConfig::from_json(r#"{"image_mean": 0.25, "image_std": [0.5]}"#).unwrap();
    assert_eq!(
        (c.vision.image_mean, c.vision.image_std),
        ([0.25; 3], [0.5; 3])
    );
    let c =
        ImageProcessorConfig::from_json(r#"{"min_pixels": 20000, "max_pixels": 5000}"#).unwrap();
    // transformers: a 64×64 image is under max → not downscaled; under min → upscaled to 160×160.
    let img = qwen3vl::media::RgbImage {
        width: 64,
        height: 64,
        data: vec![128; 64 * 64 * 3],
    };
    let p = qwen3vl::media::preprocess_image(&img, &c).unwrap();
    assert_eq!(p.grid_thw, [1, 10, 10]);
    let v = VideoProcessorConfig::from_json(r#"{"fps": 0}"#).unwrap();
    // int(total / fps · 0) = 0 frames → min_frames (4).
    assert_eq!(
        qwen3vl::media::video::sample_indices(300, Some(30.0), &v).len(),
        4
    );
    let v = VideoProcessorConfig::from_json(r#"{"fps": -1}"#).unwrap();
    assert_eq!(
        qwen3vl::media::video::sample_indices(300, Some(30.0), &v).len(),
        4
    );
}
