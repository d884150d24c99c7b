//! Configuring and starting a [`Pipeline`]: model, MindIE-style schedule limits, KV cache size,
//! stage sizes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use actix::prelude::*;

use super::{DetokenizerFactory, MediaLimits, Pipeline, Processor, RequestError, Truncation};
use crate::actors::bridge::bridge;
use crate::actors::llm::draft::SpeculativeConfig;
use crate::actors::llm::scheduler::{SchedulerConfig, SeqUpdate};
use crate::actors::llm::worker::{spawn_engine, EngineConfig, EngineStats, OutputSink};
use crate::actors::llm::LlmActor;
use crate::actors::media::{Limits, MediaActor, MediaContext};
use crate::actors::request::RequestId;
use crate::actors::stream::detokenizer_factory;
use crate::actors::stream::{Deliver, Fail, StreamActor};
use crate::actors::vision::{spawn_vision_worker, VisionActor, VisionSharing};
use crate::engine::paged::{cache_blocks_for_bytes, DEFAULT_BLOCK_SIZE};
use crate::engine::sampling::GenerationDefaults;
use crate::engine::{EngineError, LoadOptions, Qwen3VlModel};
use crate::media::{ImageProcessorConfig, MediaCaps, MediaOverrides, VideoProcessorConfig};
use crate::prompt::{ChatTemplate, Tokenizer};

/// MindIE's `ScheduleConfig` / `ModelDeployConfig` knobs (defaults are MindIE's).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// `maxBatchSize`: sequences decoded together.
    pub max_batch_size: usize,
    /// `maxPrefillBatchSize`: sequences joining in one step.
    pub max_prefill_batch_size: usize,
    /// `maxPrefillTokens`: prompt tokens computed in one step (≥ the input limit).
    pub max_prefill_tokens: usize,
    /// `maxSeqLen`: prompt + output.
    pub max_seq_len: usize,
    /// `maxInputTokenLen` (effective limit: min(this, maxSeqLen − 1)).
    pub max_input_token_len: usize,
    /// `maxIterTimes`: output cap and default `max_tokens`.
    pub max_iter_times: usize,
    /// `truncation`: what to do with a too-long prompt.
    pub truncation: Truncation,
    /// SplitFuse chunk (MindIE `templateType: Mix`): prompt tokens computed per step, so decode
    /// steps keep running while long prompts prefill. 0 = whole prompts (`Standard`).
    pub prefill_chunk: usize,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            max_batch_size: 200,
            max_prefill_batch_size: 50,
            max_prefill_tokens: 8192,
            max_seq_len: 2560,
            max_input_token_len: 2048,
            max_iter_times: 512,
            truncation: Truncation::Error,
            prefill_chunk: 0,
        }
    }
}

