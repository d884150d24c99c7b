//! Processor settings read from a checkpoint's `preprocessor_config.json` and
//! `video_preprocessor_config.json`, with the Qwen3-VL shipped values as defaults.

use std::path::Path;

use serde::Deserialize;

use super::error::{MediaError, Result};
use super::resize::Filter;

/// Settings shared by the image and the video processor.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    /// Lower bound of the resized pixel count (`size.shortest_edge` / `min_pixels`).
    pub min_pixels: u64,
    /// Upper bound of the resized pixel count (`size.longest_edge` / `max_pixels`).
    pub max_pixels: u64,
    pub patch_size: u32,
    pub temporal_patch_size: u32,
    pub merge_size: u32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
    /// `resample` (PIL code 0 / 2 / 3; every Qwen-VL checkpoint ships 3, bicubic).
    pub resample: Filter,
}

impl VisionConfig {
    /// Side length that resized images must be a multiple of (`patch_size · merge_size`).
    pub fn factor(&self) -> u32 {
        self.patch_size * self.merge_size
    }

    /// Number of values in one flattened patch row (`3 · temporal_patch_size · patch_size²`).
    pub fn patch_dim(&self) -> usize {
        3 * (self.temporal_patch_size * self.patch_size * self.patch_size) as usize
    }

    /// The rules transformers also has (sizes of zero divide by zero, a zero std makes inf/NaN
    /// pixels) plus overflow guards no real config comes near. `min_pixels > max_pixels` is
    /// allowed, as in transformers: `smart_resize` tests `> max` first, then `< min`.
    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(MediaError::Config(what.to_string()));
        if !(1..=1024).contains(&self.patch_size) {
            return bad("patch_size must be in [1, 1024]");
        }
        if !(1..=16).contains(&self.merge_size) {
            return bad("merge_size must be in [1, 16]");
        }
        if !(1..=16).contains(&self.temporal_patch_size) {
            return bad("temporal_patch_size must be in [1, 16]");
        }
        if self.image_std.contains(&0.0) {
            return bad("image_std must not contain 0 (normalisation would divide by zero)");
        }
        Ok(())
    }
}

/// Which transformers image processor's arithmetic an image goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageProcessorKind {
    /// `Qwen2VLImageProcessorFast` (torchvision): the default of transformers' `AutoProcessor`,
    /// of later transformers and of vLLM. Honours `size`; torch's uint8 antialiased bicubic and
    /// the fused `(x − mean/rescale) / (std/rescale)` normalisation.
    #[default]
    Fast,
    /// The slow PIL `Qwen2VLImageProcessor` of transformers 4.57, quirk included: its
    /// `__init__` replaces `size` by the Qwen2-VL class defaults `[3136, 1003520]` and honours
    /// only explicit `min_pixels` / `max_pixels`. For parity experiments against that class only:
    /// a released checkpoint gets far fewer visual tokens this way than the model was trained with.
    SlowPilParity,
}

/// Image processor settings (`Qwen2VLImageProcessorFast`, or the slow one on request).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    pub vision: VisionConfig,
    pub kind: ImageProcessorKind,
}

/// Video processor settings (`Qwen3VLVideoProcessor`).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoProcessorConfig {
    pub vision: VisionConfig,
    /// Frames sampled per second of video.
    pub fps: f64,
    pub min_frames: u32,
    pub max_frames: u32,
    /// Sample exactly this many frames instead of `fps` per second (transformers' `num_frames`).
    pub num_frames: Option<u32>,
    pub do_sample_frames: bool,
}

/// JSON shape shared by both files; every field optional so that partial files work.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    size: Option<RawSize>,
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
    patch_size: Option<u32>,
    temporal_patch_size: Option<u32>,
    merge_size: Option<u32>,
    image_mean: Option<OneOrMany>,
    image_std: Option<OneOrMany>,
    rescale_factor: Option<f64>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    do_normalize: Option<bool>,
    resample: Option<u32>,
    fps: Option<f64>,
    min_frames: Option<u32>,
    max_frames: Option<u32>,
    num_frames: Option<u32>,
    do_sample_frames: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSize {
    shortest_edge: Option<u64>,
    longest_edge: Option<u64>,
}

/// `image_mean` / `image_std`: a number or a list (the fast processors broadcast both a bare
/// number and a one-element list over the channels).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(f32),
    Many(Vec<f32>),
}

