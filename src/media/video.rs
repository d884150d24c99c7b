//! Video decoding with FFmpeg (in process), frame sampling and the `Qwen3VLVideoProcessor` pipeline.
//!
//! Frames are decoded as a stream: only the sampled frames are converted to RGB, and each is
//! resized to the target size immediately, so memory is bounded by the resized clip, never by the
//! source file.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Once};

use ffmpeg_next as ff;

use super::config::VideoProcessorConfig;
use super::error::{MediaError, Result};
use super::image::{PatchedVisual, RgbImage};
use super::patchify::{patchify, value_lut, Normalization};
use super::resize::{resize_rgb8_with, smart_resize_video, Resampler};
use super::MediaLimits;

/// What the processor learnt about a video; drives the timestamps in the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoMetadata {
    /// Frame rate of the original video (frames/s); `None` when the container does not say.
    pub fps: Option<f64>,
    /// Frames in the original video.
    pub total_num_frames: u64,
    /// Duration of the original video in seconds.
    pub duration: f64,
    /// Size of the original frames.
    pub width: u32,
    pub height: u32,
    /// Indices (into the original video) of the frames that were kept, in order.
    pub frames_indices: Vec<u64>,
}

impl VideoMetadata {
    /// Per temporal slice: mean time of its first and last frame (`_calculate_timestamps`),
    /// with the index list padded to a multiple of `merge_size` by repeating its last element.
    /// Uses 24 fps when the rate is unknown, like transformers.
    pub fn timestamps(&self, merge_size: usize) -> Vec<f64> {
        let fps = self.fps.unwrap_or(24.0);
        let mut idx: Vec<f64> = self.frames_indices.iter().map(|&i| i as f64).collect();
        if merge_size == 0 || idx.is_empty() {
            return Vec::new();
        }
        while !idx.len().is_multiple_of(merge_size) {
            idx.push(*idx.last().expect("non-empty"));
        }
        idx.chunks(merge_size)
            .map(|c| (c[0] / fps + c[merge_size - 1] / fps) / 2.0)
            .collect()
    }
}

/// `sample_frames` of the HF video processor: `int(total / fps · target_fps)` frames clamped to
/// `[min_frames, max_frames]` and to `total`, at `round(linspace(0, total − 1, n))`; with
/// `num_frames` set, exactly that many (repeating frames of a shorter video, as transformers does).
pub fn sample_indices(total: u64, video_fps: Option<f64>, cfg: &VideoProcessorConfig) -> Vec<u64> {
    if total == 0 {
        return Vec::new();
    }
    if !cfg.do_sample_frames {
        return (0..total).collect();
    }
    if let Some(n) = cfg.num_frames {
        return linspace_round(total - 1, n.max(1) as u64);
    }
    let fps = video_fps.unwrap_or(24.0);
    let n = ((total as f64 / fps) * cfg.fps) as i64;
    let n = n
        .max(cfg.min_frames as i64)
        .min(cfg.max_frames as i64)
        .min(total as i64)
        .max(1) as u64;
    linspace_round(total - 1, n)
}

/// `np.linspace(0, stop, n).round()` (half to even), as integers.
fn linspace_round(stop: u64, n: u64) -> Vec<u64> {
    if n == 1 {
        return vec![0];
    }
    let step = stop as f64 / (n - 1) as f64;
    (0..n)
        .map(|i| {
            if i == n - 1 {
                stop
            } else {
                (i as f64 * step).round_ties_even() as u64
            }
        })
        .collect()
}

fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ff::init();
        // Corrupt inputs are reported through our typed errors; keep FFmpeg's own logging quiet.
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

fn bad(e: impl std::fmt::Display) -> MediaError {
    MediaError::BadVideo(e.to_string())
}

/// Where to decode a video from.
#[derive(Debug, Clone)]
pub enum VideoData {
    /// A file on disk (already checked against the media root); read in a streaming way.
    Path(std::path::PathBuf),
    /// Encoded bytes in memory (data URL, base64, HTTP body).
    Bytes(Arc<[u8]>),
}

