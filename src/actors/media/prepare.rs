//! Request → [`PreparedRequest`]: tokens and pixels in, limits applied, positions, prefix keys,
//! visual items with content hashes, sampling resolved per choice. Pure CPU work, run on the
//! media stage's blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use crate::actors::error::RequestError;
use crate::actors::request::{PreparedRequest, Prompt, Request, RequestInput, Timings, VisualItem};
use crate::engine::model::MultimodalInput;
use crate::engine::paged::prefix::{text_token_key, visual_content_hash, visual_token_key};
use crate::engine::sampling::GenerationDefaults;
use crate::engine::Qwen3VlModel;
use crate::prompt::Processor;

/// What to do with a prompt longer than the input limit (MindIE's `truncation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Reject with [`RequestError::PromptTooLong`] (MindIE `truncation: 0`).
    #[default]
    Error,
    /// Keep the first tokens (text-only prompts).
    Right,
    /// Keep the last tokens (text-only prompts).
    Left,
}

impl std::str::FromStr for Truncation {
    type Err = String;
    /// `error`, `left` or `right`, and MindIE's spellings (`false`/`0`, `true`/`-1`, `1`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "error" | "0" | "false" => Ok(Truncation::Error),
            "right" | "-1" | "true" => Ok(Truncation::Right),
            "left" | "1" => Ok(Truncation::Left),
            _ => Err(format!("unknown truncation `{s}` (error, left or right)")),
        }
    }
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Truncation::Error => "error",
            Truncation::Right => "right",
            Truncation::Left => "left",
        })
    }
}

/// The request limits of MindIE's `ModelDeployConfig` / `ScheduleConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_seq_len: usize,
    pub max_input_token_len: usize,
    pub max_iter_times: usize,
    pub truncation: Truncation,
}

impl Limits {
    /// MindIE: effective input limit = min(maxInputTokenLen, maxSeqLen − 1).
    pub fn max_input(&self) -> usize {
        self.max_input_token_len
            .min(self.max_seq_len.saturating_sub(1))
    }
}

/// Everything the media stage needs, shared by its workers.
pub struct MediaContext {
    pub model: Arc<Qwen3VlModel>,
    /// Tokenizer, chat template, image/video processors (chat requests need it).
    pub processor: Option<Arc<Processor>>,
    pub defaults: GenerationDefaults,
    pub limits: Limits,
}

/// A request's http(s) media, downloaded before preprocessing (by URL).
pub type Prefetched = Option<Arc<HashMap<String, Arc<[u8]>>>>;

impl MediaContext {
    pub fn prepare(&self, req: Request) -> Result<PreparedRequest, RequestError> {
        self.prepare_with(req, None)
    }

