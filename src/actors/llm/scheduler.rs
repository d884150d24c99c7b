//! Continuous batching with MindIE's knobs. Every step, each running sequence computes all of
//! its uncomputed tokens (one for a decode, the whole prompt for a prefill) in one model pass,
//! then samples one token. Between steps sequences join (FCFS, within maxBatchSize,
//! maxPrefillBatchSize and maxPrefillTokens) and leave (finished, cancelled). When a running
//! sequence needs a block and none is free, the newest running sequence is preempted: its blocks
//! are freed and it is recomputed later from its prompt plus the tokens it already produced.

use std::collections::VecDeque;

use super::sequence::Sequence;
use crate::actors::request::FinishReason;
use crate::engine::paged::BlockManager;
use crate::engine::sampling::Sampled;

/// The scheduling subset of MindIE's `ScheduleConfig` / `ModelDeployConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Max sequences in a step (`maxBatchSize`).
    pub max_batch_size: usize,
    /// Max sequences joining in one step (`maxPrefillBatchSize`).
    pub max_prefill_batch_size: usize,
    /// Max prompt tokens admitted in one step (`maxPrefillTokens`).
    pub max_prefill_tokens: usize,
    /// SplitFuse (MindIE `templateType: Mix`): at most this many prompt tokens are computed per
    /// step, long prompts are prefilled in chunks alongside the decodes, so a long prefill never
    /// stalls decoding for long. 0 = whole prompts in one step (MindIE `Standard`).
    pub prefill_chunk: usize,
}

/// What happened to a sequence in a step.
#[derive(Debug)]
pub struct SeqUpdate {
    pub request: u64,
    pub choice: usize,
    pub sampled: Option<Sampled>,
    pub finish: Option<FinishReason>,
    pub completion_tokens: usize,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub visual_tokens: usize,
    pub timings: crate::actors::request::Timings,
}