fn open(data: &VideoData) -> Result<ff::format::context::Input> {
    init_ffmpeg();
    match data {
        VideoData::Path(p) => ff::format::input(p).map_err(bad),
        VideoData::Bytes(b) => {
            let io = ff::format::context::StreamIo::from_read_seek(Cursor::new(b.clone()))
                .map_err(bad)?;
            ff::format::input_from_stream(io, None, None).map_err(bad)
        }
    }
}

/// Counts the packets of stream `index` (demux only, no decoding) when the container does not
/// state its frame count.
fn count_packets(data: &VideoData, index: usize) -> Result<u64> {
    let mut ictx = open(data)?;
    let mut n = 0;
    loop {
        // A fresh packet per read: `av_read_frame` overwrites the packet without releasing
        // what it held, so reusing one leaked every packet's data (found by fuzzing, LSan).
        let mut packet = ff::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) if packet.stream() == index => n += 1,
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            Err(_) => break,
        }
    }
    Ok(n)
}

fn rational(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0)
        .then(|| r.numerator() as f64 / r.denominator() as f64)
}

/// Converts decoded frames to packed RGB24 at a fixed size, rebuilding the scaler on format changes.
struct RgbConverter {
    scaler: Option<(ff::format::Pixel, u32, u32, ff::software::scaling::Context)>,
    width: u32,
    height: u32,
}

impl RgbConverter {
    fn convert(&mut self, frame: &ff::frame::Video) -> Result<Vec<u8>> {
        let key = (frame.format(), frame.width(), frame.height());
        let stale = !matches!(&self.scaler, Some((f, w, h, _)) if (*f, *w, *h) == key);
        if stale {
            let ctx = ff::software::scaling::Context::get(
                key.0,
                key.1,
                key.2,
                ff::format::Pixel::RGB24,
                self.width,
                self.height,
                ff::software::scaling::Flags::BILINEAR,
            )
            .map_err(bad)?;
            self.scaler = Some((key.0, key.1, key.2, ctx));
        }
        let (_, _, _, scaler) = self.scaler.as_mut().expect("scaler set above");
        let mut rgb = ff::frame::Video::empty();
        scaler.run(frame, &mut rgb).map_err(bad)?;
        let (w, h) = (self.width as usize, self.height as usize);
        let stride = rgb.stride(0);
        let plane = rgb.data(0);
        let mut out = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            out.extend_from_slice(&plane[y * stride..y * stride + w * 3]);
        }
        Ok(out)
    }
}

/// How many frames may go missing at the end (container frame counts are sometimes a little off)
/// before a video counts as truncated.
fn tolerated_shortfall(total: u64) -> u64 {
    2.max(total / 50)
}

