//! Decoding streams frames: a 1080p clip far larger than memory allows is never held decoded.
//! (Own test binary: it measures the process's peak RSS.)

mod preprocess_support;

use preprocess_support::encode::encode_test_video;
use qwen3vl::media::{MediaFetcher, MediaLimits, MediaSource, VideoInput, VideoProcessorConfig};

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn long_1080p_video_is_decoded_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long1080p.mp4");
    let frames = 240; // 8 s at 30 fps: 1.5 GB as decoded RGB
    encode_test_video(&path, 1920, 1080, 30, frames, "libx264").unwrap();
    // Reset the peak-RSS counter so only the decode is measured (Linux ≥ 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kib("VmRSS:").unwrap_or(0);
    let f = MediaFetcher::new(MediaLimits {
        media_root: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let (v, m) = VideoInput::Source(MediaSource::File(path))
        .load(&f, &VideoProcessorConfig::default())
        .unwrap();
    assert_eq!(m.total_num_frames, frames as u64);
    assert_eq!(m.frames_indices.len(), 16);
    assert_eq!(v.grid_thw[0], 8);
    let peak = status_kib("VmHWM:").unwrap_or(0);
    let raw_mib = (frames as u64 * 1920 * 1080 * 3) >> 20;
    let grown_mib = peak.saturating_sub(before) >> 10;
    eprintln!(
        "decoded RGB would be {raw_mib} MiB; peak RSS grew by {grown_mib} MiB (reset: {reset})"
    );
    if reset {
        assert!(grown_mib < 700, "peak RSS grew by {grown_mib} MiB");
    }
}
