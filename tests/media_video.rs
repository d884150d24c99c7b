//! Video decoding (mp4, mkv, mov, webm, avi, a clip encoded at test time, frame lists) and
//! sampling metadata.

mod preprocess_support;

use preprocess_support::encode::encode_test_video;
use preprocess_support::*;
use qwen3vl::media::{
    MediaError, MediaFetcher, MediaLimits, MediaSource, VideoInput, VideoProcessorConfig,
};

fn fetcher() -> MediaFetcher {
    MediaFetcher::new(MediaLimits {
        media_root: Some(fixtures()),
        ..Default::default()
    })
    .with_base_dir(fixtures().join("inputs"))
}

fn load(
    name: &str,
) -> Result<(qwen3vl::media::PatchedVisual, qwen3vl::media::VideoMetadata), MediaError> {
    VideoInput::Source(MediaSource::parse(name).unwrap())
        .load(&fetcher(), &VideoProcessorConfig::default())
}

#[test]
fn h264_in_every_container_decodes_identically() {
    let (mp4, meta) = load("clip.mp4").unwrap();
    assert_eq!(meta.fps, Some(12.0));
    assert_eq!(meta.total_num_frames, 48);
    assert!((meta.duration - 4.0).abs() < 1e-9);
    assert_eq!((meta.width, meta.height), (200, 120));
    // int(48 / 12 · 2) = 8 frames at round(linspace(0, 47, 8)).
    assert_eq!(meta.frames_indices, vec![0, 7, 13, 20, 27, 34, 40, 47]);
    assert_eq!(mp4.grid_thw, [4, 8, 12]);
    for other in ["clip.mkv", "clip.mov", "clip_faststart.mp4"] {
        let (v, m) = load(other).unwrap_or_else(|e| panic!("{other}: {e}"));
        assert_eq!(m.frames_indices, meta.frames_indices, "{other}");
        assert_eq!(v, mp4, "{other}: same stream, same pixels");
    }
}

#[test]
fn webm_without_frame_count_and_avi() {
    // WebM does not store a frame count: it is counted from the packets.
    let (v, m) = load("odd.webm").unwrap();
    assert_eq!((m.total_num_frames, m.fps), (15, Some(6.0)));
    assert_eq!(m.frames_indices.len(), 5);
    assert_eq!(v.grid_thw[0], 3, "5 frames padded to 6");
    assert_eq!(m.timestamps(2).len(), 3);
    let (v, m) = load("clip.avi").unwrap();
    assert_eq!((m.total_num_frames, m.fps), (24, Some(8.0)));
    assert_eq!(v.grid_thw[0], 3);
}

#[test]
fn clip_encoded_at_test_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made.mp4");
    encode_test_video(&path, 96, 64, 10, 30, "libx264").unwrap();
    let f = MediaFetcher::new(MediaLimits {
        media_root: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let (v, m) = VideoInput::Source(MediaSource::File(path))
        .load(&f, &VideoProcessorConfig::default())
        .unwrap();
    assert_eq!((m.total_num_frames, m.fps), (30, Some(10.0)));
    assert_eq!(m.frames_indices.len(), 6);
    assert_eq!(v.grid_thw, [3, 4, 6]);
    assert_eq!(v.pixel_values.len(), 3 * 4 * 6 * 1536);
}

#[test]
fn video_from_data_url_matches_file() {
    use base64::Engine;
    let bytes = std::fs::read(fixtures().join("inputs/clip.mp4")).unwrap();
    let url = format!(
        "data:video/mp4;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    );
    let (from_mem, _) = load(&url).unwrap();
    let (from_file, _) = load("clip.mp4").unwrap();
    assert_eq!(from_mem, from_file);
}

#[test]
fn frame_list_video() {
    let frames: Vec<MediaSource> = ["odd.png"; 3]
        .iter()
        .map(|s| MediaSource::parse(s).unwrap())
        .collect();
    let input = VideoInput::Frames { frames, fps: None };
    let (v, m) = input
        .load(&fetcher(), &VideoProcessorConfig::default())
        .unwrap();
    assert_eq!(m.fps, Some(2.0));
    assert_eq!(m.frames_indices, vec![0, 1, 2]);
    assert_eq!(v.grid_thw[0], 2);
    assert_eq!(m.timestamps(2), vec![0.25, 1.0]);
    // All frames identical, so both temporal slices are identical.
    let half = v.pixel_values.len() / 2;
    assert_eq!(v.pixel_values[..half], v.pixel_values[half..]);
}

#[test]
fn video_in_a_conversation_gets_timestamps() {
    let proc = processor("small");
    let msgs: Vec<qwen3vl::prompt::ChatMessage> = serde_json::from_value(serde_json::json!([
        {"role": "user", "content": [
            {"type": "video", "video": ["inputs/odd.png", "inputs/odd.png", "inputs/odd.png", "inputs/odd.png"], "fps": 1.0},
            {"type": "text", "text": "?"}]}
    ]))
    .unwrap();
    let out = proc.process(&msgs).unwrap();
    let text = proc.tokenizer.decode(&out.input_ids, false).unwrap();
    assert!(
        text.contains("<0.5 seconds><|vision_start|><|video_pad|>"),
        "{text}"
    );
    assert!(
        text.contains("<|vision_end|><2.5 seconds><|vision_start|>"),
        "{text}"
    );
    assert_eq!(out.video_grid_thw.len(), 1);
    let [t, h, w] = out.video_grid_thw[0];
    let pads = out
        .input_ids
        .iter()
        .filter(|&&i| i == proc.tokenizer.video_pad_id)
        .count();
    assert_eq!(pads as u32, t * h * w / 4);
}
