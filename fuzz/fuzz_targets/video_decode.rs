//! Encoded videos → `load_video` (FFmpeg in process, from memory: the data-URL / HTTP path),
//! frame sampling and preprocessing, under small limits.
//!
//! First byte: bits 0–1 pick the per-frame pixel cap, bit 2 keeps every frame instead of
//! sampling, bit 3 asks for exactly 4 frames. FFmpeg itself is not instrumented, so coverage
//! guides through our demux/decode/sample/resize code and the container paths it reaches.
//! Properties:
//! * nothing panics; every failure is a `MediaError`;
//! * a decoded video's frame size is > 0 and within the cap, its kept frame indices are in
//!   order, inside the video and no more than the frame limit;
//! * the patch grid matches the kept frames (padded to the temporal patch) and every value is
//!   finite.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use qwen3vl::media::config::VideoProcessorConfig;
use qwen3vl::media::{load_video, MediaLimits, VideoData};

const CAPS: [u64; 4] = [16 * 16, 64 * 64, 320 * 240, 1 << 20];
const MAX_FRAMES: u64 = 16;

fn processor(mode: u8) -> VideoProcessorConfig {
    let mut cfg = VideoProcessorConfig::default();
    // A small budget for all kept frames together keeps each run fast.
    cfg.vision.min_pixels = 32 * 32;
    cfg.vision.max_pixels = 8 * 64 * 64;
    cfg.min_frames = 2;
    cfg.max_frames = 8;
    cfg.do_sample_frames = mode & 4 == 0;
    if mode & 8 != 0 {
        cfg.num_frames = Some(4);
    }
    cfg
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = MediaLimits {
        media_root: None,
        allow_http: false,
        max_image_pixels: CAPS[(mode & 3) as usize],
        max_frames: MAX_FRAMES,
        ..MediaLimits::default()
    };
    let cfg = processor(mode);
    let bytes: Arc<[u8]> = rest.into();
    let (p, meta) = match load_video(&VideoData::Bytes(bytes), &cfg, &limits) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(meta.width > 0 && meta.height > 0);
    assert!(meta.width as u64 * meta.height as u64 <= limits.max_image_pixels);
    let idx = &meta.frames_indices;
    assert!(!idx.is_empty() && idx.len() as u64 <= MAX_FRAMES);
    assert!(idx.windows(2).all(|w| w[0] <= w[1]));
    assert!(idx.iter().all(|&i| i < meta.total_num_frames));
    assert!(meta.duration.is_finite() && meta.duration >= 0.0);
    let v = &cfg.vision;
    let [t, h, w] = p.grid_thw;
    assert_eq!(
        t as usize,
        idx.len().div_ceil(v.temporal_patch_size as usize)
    );
    assert!(h > 0 && w > 0);
    assert_eq!(
        p.pixel_values.len(),
        (t * h * w) as usize * v.patch_dim(),
        "grid {:?}",
        p.grid_thw
    );
    assert!(p.pixel_values.iter().all(|x| x.is_finite()));
});