fn triple(v: Option<OneOrMany>, name: &str) -> Result<[f32; 3]> {
    match v {
        None => Ok([0.5; 3]),
        Some(OneOrMany::One(x)) => Ok([x; 3]),
        Some(OneOrMany::Many(v)) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
        Some(OneOrMany::Many(v)) if v.len() == 1 => Ok([v[0]; 3]),
        Some(OneOrMany::Many(v)) => Err(MediaError::Config(format!(
            "{name} must have 1 or 3 values, got {}",
            v.len()
        ))),
    }
}

impl RawConfig {
    fn read(path: &Path) -> Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| MediaError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MediaError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn vision(
        self,
        default_min: u64,
        default_max: u64,
        honour_size: bool,
    ) -> Result<(VisionConfig, Self)> {
        let resample = match self.resample {
            None => Filter::Bicubic,
            Some(r) => Filter::from_pil(r).ok_or_else(|| {
                MediaError::Config(format!(
                    "resample={r} is not supported (0 = nearest, 2 = bilinear, 3 = bicubic)"
                ))
            })?,
        };
        // Explicit min_pixels/max_pixels override `size`, as in transformers.
        let size = self.size.as_ref().filter(|_| honour_size);
        let min_pixels = self
            .min_pixels
            .or(size.and_then(|s| s.shortest_edge))
            .unwrap_or(default_min);
        let max_pixels = self
            .max_pixels
            .or(size.and_then(|s| s.longest_edge))
            .unwrap_or(default_max);
        let v = VisionConfig {
            min_pixels,
            max_pixels,
            patch_size: self.patch_size.unwrap_or(16),
            temporal_patch_size: self.temporal_patch_size.unwrap_or(2),
            merge_size: self.merge_size.unwrap_or(2),
            image_mean: triple(self.image_mean.clone(), "image_mean")?,
            image_std: triple(self.image_std.clone(), "image_std")?,
            rescale_factor: self.rescale_factor.unwrap_or(1.0 / 255.0),
            do_resize: self.do_resize.unwrap_or(true),
            do_rescale: self.do_rescale.unwrap_or(true),
            do_normalize: self.do_normalize.unwrap_or(true),
            resample,
        };
        v.validate()?;
        Ok((v, self))
    }
}

/// `Qwen2VLImageProcessor(Fast)` class defaults for the pixel budget, `56·56` and `28·28·1280`:
/// what a file without `size`, `min_pixels` and `max_pixels` gets.
pub const SLOW_IMAGE_MIN_PIXELS: u64 = 56 * 56;
pub const SLOW_IMAGE_MAX_PIXELS: u64 = 28 * 28 * 1280;

/// The shipped Qwen3-VL `preprocessor_config.json` budget: `size.shortest_edge` / `longest_edge`.
pub const IMAGE_MIN_PIXELS: u64 = 65_536;
pub const IMAGE_MAX_PIXELS: u64 = 16_777_216;

impl Default for ImageProcessorConfig {
    /// What transformers' default (fast) processor makes of the shipped Qwen3-VL
    /// `preprocessor_config.json`: the pixel budget `[65536, 16777216]`.
    fn default() -> Self {
        Self::from_json(DEFAULT_PREPROCESSOR_CONFIG).expect("defaults are valid")
    }
}

impl Default for VideoProcessorConfig {
    /// The shipped Qwen3-VL `video_preprocessor_config.json` values.
    fn default() -> Self {
        let (vision, _) = RawConfig::default()
            .vision(4_096, 25_165_824, true)
            .expect("defaults are valid");
        Self {
            vision,
            fps: 2.0,
            min_frames: 4,
            max_frames: 768,
            num_frames: None,
            do_sample_frames: true,
        }
    }
}

impl ImageProcessorConfig {
    /// Reads `preprocessor_config.json` from `dir` with `kind`'s semantics; a missing file gives
    /// the shipped defaults.
    pub fn from_model_dir_as(dir: &Path, kind: ImageProcessorKind) -> Result<Self> {
        match RawConfig::read(&dir.join("preprocessor_config.json"))? {
            None => Self::from_raw(Self::parse(DEFAULT_PREPROCESSOR_CONFIG)?, kind),
            Some(raw) => Self::from_raw(raw, kind),
        }
    }