/// Decodes a video, samples frames like the HF video processor and returns its patch rows plus
/// metadata. Only the sampled frames are kept, already resized.
pub fn load_video(
    data: &VideoData,
    cfg: &VideoProcessorConfig,
    limits: &MediaLimits,
) -> Result<(PatchedVisual, VideoMetadata)> {
    let mut ictx = open(data)?;
    let stream = ictx
        .streams()
        .best(ff::media::Type::Video)
        .ok_or_else(|| bad("no video stream"))?;
    let index = stream.index();
    let fps = rational(stream.avg_frame_rate()).or_else(|| rational(stream.rate()));
    let declared = stream.frames().max(0) as u64;
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters()).map_err(bad)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ctx.set_threading(ff::codec::threading::Config {
        kind: ff::codec::threading::Type::Frame,
        count: threads,
        ..Default::default()
    });
    let mut decoder = ctx.decoder().video().map_err(bad)?;
    let (width, height) = (decoder.width(), decoder.height());
    if width == 0 || height == 0 {
        return Err(bad("video stream has no frame size"));
    }
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_image_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            pixels,
            limit: limits.max_image_pixels,
        });
    }
    let total = if declared > 0 {
        declared
    } else {
        count_packets(data, index)?
    };
    if total == 0 {
        return Err(bad("video has no frames"));
    }
    if !cfg.do_sample_frames {
        // Every frame would be kept: refuse before building a list as long as the video claims.
        check_frame_limit(usize::try_from(total).unwrap_or(usize::MAX), limits)?;
    }
    let indices = sample_indices(total, fps, cfg);
    check_frame_limit(indices.len(), limits)?;
    let v = &cfg.vision;
    let (rh, rw) = target_size(indices.len(), height, width, cfg)?;

    let mut conv = RgbConverter {
        scaler: None,
        width,
        height,
    };
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(indices.len());
    let mut next = 0usize;
    let mut decoded = 0u64;
    let mut take = |frame: &ff::frame::Video,
                    frames: &mut Vec<Vec<u8>>,
                    next: &mut usize,
                    decoded: &mut u64|
     -> Result<()> {
        let i = *decoded;
        *decoded += 1;
        if *next < indices.len() && indices[*next] == i {
            let rgb = conv.convert(frame)?;
            let resized = resize_rgb8_with(
                &rgb,
                width as usize,
                height as usize,
                rw as usize,
                rh as usize,
                Resampler::TorchUint8,
                cfg.vision.resample,
            );
            // An index repeats only when more frames are asked for than exist.
            let repeats = indices[*next..].iter().take_while(|&&j| j == i).count();
            frames.extend(std::iter::repeat_n(resized, repeats));
            *next += repeats;
        }
        Ok(())
    };
    let mut frame = ff::frame::Video::empty();
    'demux: while next < indices.len() {
        // Fresh per read, as in `count_packets`: the previous packet is released on drop.
        let mut packet = ff::Packet::empty();
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ff::Error::Eof) => break,
            // A read error mid-file means the rest is unreadable: treat like the end.
            Err(_) => break,
        }
        if packet.stream() != index {
            continue;
        }
        // A corrupt packet is skipped; whether enough frames survive is checked below.
        if decoder.send_packet(&packet).is_err() {
            continue;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut frames, &mut next, &mut decoded)?;
            if next >= indices.len() {
                break 'demux;
            }
        }
    }
    if next < indices.len() && decoder.send_eof().is_ok() {
        while next < indices.len() && decoder.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut frames, &mut next, &mut decoded)?;
        }
    }
    if next < indices.len() {
        let needed = indices[indices.len() - 1] + 1;
        if frames.is_empty() || needed - decoded > tolerated_shortfall(total) {
            return Err(MediaError::TruncatedVideo {
                expected: needed,
                decoded,
            });
        }
        // The container overstated its length by a frame or two: reuse the last real frame.
        let last = frames.last().expect("non-empty").clone();
        frames.resize(indices.len(), last);
    }
    let lut = value_lut(v, Normalization::TorchFused);
    let (pixel_values, grid_thw) = patchify(&frames, rh as usize, rw as usize, v, &lut);
    let meta = VideoMetadata {
        fps,
        total_num_frames: total,
        duration: fps.map_or(0.0, |f| total as f64 / f),
        width,
        height,
        frames_indices: indices,
    };
    Ok((
        PatchedVisual {
            pixel_values,
            grid_thw,
        },
        meta,
    ))
}

fn check_frame_limit(n: usize, limits: &MediaLimits) -> Result<()> {
    if n as u64 > limits.max_frames {
        return Err(MediaError::TooManyFrames {
            frames: n as u64,
            limit: limits.max_frames,
        });
    }
    Ok(())
}

fn target_size(
    n: usize,
    height: u32,
    width: u32,
    cfg: &VideoProcessorConfig,
) -> Result<(u32, u32)> {
    let v = &cfg.vision;
    let (rh, rw) = if v.do_resize {
        smart_resize_video(
            n as u32,
            height,
            width,
            v.temporal_patch_size,
            v.factor(),
            v.min_pixels,
            v.max_pixels,
        )?
    } else {
        (height, width)
    };
    if rh % v.factor() != 0 || rw % v.factor() != 0 {
        return Err(MediaError::Config(format!(
            "video of {rw}x{rh} is not a multiple of {} and resizing is disabled",
            v.factor()
        )));
    }
    Ok((rh, rw))
}