    /// [`MediaContext::prepare`] with the request's http(s) media already fetched.
    pub fn prepare_with(
        &self,
        req: Request,
        prefetched: Prefetched,
    ) -> Result<PreparedRequest, RequestError> {
        let Request {
            id,
            input,
            params,
            arrival,
            cancel,
            stops,
        } = req;
        let mut mm = match input {
            RequestInput::Tokens(mm) => mm,
            RequestInput::Chat(messages, media) => {
                let processor = self.processor.as_ref().ok_or_else(|| {
                    RequestError::Invalid(
                        "chat messages need a tokenizer (tokenizer.json in the model folder or PipelineBuilder::tokenizer); submit token ids instead".into(),
                    )
                })?;
                self.refuse_oversized_text(processor, &messages)?;
                let opts = crate::prompt::RenderOptions {
                    add_generation_prompt: true,
                    ..Default::default()
                };
                let processed = match prefetched {
                    Some(items) => processor.process_prefetched(&messages, &opts, &media, items),
                    None => processor.process_request(&messages, &opts, &media),
                };
                let p = processed.map_err(|e| match e {
                    crate::prompt::PromptError::Media { .. } => {
                        // Paths, hosts and client errors go to the log only.
                        tracing::warn!(detail = ?e, "media item refused");
                        RequestError::Media(e.to_string())
                    }
                    _ => RequestError::Invalid(e.to_string()),
                })?;
                let grids = |g: &[[u32; 3]]| -> Vec<[usize; 3]> {
                    g.iter().map(|x| x.map(|d| d as usize)).collect()
                };
                MultimodalInput {
                    input_ids: p.input_ids,
                    image_grid_thw: grids(&p.image_grid_thw),
                    video_grid_thw: grids(&p.video_grid_thw),
                    pixel_values: p.pixel_values,
                    pixel_values_videos: p.pixel_values_videos,
                }
            }
        };
        self.apply_limits(&mut mm)?;
        let model = &self.model;
        let vocab = model.vocab_size() as u32;
        if let Some(&bad) = mm.input_ids.iter().find(|&&t| t >= vocab) {
            return Err(RequestError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({vocab})"
            )));
        }
        let positions = model
            .positions(&mm)
            .map_err(|e| RequestError::Invalid(e.to_string()))?;
        let visuals = split_items(model, &mm)?;
        let keys = prefix_keys(model, &mm.input_ids, &visuals)?;
        let n = params.n.unwrap_or(1);
        let base = params.resolve(&self.defaults)?;
        let choices = (0..n)
            .map(|i| {
                let mut c = base.clone();
                c.seed = base.seed.wrapping_add(i as u64);
                c
            })
            .collect();
        let len = mm.input_ids.len();
        let room = self.limits.max_seq_len.saturating_sub(len);
        let max_new = params
            .max_tokens
            .unwrap_or(self.limits.max_iter_times)
            .min(self.limits.max_iter_times)
            .min(room);
        if max_new == 0 {
            return Err(RequestError::Invalid(format!(
                "no room to generate: prompt {len} tokens, maxSeqLen {}, max_tokens {:?}",
                self.limits.max_seq_len, params.max_tokens
            )));
        }
        let mut stop_ids = if params.ignore_eos {
            Vec::new()
        } else {
            self.defaults.eos_token_ids.clone()
        };
        stop_ids.extend(&params.stop_token_ids);
        let mut stops = stops;
        stops.resize_with(n, Default::default);
        Ok(PreparedRequest {
            id,
            prompt: Prompt {
                visual_tokens: mm
                    .input_ids
                    .iter()
                    .filter(|&&t| {
                        t == self.model.config.image_token_id
                            || t == self.model.config.video_token_id
                    })
                    .count(),
                ids: mm.input_ids,
                positions,
                keys,
                features: None,
            },
            visuals,
            choices,
            max_new_tokens: max_new,
            speculative: params.speculative != Some(false),
            stop_token_ids: stop_ids,
            timings: Timings {
                media_done: Some(arrival.elapsed().as_secs_f64()),
                ..Default::default()
            },
            arrival,
            cancel,
            stops,
        })
    }

    /// A chat whose text alone is over the input limit is refused before the template is
    /// rendered and the whole prompt tokenized: the cost is bounded by the limit (see
    /// [`crate::prompt::Tokenizer::encode_limited`]). Small texts skip this (they are cheap).
    fn refuse_oversized_text(
        &self,
        processor: &Processor,
        messages: &[crate::prompt::ChatMessage],
    ) -> Result<(), RequestError> {
        use crate::prompt::{ContentPart, MessageContent};
        if self.limits.truncation != Truncation::Error {
            return Ok(());
        }
        let max = self.limits.max_input();
        let texts: Vec<&str> = messages
            .iter()
            .flat_map(|m| match &m.content {
                Some(MessageContent::Text(t)) => vec![t.as_str()],
                Some(MessageContent::Parts(parts)) => parts
                    .iter()
                    .filter_map(|p| match p {
                        ContentPart::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect(),
                None => Vec::new(),
            })
            .collect();
        if texts.iter().map(|t| t.len()).sum::<usize>() <= max.saturating_mul(4) {
            return Ok(());
        }
        let mut total = 0usize;
        for t in texts {
            let tokens = processor
                .tokenizer
                .encode_limited(t, max - total)
                .map_err(|e| RequestError::Invalid(e.to_string()))?;
            match tokens {
                Ok(ids) => total += ids.len(),
                Err(n) => {
                    return Err(RequestError::PromptFarTooLong {
                        at_least: total + n,
                        max,
                    })
                }
            }
        }
        Ok(())
    }

    fn apply_limits(&self, mm: &mut MultimodalInput) -> Result<(), RequestError> {
        let max = self.limits.max_input();
        let len = mm.input_ids.len();
        if len == 0 {
            return Err(RequestError::Invalid("empty prompt".into()));
        }
        if len <= max {
            return Ok(());
        }
        let visual = !mm.image_grid_thw.is_empty() || !mm.video_grid_thw.is_empty();
        match self.limits.truncation {
            Truncation::Right if !visual => mm.input_ids.truncate(max),
            Truncation::Left if !visual => {
                mm.input_ids.drain(..len - max);
            }
            _ => return Err(RequestError::PromptTooLong { len, max }),
        }
        Ok(())
    }
}

/// Cut the pixel rows into one item per image and per video slice.
fn split_items(
    model: &Qwen3VlModel,
    mm: &MultimodalInput,
) -> Result<Vec<VisualItem>, RequestError> {
    let pd = model.config.patch_dim();
    let mut items = Vec::new();
    for (pixels, grids, is_video) in [
        (&mm.pixel_values, &mm.image_grid_thw, false),
        (&mm.pixel_values_videos, &mm.video_grid_thw, true),
    ] {
        let rows: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
        if rows * pd != pixels.len() {
            return Err(RequestError::Invalid(format!(
                "{} pixel values do not match grids {grids:?} ({rows} patches × {pd})",
                pixels.len()
            )));
        }
        let mut at = 0;
        for &[t, h, w] in grids {
            // A video is one item per temporal slice: slices encode independently (their own
            // attention segment, the same position embeddings), so the vision stage can batch
            // them with other requests' items under its patch budget.
            let (count, grid) = if is_video {
                (t, [1, h, w])
            } else {
                (1, [t, h, w])
            };
            for _ in 0..count {
                let n = grid[0] * h * w * pd;
                let px = pixels[at..at + n].to_vec();
                at += n;
                items.push(VisualItem {
                    grid,
                    hash: visual_content_hash(is_video as u8, grid, &px),
                    pixels: px,
                    is_video,
                    output: None,
                });
            }
        }
    }
    Ok(items)
}

/// Prefix-cache key of every prompt token.
fn prefix_keys(
    model: &Qwen3VlModel,
    ids: &[u32],
    items: &[VisualItem],
) -> Result<Vec<u64>, RequestError> {
    let (img_tok, vid_tok) = (model.config.image_token_id, model.config.video_token_id);
    let mut per_kind: [Vec<(u128, usize)>; 2] = [Vec::new(), Vec::new()];
    for it in items {
        per_kind[it.is_video as usize].push((it.hash, model.visual_tokens_for(it.grid)));
    }
    let mut cursor = [(0usize, 0usize); 2];
    let mut keys = Vec::with_capacity(ids.len());
    for &t in ids {
        let kind = if t == img_tok {
            0
        } else if t == vid_tok {
            1
        } else {
            keys.push(text_token_key(t));
            continue;
        };
        let list = &per_kind[kind];
        let cur = &mut cursor[kind];
        while cur.0 < list.len() && list[cur.0].1 == cur.1 {
            *cur = (cur.0 + 1, 0);
        }
        let Some(&(hash, _)) = list.get(cur.0) else {
            return Err(RequestError::Invalid(
                "more image/video pad tokens than the visual inputs provide".into(),
            ));
        };
        keys.push(visual_token_key(hash, cur.1));
        cur.1 += 1;
    }
    Ok(keys)
}
