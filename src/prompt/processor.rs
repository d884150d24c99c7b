//! `Qwen3VLProcessor` parity: chat template → placeholder expansion → token ids, plus the
//! preprocessed pixels of every image and video.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use super::escape::Escaper;
use super::messages::{
    collect_visual_refs, template_messages, ChatMessage, Visual, VisualRef, VisualRefError,
};
use super::template::{ChatTemplate, RenderOptions};
use super::{PromptError, Tokenizer};
use crate::media::overrides::capped_defaults;
use crate::media::{
    ImageProcessorConfig, ImageProcessorKind, MediaCaps, MediaError, MediaFetcher, MediaLimits,
    MediaOverrides, PatchedVisual, VideoMetadata, VideoProcessorConfig,
};

const IMAGE_PAD: &str = "<|image_pad|>";
const VIDEO_PAD: &str = "<|video_pad|>";
const VISION_START: &str = "<|vision_start|>";
const VISION_END: &str = "<|vision_end|>";
/// transformers' temporary marker while expanding video placeholders.
const PLACEHOLDER: &str = "<|placeholder|>";

/// Everything the model needs for one prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessedInputs {
    /// Token ids with every visual placeholder expanded.
    pub input_ids: Vec<u32>,
    /// Image patch rows, all images concatenated: `Σ t·h·w` rows × `patch_dim`.
    pub pixel_values: Vec<f32>,
    /// `[t, h, w]` per image, in prompt order.
    pub image_grid_thw: Vec<[u32; 3]>,
    /// Video patch rows, all videos concatenated.
    pub pixel_values_videos: Vec<f32>,
    /// `[t, h, w]` per video, in prompt order.
    pub video_grid_thw: Vec<[u32; 3]>,
    /// Sampling metadata per video (original fps, duration, kept frame indices).
    pub video_metadata: Vec<VideoMetadata>,
    /// Values per patch row (1536 for Qwen3-VL).
    pub patch_dim: usize,
    /// The rendered chat template before placeholder expansion.
    pub prompt: String,
    /// How many of `input_ids` are image or video placeholders (reported in `usage`).
    pub visual_tokens: usize,
}