/// A video given as already-extracted frames: all frames are used (no resampling), and
/// timestamps use `fps` (default 2, the rate such frame lists are usually extracted at).
pub fn video_from_frames(
    frames: &[RgbImage],
    fps: Option<f64>,
    cfg: &VideoProcessorConfig,
    limits: &MediaLimits,
) -> Result<(PatchedVisual, VideoMetadata)> {
    let first = frames.first().ok_or(MediaError::TooFewFrames {
        got: 0,
        min: cfg.vision.temporal_patch_size as usize,
    })?;
    check_frame_limit(frames.len(), limits)?;
    for (i, f) in frames.iter().enumerate() {
        if (f.width, f.height) != (first.width, first.height) {
            return Err(MediaError::FrameSizeMismatch(
                first.width,
                first.height,
                i,
                f.width,
                f.height,
            ));
        }
    }
    let (rh, rw) = target_size(frames.len(), first.height, first.width, cfg)?;
    let resized: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            resize_rgb8_with(
                &f.data,
                f.width as usize,
                f.height as usize,
                rw as usize,
                rh as usize,
                Resampler::TorchUint8,
                cfg.vision.resample,
            )
        })
        .collect();
    let v = &cfg.vision;
    let lut = value_lut(v, Normalization::TorchFused);
    let (pixel_values, grid_thw) = patchify(&resized, rh as usize, rw as usize, v, &lut);
    let fps = fps.filter(|f| *f > 0.0 && f.is_finite()).unwrap_or(2.0);
    let total = frames.len() as u64;
    Ok((
        PatchedVisual {
            pixel_values,
            grid_thw,
        },
        VideoMetadata {
            fps: Some(fps),
            total_num_frames: total,
            duration: total as f64 / fps,
            width: first.width,
            height: first.height,
            frames_indices: (0..total).collect(),
        },
    ))
}

/// Convenience: decodes a video file at `path` (no media-root check; callers that take paths from
/// users go through [`super::MediaFetcher::resolve_path`] first).
pub fn load_video_file(
    path: &Path,
    cfg: &VideoProcessorConfig,
    limits: &MediaLimits,
) -> Result<(PatchedVisual, VideoMetadata)> {
    load_video(&VideoData::Path(path.to_owned()), cfg, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy() {
        // np.linspace(0, 9, 4).round() = [0, 3, 6, 9]; np.linspace(0, 4, 4) = [0, 1.33, 2.67, 4]
        assert_eq!(linspace_round(9, 4), vec![0, 3, 6, 9]);
        assert_eq!(linspace_round(4, 4), vec![0, 1, 3, 4]);
        // 0.5 and 2.5 round to even: np.linspace(0, 5, 3) = [0, 2.5, 5]
        assert_eq!(linspace_round(5, 3), vec![0, 2, 5]);
    }

    #[test]
    fn sampling_rule() {
        let cfg = VideoProcessorConfig::default();
        // 10 s at 30 fps → 20 frames.
        assert_eq!(sample_indices(300, Some(30.0), &cfg).len(), 20);
        // Short clip: at least 4 frames, at most all frames.
        assert_eq!(sample_indices(3, Some(30.0), &cfg), vec![0, 1, 2]);
        assert_eq!(sample_indices(30, Some(30.0), &cfg).len(), 4);
    }

    #[test]
    fn timestamps_pad_and_average() {
        let m = VideoMetadata {
            fps: Some(2.0),
            total_num_frames: 10,
            duration: 5.0,
            width: 1,
            height: 1,
            frames_indices: vec![0, 1, 2],
        };
        assert_eq!(m.timestamps(2), vec![0.25, 1.0]);
    }
}