    /// Reads `preprocessor_config.json` from `dir` (fast-processor semantics).
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Self::from_model_dir_as(dir, ImageProcessorKind::Fast)
    }

    /// Parses the JSON text of a `preprocessor_config.json` as transformers' default (fast)
    /// processor and vLLM do: the pixel budget is `size.shortest_edge` / `size.longest_edge`,
    /// each overridden by an explicit `min_pixels` / `max_pixels` key, else the class defaults.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_raw(Self::parse(text)?, ImageProcessorKind::Fast)
    }

    /// Opt-in, for parity experiments only: the slow PIL `Qwen2VLImageProcessor` of
    /// transformers 4.57, which ignores `size` (see [`ImageProcessorKind::SlowPilParity`]).
    pub fn from_json_slow_processor_parity(text: &str) -> Result<Self> {
        Self::from_raw(Self::parse(text)?, ImageProcessorKind::SlowPilParity)
    }

    fn parse(text: &str) -> Result<RawConfig> {
        serde_json::from_str(text).map_err(|e| MediaError::Config(e.to_string()))
    }

    fn from_raw(raw: RawConfig, kind: ImageProcessorKind) -> Result<Self> {
        let (vision, _) = match kind {
            ImageProcessorKind::Fast => {
                raw.vision(SLOW_IMAGE_MIN_PIXELS, SLOW_IMAGE_MAX_PIXELS, true)?
            }
            ImageProcessorKind::SlowPilParity => {
                raw.vision(SLOW_IMAGE_MIN_PIXELS, SLOW_IMAGE_MAX_PIXELS, false)?
            }
        };
        Ok(Self { vision, kind })
    }
}

impl VideoProcessorConfig {
    /// Reads `video_preprocessor_config.json` from `dir`; a missing file gives the shipped defaults.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        match RawConfig::read(&dir.join("video_preprocessor_config.json"))? {
            None => Ok(Self::default()),
            Some(raw) => Self::from_raw(raw),
        }
    }

    /// Parses the JSON text of a `video_preprocessor_config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_raw(serde_json::from_str(text).map_err(|e| MediaError::Config(e.to_string()))?)
    }

    fn from_raw(raw: RawConfig) -> Result<Self> {
        // Class defaults of Qwen3VLVideoProcessor apply when the file leaves `size` out.
        let (vision, raw) = raw.vision(128 * 32 * 32, 32 * 32 * 768, true)?;
        let cfg = Self {
            vision,
            fps: raw.fps.unwrap_or(2.0),
            min_frames: raw.min_frames.unwrap_or(4),
            max_frames: raw.max_frames.unwrap_or(768),
            num_frames: raw.num_frames.filter(|&n| n > 0),
            do_sample_frames: raw.do_sample_frames.unwrap_or(true),
        };
        // fps ≤ 0 is what transformers accepts (it samples `min_frames` frames); max_frames 0
        // would give an empty video, which transformers fails on later.
        if !cfg.fps.is_finite() {
            return Err(MediaError::Config("fps must be a finite number".into()));
        }
        if cfg.max_frames == 0 {
            return Err(MediaError::Config("max_frames must be at least 1".into()));
        }
        Ok(cfg)
    }
}

/// The shipped Qwen3-VL-2B-Instruct `preprocessor_config.json`.
pub const DEFAULT_PREPROCESSOR_CONFIG: &str = r#"{
  "size": {
    "longest_edge": 16777216,
    "shortest_edge": 65536
  },
  "patch_size": 16,
  "temporal_patch_size": 2,
  "merge_size": 2,
  "image_mean": [0.5, 0.5, 0.5],
  "image_std": [0.5, 0.5, 0.5],
  "processor_class": "Qwen3VLProcessor",
  "image_processor_type": "Qwen2VLImageProcessorFast"
}
"#;

/// The shipped Qwen3-VL-2B-Instruct `video_preprocessor_config.json`.
pub const DEFAULT_VIDEO_PREPROCESSOR_CONFIG: &str = r#"{
  "size": {
    "longest_edge": 25165824,
    "shortest_edge": 4096
  },
  "patch_size": 16,
  "temporal_patch_size": 2,
  "merge_size": 2,
  "image_mean": [0.5, 0.5, 0.5],
  "image_std": [0.5, 0.5, 0.5],
  "processor_class": "Qwen3VLProcessor",
  "video_processor_type": "Qwen3VLVideoProcessor"
}
"#;
