//! The engine thread: owns the KV blocks and the scheduler, admits prepared requests from a
//! bounded channel between steps, runs one batched model step at a time and hands the sampled
//! tokens to the stream stage. Heavy compute never runs on an actix arbiter.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::runner::run_step;
use super::sample::sample_step;
use super::scheduler::{Scheduler, SchedulerConfig, SeqUpdate};
use super::sequence::Sequence;
use crate::actors::bridge::BridgeRx;
use crate::actors::error::RequestError;
use crate::actors::request::{PreparedRequest, RequestId};
use crate::actors::vision::encode;
use crate::engine::paged::BlockManager;
use crate::engine::sampling::Sampler;
use crate::engine::Qwen3VlModel;

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub scheduler: SchedulerConfig,
    pub max_seq_len: usize,
    pub block_size: usize,
    pub num_blocks: usize,
    pub prefix_caching: bool,
    /// Run the vision tower on the engine thread right before admission (no overlap with
    /// decode): the baseline of the overlap measurement.
    pub inline_vision: bool,
    /// Requests taken from the channel into the scheduler's waiting queue at most; beyond it
    /// they stay in the (bounded) channel and the upstream stages wait.
    pub max_waiting: usize,
}

/// Live counters, readable from any thread.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub total_blocks: AtomicUsize,
    pub free_blocks: AtomicUsize,
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub steps: AtomicU64,
    pub preemptions: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Speculative decoding: draft tokens verified, and how many of them were accepted.
    pub drafted_tokens: AtomicU64,
    pub accepted_tokens: AtomicU64,
}

/// Where the engine's results go (the stream stage, or a test).
pub trait OutputSink: Send + 'static {
    fn deliver(&mut self, updates: Vec<SeqUpdate>);
    fn fail(&mut self, request: RequestId, error: RequestError);
}

pub enum LlmCommand {
    Admit(Box<PreparedRequest>),
}

/// Spawn the engine thread; it stops when every sender of `rx` is gone.
pub fn spawn_engine(
    model: Arc<Qwen3VlModel>,
    cfg: EngineConfig,
    rx: BridgeRx<LlmCommand>,
    sink: Box<dyn OutputSink>,
    stats: Arc<EngineStats>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("qwen3vl-engine".into())
        .spawn(move || engine_main(model, cfg, rx, sink, stats, shutdown))
}

