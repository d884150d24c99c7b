//! Preprocessing throughput (not a test): images/s for 448×448 and 1920×1080 JPEGs and decoded
//! frames/s for a 1080p h264 clip.
//!
//!     cargo run --release --example bench_preprocess [-- SECONDS_PER_CASE]

#[path = "../tests/preprocess_support/encode.rs"]
mod encode;

use std::io::Cursor;
use std::time::{Duration, Instant};

use qwen3vl::media::{
    decode_image, preprocess_image, ImageProcessorConfig, MediaFetcher, MediaLimits, MediaSource,
    VideoInput, VideoProcessorConfig,
};

fn synthetic_jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let v = ((x as f32 * 0.05).sin() * (y as f32 * 0.03).cos() * 100.0 + 128.0) as u8;
        image::Rgb([v, (x * 255 / width) as u8, (y * 255 / height) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode jpeg");
    out.into_inner()
}

/// Runs `f` repeatedly for at least `budget` and returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < budget || n < 3 {
        f();
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let budget = Duration::from_secs_f64(secs);
    let limits = MediaLimits::default();
    let cfg = ImageProcessorConfig::default();
    let slow = ImageProcessorConfig::from_json_slow_processor_parity(
        qwen3vl::media::config::DEFAULT_PREPROCESSOR_CONFIG,
    )
    .expect("config");
    println!(
        "threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (w, h) in [(448, 448), (1920, 1080)] {
        let jpeg = synthetic_jpeg(w, h);
        let decode = rate(budget, || {
            decode_image(&jpeg, &limits).expect("decode");
        });
        for (name, c) in [
            ("checkpoint budget", &cfg),
            ("slow-processor parity", &slow),
        ] {
            let full = rate(budget, || {
                let img = decode_image(&jpeg, &limits).expect("decode");
                preprocess_image(&img, c).expect("preprocess");
            });
            let img = decode_image(&jpeg, &limits).expect("decode");
            let grid = preprocess_image(&img, c).expect("preprocess").grid_thw;
            println!(
                "JPEG {w}x{h} ({name}, grid {grid:?}): {full:.1} images/s end to end (decode only {decode:.1}/s)"
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("qwen3vl-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let clip = dir.join("bench1080p.mp4");
    let frames = 300;
    encode::encode_test_video(&clip, 1920, 1080, 30, frames, "libx264").expect("encode clip");
    let f = MediaFetcher::new(MediaLimits {
        media_root: Some(dir.clone()),
        ..Default::default()
    });
    let vcfg = VideoProcessorConfig::default();
    let input = VideoInput::Source(MediaSource::File(clip));
    let mut grid = [0; 3];
    let mut decoded = 0;
    let per_s = rate(budget, || {
        let (v, m) = input.load(&f, &vcfg).expect("video");
        grid = v.grid_thw;
        decoded = m.frames_indices.last().copied().unwrap_or(0) + 1;
    });
    println!(
        "h264 1920x1080 {frames} frames @30fps: {:.1} frames/s decoded+sampled ({per_s:.2} clips/s, grid {grid:?}, {decoded} frames decoded per clip)",
        per_s * decoded as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