pub struct Scheduler {
    pub cfg: SchedulerConfig,
    pub blocks: BlockManager,
    pub max_seq_len: usize,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    /// Preemptions so far (for stats and tests).
    pub preemptions: u64,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, blocks: BlockManager, max_seq_len: usize) -> Self {
        Scheduler {
            cfg,
            blocks,
            max_seq_len,
            waiting: VecDeque::new(),
            running: Vec::new(),
            preemptions: 0,
        }
    }

    pub fn add(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> &[Sequence] {
        &self.running
    }

    /// Remove cancelled / stopped sequences (waiting or running) and free their blocks.
    pub fn reap_aborted(&mut self) -> Vec<SeqUpdate> {
        let mut out = Vec::new();
        let blocks = &mut self.blocks;
        let mut take = |mut s: Sequence| {
            blocks.release(&mut s.blocks);
            let reason = if s.cancel.is_cancelled() {
                FinishReason::Cancelled
            } else {
                FinishReason::Stop
            };
            out.push(update(&mut s, None, Some(reason)));
        };
        let (gone, keep): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|s| s.is_aborted());
        self.running = keep;
        gone.into_iter().for_each(&mut take);
        let (gone, keep): (Vec<_>, Vec<_>) = self.waiting.drain(..).partition(|s| s.is_aborted());
        self.waiting = keep.into();
        gone.into_iter().for_each(&mut take);
        out
    }

    /// Decide the next step: grow running sequences (preempting the newest when blocks run
    /// out), admit waiting ones, and set each running sequence's `step_tokens`. Afterwards
    /// every running sequence has blocks for all of its tokens.
    pub fn schedule(&mut self) -> Vec<SeqUpdate> {
        let mut preempted = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            let total = self.running[i].total_len();
            let ok = {
                let s = &mut self.running[i];
                self.blocks.ensure(&mut s.blocks, total)
            };
            if ok {
                i += 1;
                continue;
            }
            let mut victim = self.running.pop().expect("non-empty");
            self.blocks.release(&mut victim.blocks);
            victim.computed = 0;
            victim.timings.preemptions += 1;
            self.preemptions += 1;
            preempted.push(update(&mut victim, None, None));
            self.waiting.push_front(victim);
        }
        if !preempted.is_empty() {
            // Do not admit anyone in a step that had to preempt.
            return preempted;
        }
        let mut budget = self.cfg.max_prefill_tokens;
        let mut admitted = 0;
        while let Some(mut s) = self.waiting.pop_front() {
            if self.running.len() >= self.cfg.max_batch_size
                || admitted >= self.cfg.max_prefill_batch_size
            {
                self.waiting.push_front(s);
                break;
            }
            let total = s.total_len();
            let keys = s.keys();
            let hit = self.blocks.match_prefix(&mut s.blocks, &keys);
            let work = total - hit;
            // A recomputed sequence may exceed the budget alone; it then runs in its own step.
            let over_budget = work > budget && admitted > 0;
            // Keep a block per running sequence so the running ones can grow next step.
            let reserve = self.running.len();
            let short = self.blocks.missing(&s.blocks, total) + reserve > self.blocks.num_free();
            if over_budget || short {
                self.blocks.release(&mut s.blocks);
                self.waiting.push_front(s);
                break;
            }
            self.blocks.ensure(&mut s.blocks, total);
            if s.timings.scheduled.is_none() {
                s.cached_tokens = hit.min(s.prompt_len());
                s.timings.scheduled = Some(s.elapsed());
            }
            s.computed = hit;
            budget = budget.saturating_sub(work);
            admitted += 1;
            self.running.push(s);
        }
        // Work of this step: decodes always; prompt tokens up to the chunk budget, oldest first.
        let mut budget = if self.cfg.prefill_chunk == 0 {
            usize::MAX
        } else {
            self.cfg.prefill_chunk
        };
        for s in &mut self.running {
            let remaining = s.total_len() - s.computed;
            s.step_tokens = if remaining == 1 {
                1
            } else {
                let n = remaining.min(budget);
                budget -= n;
                n
            };
        }
        Vec::new()
    }

    /// After the model step: every running sequence's tokens are computed; sample from its
    /// logits row (`logits[i]` for running sequence i) and finish the ones that are done.
    pub fn complete_step(&mut self, logits: &[f32], vocab: usize) -> Vec<SeqUpdate> {
        let mut out = Vec::with_capacity(self.running.len());
        let mut keep = Vec::with_capacity(self.running.len());
        for (i, mut s) in std::mem::take(&mut self.running).into_iter().enumerate() {
            let total = s.total_len();
            s.computed += std::mem::take(&mut s.step_tokens);
            let keys = s.keys();
            self.blocks.commit(&mut s.blocks, &keys, s.computed);
            if s.computed < total {
                // Mid-prefill (chunked) or idle this step.
                keep.push(s);
                continue;
            }
            let mut row = logits[i * vocab..(i + 1) * vocab].to_vec();
            let sampled = s.sampler.sample(&mut row);
            let tok = sampled.token;
            s.output.push(tok);
            if s.timings.first_token.is_none() {
                s.timings.first_token = Some(s.elapsed());
            }
            let finish = if s.stop_token_ids.contains(&tok) {
                Some(FinishReason::Stop)
            } else if s.output.len() >= s.max_new_tokens || s.total_len() >= self.max_seq_len {
                Some(FinishReason::Length)
            } else {
                None
            };
            if finish.is_some() {
                self.blocks.release(&mut s.blocks);
            }
            out.push(update(&mut s, Some(sampled), finish));
            if finish.is_none() {
                keep.push(s);
            }
        }
        self.running = keep;
        out
    }

    /// Fail every running sequence (after a model error): free blocks, report them finished.
    pub fn fail_running(&mut self) -> Vec<(u64, usize)> {
        let mut ids = Vec::new();
        for mut s in std::mem::take(&mut self.running) {
            self.blocks.release(&mut s.blocks);
            ids.push((s.request, s.choice));
        }
        ids
    }
}

fn update(s: &mut Sequence, sampled: Option<Sampled>, finish: Option<FinishReason>) -> SeqUpdate {
    if finish.is_some() {
        s.timings.finished = Some(s.elapsed());
    }
    SeqUpdate {
        request: s.request,
        choice: s.choice,
        sampled,
        finish,
        completion_tokens: s.output.len(),
        prompt_tokens: s.prompt_len(),
        cached_tokens: s.cached_tokens,
        visual_tokens: s.prompt.visual_tokens,
        timings: s.timings,
    }
}