fn engine_main(
    model: Arc<Qwen3VlModel>,
    cfg: EngineConfig,
    rx: BridgeRx<LlmCommand>,
    mut sink: Box<dyn OutputSink>,
    stats: Arc<EngineStats>,
    shutdown: Arc<AtomicBool>,
) {
    let mut kv = model.new_paged_cache(cfg.block_size, cfg.num_blocks);
    let blocks = BlockManager::new(cfg.num_blocks, cfg.block_size, cfg.prefix_caching);
    let mut sched = Scheduler::new(cfg.scheduler.clone(), blocks, cfg.max_seq_len);
    let vocab = model.vocab_size();
    stats.total_blocks.store(cfg.num_blocks, Ordering::Relaxed);
    stats.free_blocks.store(cfg.num_blocks, Ordering::Relaxed);
    loop {
        if shutdown.load(Ordering::Acquire) {
            return;
        }
        if !sched.has_work() {
            match rx.recv() {
                Some(cmd) => admit(&model, &cfg, &mut sched, &mut *sink, cmd),
                None => return,
            }
        }
        while sched.num_waiting() < cfg.max_waiting.max(1) {
            match rx.try_recv() {
                Some(cmd) => admit(&model, &cfg, &mut sched, &mut *sink, cmd),
                None => break,
            }
        }
        let mut updates = sched.reap_aborted();
        let (plan, preempted) = sched.schedule();
        updates.extend(preempted);
        if !plan.is_empty() {
            let started = std::time::Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| {
                run_step(&model, &mut kv, sched.running(), &plan)
            }));
            // Per step, so trace level: `RUST_LOG=qwen3vl::actors::llm=trace`.
            tracing::trace!(
                sequences = plan.work.len(),
                tokens = plan.tokens(),
                waiting = sched.num_waiting(),
                free_blocks = sched.blocks.num_free(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "engine step"
            );
            match result {
                Ok(Ok(logits)) => {
                    let sampled = sample_step(sched.running_mut(), &plan, &logits, vocab);
                    let ups = sched.complete_step(&plan, sampled);
                    stats
                        .generated_tokens
                        .fetch_add(ups.len() as u64, Ordering::Relaxed);
                    stats.drafted_tokens.store(sched.drafted, Ordering::Relaxed);
                    stats
                        .accepted_tokens
                        .store(sched.accepted, Ordering::Relaxed);
                    updates.extend(ups);
                }
                other => {
                    let msg = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "a compute task panicked".to_string(),
                    };
                    // Fail the sequences of this step only; the engine keeps serving.
                    let mut seen = std::collections::HashSet::new();
                    for (req, _) in sched.fail_running() {
                        if seen.insert(req) {
                            sink.fail(req, RequestError::Model(msg.clone()));
                        }
                    }
                }
            }
            stats.steps.fetch_add(1, Ordering::Relaxed);
        }
        stats
            .free_blocks
            .store(sched.blocks.num_free(), Ordering::Relaxed);
        stats.running.store(sched.num_running(), Ordering::Relaxed);
        stats.waiting.store(sched.num_waiting(), Ordering::Relaxed);
        stats
            .preemptions
            .store(sched.preemptions, Ordering::Relaxed);
        if !updates.is_empty() {
            sink.deliver(updates);
        }
    }
}

/// Turn a prepared request into one sequence per choice.
fn admit(
    model: &Qwen3VlModel,
    cfg: &EngineConfig,
    sched: &mut Scheduler,
    sink: &mut dyn OutputSink,
    cmd: LlmCommand,
) {
    let LlmCommand::Admit(mut req) = cmd;
    if req.cancel.is_cancelled() {
        return;
    }
    if req.pending_visuals() > 0 || (!req.visuals.is_empty() && req.prompt.features.is_none()) {
        // Inline mode (or a request the vision stage passed through): encode here.
        let mut items: Vec<_> = req
            .visuals
            .iter_mut()
            .filter(|v| v.output.is_none())
            .collect();
        let r = catch_unwind(AssertUnwindSafe(|| encode::encode_items(model, &mut items)));
        let r = match r {
            Ok(r) => r.and_then(|_| encode::assemble(model, &mut req)),
            Err(_) => Err(crate::engine::EngineError::Kernel("vision panicked".into())),
        };
        if let Err(e) = r {
            sink.fail(req.id, RequestError::Vision(e.to_string()));
            return;
        }
        req.timings.vision_done = Some(req.since_arrival());
    }
    let need = sched.blocks.blocks_for(req.prompt.ids.len() + 1);
    if need > cfg.num_blocks {
        sink.fail(
            req.id,
            RequestError::CacheTooSmall {
                need,
                total: cfg.num_blocks,
            },
        );
        return;
    }
    let prompt = Arc::new(req.prompt);
    let stops = Arc::new(req.stop_token_ids);
    for (choice, sampling) in req.choices.into_iter().enumerate() {
        sched.add(Sequence {
            request: req.id,
            choice,
            sampler: Sampler::new(sampling, &prompt.ids),
            prompt: prompt.clone(),
            output: Vec::new(),
            blocks: Default::default(),
            computed: 0,
            cached_tokens: 0,
            max_new_tokens: req.max_new_tokens,
            draft_len: 0,
            speculative: req.speculative,
            stop_token_ids: stops.clone(),
            cancel: req.cancel.clone(),
            stop: req.stops.get(choice).cloned().unwrap_or_default(),
            arrival: req.arrival,
            timings: req.timings,
        });
    }
}