impl ProcessedInputs {
    /// Writes the tensors to a safetensors file: `input_ids` I64 `[seq]`, `pixel_values` F32
    /// `[rows, patch_dim]`, `image_grid_thw` I64 `[n, 3]` (both present, possibly empty), and for
    /// videos `pixel_values_videos` F32 and `video_grid_thw` I64.
    pub fn write_safetensors(&self, path: &Path) -> Result<(), PromptError> {
        use safetensors::tensor::{Dtype, TensorView};
        fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        let grid = |g: &[[u32; 3]]| {
            le(
                &g.iter().flatten().map(|&x| x as i64).collect::<Vec<_>>(),
                i64::to_le_bytes,
            )
        };
        let pd = self.patch_dim.max(1);
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "input_ids",
                Dtype::I64,
                vec![self.input_ids.len()],
                le(
                    &self.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                    i64::to_le_bytes,
                ),
            ),
            (
                "pixel_values",
                Dtype::F32,
                vec![self.pixel_values.len() / pd, pd],
                le(&self.pixel_values, f32::to_le_bytes),
            ),
            (
                "image_grid_thw",
                Dtype::I64,
                vec![self.image_grid_thw.len(), 3],
                grid(&self.image_grid_thw),
            ),
        ];
        if !self.video_grid_thw.is_empty() {
            tensors.push((
                "pixel_values_videos",
                Dtype::F32,
                vec![self.pixel_values_videos.len() / pd, pd],
                le(&self.pixel_values_videos, f32::to_le_bytes),
            ));
            tensors.push((
                "video_grid_thw",
                Dtype::I64,
                vec![self.video_grid_thw.len(), 3],
                grid(&self.video_grid_thw),
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                TensorView::new(*dtype, shape.clone(), data)
                    .map(|v| (name.to_string(), v))
                    .map_err(|e| PromptError::Output(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        safetensors::serialize_to_file(views, None, path)
            .map_err(|e| PromptError::Output(format!("{}: {e}", path.display())))
    }
}

/// Tokenizer + chat template + image/video processors of one checkpoint.
#[derive(Debug)]
pub struct Processor {
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub image_config: ImageProcessorConfig,
    pub video_config: VideoProcessorConfig,
    /// Server-wide processor settings (`--mm-processor-kwargs`), under each request's own.
    pub defaults: MediaOverrides,
    /// Operator caps that requests may lower but never raise.
    pub caps: MediaCaps,
    /// Control-token text in `user` / `tool` content is tokenized as plain text (off: parity
    /// with transformers and vLLM; see `prompt::escape`).
    pub escape_user_special_tokens: bool,
    fetcher: MediaFetcher,
}

impl Processor {
    /// Loads `tokenizer.json`, the chat template and both processor configs from `dir`.
    pub fn from_model_dir(dir: &Path, limits: MediaLimits) -> Result<Self, PromptError> {
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let template = ChatTemplate::from_model_dir(dir)?;
        let image_config = ImageProcessorConfig::from_model_dir(dir)
            .map_err(|e| PromptError::Config(e.to_string()))?;
        let video_config = VideoProcessorConfig::from_model_dir(dir)
            .map_err(|e| PromptError::Config(e.to_string()))?;
        Ok(Self::new(
            tokenizer,
            template,
            image_config,
            video_config,
            limits,
        ))
    }

    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        image_config: ImageProcessorConfig,
        video_config: VideoProcessorConfig,
        limits: MediaLimits,
    ) -> Self {
        Self {
            tokenizer,
            template,
            image_config,
            video_config,
            defaults: MediaOverrides::default(),
            caps: MediaCaps::default(),
            escape_user_special_tokens: false,
            fetcher: MediaFetcher::new(limits),
        }
    }

    /// Applies server-wide settings and caps. The checkpoint's defaults are lowered to the caps;
    /// `defaults` themselves must respect them (an error names the offending setting).
    pub fn with_media_settings(
        mut self,
        defaults: MediaOverrides,
        caps: MediaCaps,
    ) -> Result<Self, PromptError> {
        capped_defaults(&mut self.image_config, &mut self.video_config, &caps);
        defaults.image_config(&self.image_config, &caps, "mm_processor_kwargs")?;
        defaults.video_config(&self.video_config, &caps, "mm_processor_kwargs")?;
        self.defaults = defaults;
        self.caps = caps;
        Ok(self)
    }

    /// Tokenizes control-token text in `user` and `tool` content as plain text, a
    /// prompt-injection guard (see `prompt::escape`).
    pub fn with_escaped_user_special_tokens(mut self, on: bool) -> Self {
        self.escape_user_special_tokens = on;
        self
    }

    /// Uses the slow PIL image processor's arithmetic and pixel-budget quirk (parity
    /// experiments only; see `ImageProcessorKind::SlowPilParity`).
    pub fn with_slow_image_processor_parity(mut self, dir: &Path) -> Result<Self, PromptError> {
        self.image_config =
            ImageProcessorConfig::from_model_dir_as(dir, ImageProcessorKind::SlowPilParity)
                .map_err(|e| PromptError::Config(e.to_string()))?;
        Ok(self)
    }

    /// Relative media paths resolve against `dir` (e.g. the folder of a messages file).
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.fetcher = self.fetcher.with_base_dir(dir);
        self
    }

    /// The media limits in force.
    pub fn limits(&self) -> &MediaLimits {
        self.fetcher.limits()
    }

    /// Processes a conversation with the generation prompt appended and no tools.
    pub fn process(&self, messages: &[ChatMessage]) -> Result<ProcessedInputs, PromptError> {
        self.process_with(
            messages,
            &RenderOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
    }

    /// Renders the chat template for `messages` (no media is loaded).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, PromptError> {
        if messages.is_empty() {
            return Err(PromptError::NoMessages);
        }
        self.template.render(&template_messages(messages), opts)
    }

    /// Processes a conversation: renders the template, loads and preprocesses every image and
    /// video, expands placeholders and tokenizes.
    pub fn process_with(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<ProcessedInputs, PromptError> {
        self.process_request(messages, opts, &MediaOverrides::default())
    }

    /// [`Processor::process_with`] with a request's `mm_processor_kwargs`, layered over the
    /// server's and under each item's own settings.
    pub fn process_request(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
        request: &MediaOverrides,
    ) -> Result<ProcessedInputs, PromptError> {
        self.process_fetched(messages, opts, request, &self.fetcher)
    }

    /// [`Processor::process_request`] with http(s) items already downloaded (the server fetches
    /// them before taking a preprocessing slot); see `media::net`.
    pub fn process_prefetched(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
        request: &MediaOverrides,
        prefetched: Arc<HashMap<String, Arc<[u8]>>>,
    ) -> Result<ProcessedInputs, PromptError> {
        let fetcher = self.fetcher.clone().with_prefetched(prefetched);
        self.process_fetched(messages, opts, request, &fetcher)
    }

    fn process_fetched(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
        request: &MediaOverrides,
        fetcher: &MediaFetcher,
    ) -> Result<ProcessedInputs, PromptError> {
        let visuals = collect_visual_refs(messages).map_err(|e| match e {
            VisualRefError::Media(source) => PromptError::Media { index: 0, source },
            VisualRefError::Setting(k) => PromptError::Setting(k),
        })?;
        // Caps are checked layer by layer so that an error names the field the caller sent.
        request.image_config(&self.image_config, &self.caps, "mm_processor_kwargs")?;
        request.video_config(&self.video_config, &self.caps, "mm_processor_kwargs")?;
        let base = self.defaults.then(request);
        let limit = self.limits().max_items;
        if visuals.len() > limit {
            return Err(PromptError::Media {
                index: limit,
                source: MediaError::TooManyItems {
                    count: visuals.len(),
                    limit,
                },
            });
        }
        let mut configs = Vec::with_capacity(visuals.len());
        for v in &visuals {
            let unchecked = MediaCaps::default();
            let layered = base.then(&v.overrides);
            let path = &v.path;
            configs.push(match v.visual {
                Visual::Image(_) => {
                    v.overrides
                        .image_config(&self.image_config, &self.caps, path)?;
                    ItemConfig::Image(layered.image_config(&self.image_config, &unchecked, path)?)
                }
                Visual::Video(_) => {
                    v.overrides
                        .video_config(&self.video_config, &self.caps, path)?;
                    ItemConfig::Video(layered.video_config(&self.video_config, &unchecked, path)?)
                }
            });
        }
        let escaper = self.escape_user_special_tokens.then(Escaper::new);
        let prompt = match &escaper {
            Some(e) => self.render(
                &e.escape_messages(messages, self.tokenizer.added_tokens()),
                opts,
            )?,
            None => self.render(messages, opts)?,
        };
        let loaded = self.load_visuals(&visuals, &configs, fetcher)?;
        let mut out = ProcessedInputs {
            patch_dim: self.image_config.vision.patch_dim(),
            prompt,
            ..Default::default()
        };
        let mut image_tokens = Vec::new();
        let mut video_slices = Vec::new();
        let merge_img = self.image_config.vision.merge_size;
        let merge_vid = self.video_config.vision.merge_size;
        for item in loaded {
            match item {
                Loaded::Image(p) => {
                    image_tokens.push(p.num_tokens(merge_img));
                    out.image_grid_thw.push(p.grid_thw);
                    out.pixel_values.extend_from_slice(&p.pixel_values);
                }
                Loaded::Video(p, meta) => {
                    out.video_grid_thw.push(p.grid_thw);
                    out.pixel_values_videos.extend_from_slice(&p.pixel_values);
                    out.video_metadata.push(meta);
                    let [_, h, w] = p.grid_thw;
                    video_slices.push((h as usize * w as usize) / (merge_vid * merge_vid) as usize);
                }
            }
        }
        let text = expand_videos(
            &out.prompt,
            &out.video_grid_thw,
            &out.video_metadata,
            merge_vid as usize,
        )?;
        let placeholders = text.matches(IMAGE_PAD).count();
        if placeholders != image_tokens.len() {
            return Err(PromptError::PlaceholderMismatch {
                kind: "image",
                placeholders,
                items: image_tokens.len(),
            });
        }
        let ids = match &escaper {
            Some(e) => {
                out.prompt = e.restore(&out.prompt, self.tokenizer.added_tokens());
                self.tokenizer.encode_escaped(&text, e)?
            }
            None => self.tokenizer.encode(&text)?,
        };
        out.input_ids = self.expand_ids(&ids, &image_tokens, &out.video_grid_thw, &video_slices)?;
        let tk = &self.tokenizer;
        out.visual_tokens = out
            .input_ids
            .iter()
            .filter(|&&t| t == tk.image_pad_id || t == tk.video_pad_id)
            .count();
        Ok(out)
    }

    fn load_visuals(
        &self,
        visuals: &[VisualRef],
        configs: &[ItemConfig],
        fetcher: &MediaFetcher,
    ) -> Result<Vec<Loaded>, PromptError> {
        let load = |(index, v): (usize, &VisualRef)| -> Result<Loaded, PromptError> {
            let wrap = |source| PromptError::Media { index, source };
            match (&v.visual, &configs[index]) {
                (Visual::Image(img), ItemConfig::Image(cfg)) => {
                    img.load(fetcher, cfg).map(Loaded::Image).map_err(wrap)
                }
                (Visual::Video(vid), ItemConfig::Video(cfg)) => vid
                    .load(fetcher, cfg)
                    .map(|(p, m)| Loaded::Video(p, m))
                    .map_err(wrap),
                _ => Err(PromptError::Internal(format!(
                    "media item {index}: settings of the other kind"
                ))),
            }
        };
        if visuals.len() <= 1 {
            return visuals.iter().enumerate().map(load).collect();
        }
        // Items are independent: decode them on all cores.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(visuals.len());
        let items: Vec<(usize, &VisualRef)> = visuals.iter().enumerate().collect();
        let mut results: Vec<Option<Result<Loaded, PromptError>>> =
            (0..visuals.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let items = &items;
                    s.spawn(move || {
                        items
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .map(|&(i, v)| (i, load((i, v))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                // A panicked worker leaves its slots empty; reported below as an error.
                if let Ok(done) = h.join() {
                    for (i, r) in done {
                        results[i] = Some(r);
                    }
                }
            }
        });
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or(Err(PromptError::Internal(format!(
                    "media item {i} worker panicked"
                ))))
            })
            .collect()
    }

    fn expand_ids(
        &self,
        ids: &[u32],
        image_tokens: &[usize],
        video_grid: &[[u32; 3]],
        video_slices: &[usize],
    ) -> Result<Vec<u32>, PromptError> {
        let total: usize = ids.len()
            + image_tokens.iter().sum::<usize>()
            + video_grid
                .iter()
                .zip(video_slices)
                .map(|(g, s)| g[0] as usize * s)
                .sum::<usize>();
        let mut out = Vec::with_capacity(total);
        let mut images = image_tokens.iter();
        // One `<|video_pad|>` per temporal slice was emitted; each expands to h·w/merge² tokens.
        let mut slices = video_grid
            .iter()
            .zip(video_slices)
            .flat_map(|(g, &n)| std::iter::repeat_n(n, g[0] as usize));
        let tk = &self.tokenizer;
        for &id in ids {
            if id == tk.image_pad_id {
                let n = images.next().ok_or(PromptError::PlaceholderMismatch {
                    kind: "image",
                    placeholders: image_tokens.len() + 1,
                    items: image_tokens.len(),
                })?;
                out.extend(std::iter::repeat_n(id, *n));
            } else if id == tk.video_pad_id {
                let n = slices.next().ok_or(PromptError::PlaceholderMismatch {
                    kind: "video",
                    placeholders: video_grid.len() + 1,
                    items: video_grid.len(),
                })?;
                out.extend(std::iter::repeat_n(id, n));
            } else {
                out.push(id);
            }
        }
        if images.next().is_some() || slices.next().is_some() {
            return Err(PromptError::PlaceholderMismatch {
                kind: "image/video",
                placeholders: 0,
                items: image_tokens.len() + video_grid.len(),
            });
        }
        Ok(out)
    }
}

enum Loaded {
    Image(PatchedVisual),
    Video(PatchedVisual, VideoMetadata),
}

/// The processor settings one item is preprocessed with.
enum ItemConfig {
    Image(ImageProcessorConfig),
    Video(VideoProcessorConfig),
}

/// Python's `f"{x:.1f}"`.
pub fn format_timestamp(x: f64) -> String {
    format!("<{x:.1} seconds>")
}

/// Replaces each video's `<|vision_start|><|video_pad|><|vision_end|>` (or a bare
/// `<|video_pad|>`) by per-slice blocks `<t seconds><|vision_start|><|video_pad|><|vision_end|>`
/// with a single pad per slice (expanded after tokenization), exactly like the HF processor.
fn expand_videos(
    text: &str,
    grids: &[[u32; 3]],
    metas: &[VideoMetadata],
    merge: usize,
) -> Result<String, PromptError> {
    let triple = format!("{VISION_START}{VIDEO_PAD}{VISION_END}");
    let mut text = text.to_string();
    for (i, (g, meta)) in grids.iter().zip(metas).enumerate() {
        let ts = meta.timestamps(merge);
        let mut block = String::new();
        for t in 0..g[0] as usize {
            let time = ts
                .get(t)
                .copied()
                .unwrap_or_else(|| ts.last().copied().unwrap_or(0.0));
            block.push_str(&format_timestamp(time));
            block.push_str(VISION_START);
            block.push_str(PLACEHOLDER);
            block.push_str(VISION_END);
        }
        let target = if text.contains(&triple) {
            triple.as_str()
        } else if text.contains(VIDEO_PAD) {
            VIDEO_PAD
        } else {
            return Err(PromptError::PlaceholderMismatch {
                kind: "video",
                placeholders: i,
                items: grids.len(),
            });
        };
        text = text.replacen(target, &block, 1);
    }
    if text.contains(VIDEO_PAD) {
        return Err(PromptError::PlaceholderMismatch {
            kind: "video",
            placeholders: grids.len() + text.matches(VIDEO_PAD).count(),
            items: grids.len(),
        });
    }
    Ok(text.replace(PLACEHOLDER, VIDEO_PAD))
}

/// Exposed for callers that want the template variables the processor uses by default.
pub fn default_render_options(tools: Option<Vec<Json>>) -> RenderOptions {
    RenderOptions {
        tools,
        add_generation_prompt: true,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Processor>();
        assert_send_sync::<ProcessedInputs>();
    }

    #[test]
    fn timestamp_format_matches_python() {
        // Python: f"{0.25:.1f}" == "0.2", f"{0.75:.1f}" == "0.8", f"{2.65:.1f}" == "2.6"
        assert_eq!(format_timestamp(0.25), "<0.2 seconds>");
        assert_eq!(format_timestamp(0.75), "<0.8 seconds>");
        assert_eq!(format_timestamp(2.65), "<2.6 seconds>");
        assert_eq!(format_timestamp(0.05), "<0.1 seconds>");
    }
}