/// How much memory the paged KV cache gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KvCacheSize {
    /// A fixed size in GiB (MindIE's `npuMemSize`).
    Gib(f64),
    /// This fraction of the memory available after loading the model, but no more than
    /// `maxBatchSize` full-length sequences need.
    FreeMemoryFraction(f64),
    /// Exactly this many blocks (tests).
    Blocks(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no model directory given (PipelineBuilder::model)")]
    NoModel,
    #[error("loading the model: {0}")]
    Load(#[from] EngineError),
    #[error("generation defaults: {0}")]
    Defaults(#[from] crate::engine::sampling::SamplingError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("loading the processor: {0}")]
    Processor(String),
    #[error("starting the pipeline threads: {0}")]
    Spawn(#[from] std::io::Error),
}

type ProgressFn = Box<dyn Fn(&str) + Send + Sync>;

/// Builder for [`Pipeline`]; `Pipeline::builder().model(dir).build()`.
pub struct PipelineBuilder {
    model_dir: Option<PathBuf>,
    load: LoadOptions,
    schedule: ScheduleConfig,
    kv_cache: KvCacheSize,
    block_size: usize,
    prefix_caching: bool,
    speculative: Option<SpeculativeConfig>,
    overlap_vision: bool,
    vision_batch_patches: usize,
    vision_sharing: VisionSharing,
    media_workers: usize,
    mailbox: usize,
    max_in_flight: Option<usize>,
    detokenizer: Option<DetokenizerFactory>,
    processor: Option<Processor>,
    tokenizer: Option<PathBuf>,
    media_limits: MediaLimits,
    media_defaults: MediaOverrides,
    media_caps: MediaCaps,
    escape_user_special_tokens: bool,
    progress: Option<ProgressFn>,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder {
            model_dir: None,
            load: LoadOptions::default(),
            schedule: ScheduleConfig::default(),
            kv_cache: KvCacheSize::FreeMemoryFraction(0.5),
            block_size: DEFAULT_BLOCK_SIZE,
            prefix_caching: true,
            speculative: None,
            overlap_vision: true,
            vision_batch_patches: 8192,
            vision_sharing: VisionSharing::Fair,
            media_workers: 2,
            mailbox: 16,
            max_in_flight: None,
            detokenizer: None,
            processor: None,
            tokenizer: None,
            media_limits: MediaLimits::default(),
            media_defaults: MediaOverrides::default(),
            media_caps: MediaCaps::default(),
            escape_user_special_tokens: false,
            progress: None,
        }
    }
}

impl PipelineBuilder {
    /// The checkpoint directory (config.json, safetensors, generation_config.json).
    pub fn model(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }
    pub fn load_options(mut self, o: LoadOptions) -> Self {
        self.load = o;
        self
    }
    pub fn schedule(mut self, s: ScheduleConfig) -> Self {
        self.schedule = s;
        self
    }
    pub fn kv_cache(mut self, k: KvCacheSize) -> Self {
        self.kv_cache = k;
        self
    }
    /// Tokens per KV block (MindIE `cacheBlockSize`, default 128).
    pub fn block_size(mut self, n: usize) -> Self {
        self.block_size = n;
        self
    }
    pub fn prefix_caching(mut self, on: bool) -> Self {
        self.prefix_caching = on;
        self
    }
    /// Speculative decoding (n-gram prompt lookup): output unchanged, fewer model steps when
    /// the text repeats what came before.
    pub fn speculative(mut self, cfg: Option<SpeculativeConfig>) -> Self {
        self.speculative = cfg;
        self
    }
    /// Encode images on the vision thread while decode steps continue (default), or inline
    /// on the engine thread (decode pauses meanwhile).
    pub fn overlap_vision(mut self, on: bool) -> Self {
        self.overlap_vision = on;
        self
    }
    /// Patches per vision tower pass (at least one item per pass).
    pub fn vision_batch_patches(mut self, n: usize) -> Self {
        self.vision_batch_patches = n;
        self
    }
    /// How overlapped vision shares the cores with decode (default: fair).
    pub fn vision_sharing(mut self, s: VisionSharing) -> Self {
        self.vision_sharing = s;
        self
    }
    /// Requests preprocessed concurrently by the media stage.
    pub fn media_workers(mut self, n: usize) -> Self {
        self.media_workers = n;
        self
    }
    /// Capacity of every stage mailbox and channel.
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.mailbox = n.max(1);
        self
    }
    /// Requests admitted into the pipeline at once (default 2 × maxBatchSize); further
    /// submitters wait at the door.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n.max(1));
        self
    }
    /// Token → text for the stream stage (without one, events carry token ids only).
    pub fn detokenizer(mut self, f: DetokenizerFactory) -> Self {
        self.detokenizer = Some(f);
        self
    }
    /// Use this processor for chat requests (default: built from the model folder).
    pub fn processor(mut self, p: Processor) -> Self {
        self.processor = Some(p);
        self
    }
    /// `tokenizer.json` to use when the model folder has none (random checkpoints).
    pub fn tokenizer(mut self, path: impl Into<PathBuf>) -> Self {
        self.tokenizer = Some(path.into());
        self
    }
    /// Where media may be read from and how large it may be.
    pub fn media_limits(mut self, l: MediaLimits) -> Self {
        self.media_limits = l;
        self
    }
    /// Processor settings for every request (`--mm-processor-kwargs`), under each request's own.
    pub fn media_defaults(mut self, d: MediaOverrides) -> Self {
        self.media_defaults = d;
        self
    }
    /// Caps on the pixel budget and frame count that requests may lower but never raise.
    pub fn media_caps(mut self, c: MediaCaps) -> Self {
        self.media_caps = c;
        self
    }
    /// Tokenize control-token text in `user` / `tool` content as plain text (a prompt-injection
    /// guard; off by default for parity with transformers and vLLM).
    pub fn escape_user_special_tokens(mut self, on: bool) -> Self {
        self.escape_user_special_tokens = on;
        self
    }
    /// Called with progress messages while loading.
    pub fn on_progress(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    fn check(&self) -> Result<(), PipelineError> {
        let s = &self.schedule;
        let bad = |m: String| Err(PipelineError::Config(m));
        if s.max_batch_size == 0 || s.max_seq_len < 2 || s.max_iter_times == 0 {
            return bad("maxBatchSize, maxIterTimes must be ≥ 1 and maxSeqLen ≥ 2".into());
        }
        if s.max_prefill_batch_size == 0 || s.max_prefill_batch_size > s.max_batch_size {
            return bad("maxPrefillBatchSize must be in [1, maxBatchSize]".into());
        }
        let max_input = s.max_input_token_len.min(s.max_seq_len - 1);
        if s.max_prefill_tokens < max_input {
            return bad(format!(
                "maxPrefillTokens ({}) must be ≥ the input limit ({max_input})",
                s.max_prefill_tokens
            ));
        }
        if self.block_size == 0 || self.block_size > 1024 {
            return bad("block size must be in [1, 1024]".into());
        }
        Ok(())
    }

    /// Load the model and start the stages.
    pub fn build(mut self) -> Result<Pipeline, PipelineError> {
        self.check()?;
        let dir = self.model_dir.clone().ok_or(PipelineError::NoModel)?;
        let say = |m: &str| {
            if let Some(p) = &self.progress {
                p(m)
            }
        };
        say(&format!("loading model from {}", dir.display()));
        let t0 = std::time::Instant::now();
        // Loading is one long call (mmap, bf16 conversion, oneDNN packing): report elapsed
        // time every few seconds so a multi-GB checkpoint does not look hung.
        let model = std::thread::scope(|sc| {
            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
            let ticker = self.progress.as_ref().map(|p| {
                sc.spawn(move || {
                    let tick = std::time::Duration::from_secs(5);
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        done_rx.recv_timeout(tick)
                    {
                        p(&format!(
                            "loading weights… {:.0}s",
                            t0.elapsed().as_secs_f64()
                        ));
                    }
                })
            });
            let m = Qwen3VlModel::load(&dir, self.load);
            drop(done_tx);
            if let Some(t) = ticker {
                let _ = t.join();
            }
            m
        });
        let model = Arc::new(model?);
        say(&format!(
            "model loaded in {:.1}s ({} layers, backend {})",
            t0.elapsed().as_secs_f64(),
            model.num_layers(),
            model.backend_name()
        ));
        say(&model.plan().summary());
        let eos = config_eos(&dir);
        let defaults = GenerationDefaults::from_model_dir(&dir, &eos)?;
        let s = self.schedule.clone();
        let num_blocks = self.num_blocks(&model)?;
        say(&format!(
            "KV cache: {num_blocks} blocks × {} tokens",
            self.block_size
        ));
        let engine_cfg = EngineConfig {
            scheduler: SchedulerConfig {
                max_batch_size: s.max_batch_size,
                max_prefill_batch_size: s.max_prefill_batch_size,
                max_prefill_tokens: s.max_prefill_tokens,
                prefill_chunk: s.prefill_chunk,
                speculative: self.speculative.clone(),
            },
            max_seq_len: s.max_seq_len,
            block_size: self.block_size,
            num_blocks,
            prefix_caching: self.prefix_caching,
            inline_vision: !self.overlap_vision,
            max_waiting: self.mailbox.max(s.max_prefill_batch_size),
        };
        let max_in_flight = self.max_in_flight.unwrap_or(2 * s.max_batch_size).max(1);
        let escape = self.escape_user_special_tokens;
        let processor = match self.processor.take() {
            Some(p) => Some(p),
            None => self.load_processor(&dir)?,
        }
        .map(|p| {
            let on = escape || p.escape_user_special_tokens;
            Arc::new(p.with_escaped_user_special_tokens(on))
        });
        if processor.is_some() {
            say("processor ready (tokenizer, chat template, media preprocessing)");
        }
        let detok = self.detokenizer.clone().or_else(|| {
            processor
                .as_ref()
                .map(|p| detokenizer_factory(Arc::new(p.tokenizer.clone())))
        });
        let has_processor = processor.is_some();
        let media_ctx = Arc::new(MediaContext {
            processor,
            model: model.clone(),
            defaults,
            limits: Limits {
                max_seq_len: s.max_seq_len,
                max_input_token_len: s.max_input_token_len,
                max_iter_times: s.max_iter_times,
                truncation: s.truncation,
            },
        });
        let (mailbox, workers, overlap) = (self.mailbox, self.media_workers, self.overlap_vision);
        let (etx, erx) = bridge(mailbox);
        let (vtx, vrx) = bridge(mailbox);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let actors = std::thread::Builder::new()
            .name("qwen3vl-actors".into())
            .spawn(move || {
                let sys = actix::System::new();
                sys.block_on(async move {
                    let stream = StreamActor::new(detok, mailbox).start();
                    let llm = LlmActor::new(etx).start();
                    let vision = VisionActor::new(vtx).start();
                    let media = MediaActor::new(
                        media_ctx,
                        workers,
                        mailbox,
                        vision,
                        llm.clone(),
                        stream.clone(),
                        overlap,
                    )
                    .start();
                    let _ = ready_tx.send((System::current(), stream, llm, media));
                });
                let _ = sys.run();
            })?;
        let (system, stream, llm, media) = ready_rx
            .recv()
            .map_err(|_| PipelineError::Config("actor system failed to start".into()))?;
        let stats = Arc::new(EngineStats::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let sink = Box::new(StreamSink {
            addr: stream.clone(),
        });
        let engine = spawn_engine(
            model.clone(),
            engine_cfg,
            erx,
            sink,
            stats.clone(),
            shutdown.clone(),
        )?;
        let vision = spawn_vision_worker(
            model.clone(),
            vrx,
            llm,
            stream.clone(),
            self.vision_batch_patches,
            self.vision_sharing,
            stats.clone(),
        )?;
        say("pipeline ready");
        Ok(Pipeline {
            model,
            media,
            stream,
            stats,
            next_id: AtomicU64::new(0),
            max_iter_times: s.max_iter_times,
            has_processor,
            max_in_flight,
            admission: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            shutdown,
            system,
            threads: vec![engine, vision, actors],
        })
    }

    /// Tokenizer from the builder or the model folder; the template and processor configs
    /// from the model folder, built-in Qwen3-VL defaults for missing files.
    fn load_processor(&self, dir: &std::path::Path) -> Result<Option<Processor>, PipelineError> {
        let path = match &self.tokenizer {
            Some(p) => p.clone(),
            None => dir.join("tokenizer.json"),
        };
        if !path.exists() {
            return Ok(None);
        }
        let err = |e: String| PipelineError::Processor(e);
        let tok = Tokenizer::from_file(&path).map_err(|e| err(e.to_string()))?;
        let template = ChatTemplate::from_model_dir(dir).map_err(|e| err(e.to_string()))?;
        let img = ImageProcessorConfig::from_model_dir(dir).map_err(|e| err(e.to_string()))?;
        let vid = VideoProcessorConfig::from_model_dir(dir).map_err(|e| err(e.to_string()))?;
        Processor::new(tok, template, img, vid, self.media_limits.clone())
            .with_media_settings(self.media_defaults.clone(), self.media_caps)
            .map(Some)
            .map_err(|e| err(e.to_string()))
    }

    fn num_blocks(&self, model: &Qwen3VlModel) -> Result<usize, PipelineError> {
        let (layers, kvd, bs, p) = (
            model.num_layers(),
            model.kv_dim(),
            self.block_size,
            model.precision,
        );
        let per_seq = self.schedule.max_seq_len.div_ceil(bs);
        let wanted = per_seq * self.schedule.max_batch_size;
        let blocks = match self.kv_cache {
            KvCacheSize::Blocks(n) => n,
            KvCacheSize::Gib(g) => {
                cache_blocks_for_bytes((g * (1u64 << 30) as f64) as usize, layers, kvd, bs, p)
            }
            KvCacheSize::FreeMemoryFraction(f) => {
                let avail = available_memory().ok_or_else(|| {
                    PipelineError::Config(
                        "cannot read MemAvailable from /proc/meminfo; set the KV cache size in GiB"
                            .into(),
                    )
                })?;
                let fit = cache_blocks_for_bytes((avail as f64 * f) as usize, layers, kvd, bs, p);
                fit.min(wanted)
            }
        };
        if blocks < per_seq {
            return Err(PipelineError::Config(format!(
                "KV cache of {blocks} blocks cannot hold one maxSeqLen ({}) sequence ({per_seq} blocks)",
                self.schedule.max_seq_len
            )));
        }
        Ok(blocks)
    }
}

/// `text_config.eos_token_id` of config.json (the fallback when generation_config.json is absent).
fn config_eos(dir: &std::path::Path) -> Vec<u32> {
    let Ok(text) = std::fs::read_to_string(dir.join("config.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let e = v
        .pointer("/text_config/eos_token_id")
        .or_else(|| v.get("eos_token_id"));
    match e {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(|x| vec![x as u32]).unwrap_or_default()
        }
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        _ => Vec::new(),
    }
}

/// Bytes of `MemAvailable`.
fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The engine thread's link to the stream stage: waits for mailbox room (backpressure).
struct StreamSink {
    addr: Addr<StreamActor>,
}

impl OutputSink for StreamSink {
    fn deliver(&mut self, updates: Vec<SeqUpdate>) {
        let _ = futures::executor::block_on(self.addr.send(Deliver(updates)));
    }

    fn fail(&mut self, request: RequestId, error: RequestError) {
        let _ = futures::executor::block_on(self.addr.send(Fail(request, error)));
    }
}
