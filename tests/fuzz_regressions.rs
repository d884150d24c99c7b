//! Regression tests for what the fuzz targets (fuzz/, docs/fuzzing.md) found. Each replays the
//! finding as an ordinary test; the inputs are also kept as seeds in fuzz/seeds/.

mod preprocess_support;

use std::sync::Arc;

use preprocess_support::encode::encode_test_video;
use qwen3vl::media::{
    decode_image, load_video, MediaError, MediaLimits, VideoData, VideoProcessorConfig,
};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// video_decode under LeakSanitizer: `load_video` reused one packet for every
/// `av_read_frame`, which overwrites a packet without releasing it, so every demuxed packet's
/// data leaked: about the compressed size of the video read, per request. An uncompressed
/// clip (2.8 MB of packets) decoded 20 times would leak ≈ 55 MB; the allocator's own warm-up
/// is a few MB at most.
#[test]
fn decoding_a_video_does_not_leak_its_packets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.mkv");
    encode_test_video(&path, 320, 240, 24, 24, "rawvideo").unwrap();
    let bytes: Arc<[u8]> = std::fs::read(&path).unwrap().into();
    assert!(bytes.len() > 2_000_000, "rawvideo packets are uncompressed");
    let (cfg, limits) = (VideoProcessorConfig::default(), MediaLimits::default());
    let decode = || {
        let (_, meta) = load_video(&VideoData::Bytes(bytes.clone()), &cfg, &limits).unwrap();
        // The last sampled frame is the last frame: every packet is read.
        assert_eq!(meta.frames_indices.last(), Some(&23));
    };
    for _ in 0..3 {
        decode();
    }
    let before = rss();
    let runs = 20;
    for _ in 0..runs {
        decode();
    }
    let grown = rss().saturating_sub(before);
    let leak = bytes.len() as u64 * runs;
    assert!(
        grown < leak / 4,
        "resident memory grew by {grown} bytes over {runs} decodes (the packet leak was ≈ {leak})"
    );
}

/// image_decode (one hour's run, 2026-12-07): a 108-byte lossless WebP whose Huffman code
/// lengths overflow the decoder's 16-bit code counter (`image-webp` 0.2.4, `huffman.rs:65`).
/// With overflow checks on (the fuzz build) the decoder panicked out of `decode_image`; it is
/// now contained there and answered as a corrupt image. The seed's first byte is the target's
/// settings (pixel cap 1024²).
#[test]
fn webp_with_overflowing_huffman_lengths_is_a_corrupt_image() {
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/image_decode/webp-huffman-overflow.bin"
    ))
    .unwrap();
    let limits = MediaLimits {
        max_image_pixels: 1024 * 1024,
        ..Default::default()
    };
    match decode_image(&seed[1..], &limits) {
        Err(MediaError::CorruptImage(_)) => {}
        other => panic!("expected a corrupt-image error, got {other:?}"),
    }
}
