//! Continuous batching with MindIE's knobs. Every step, each running sequence computes all of
//! its uncomputed tokens (one for a decode, the whole prompt for a prefill) in one model pass,
//! then samples one token. Between steps sequences join (FCFS, within maxBatchSize,
//! maxPrefillBatchSize and maxPrefillTokens) and leave (finished, cancelled). When a running
//! sequence needs a block and none is free, the newest running sequence is preempted: its blocks
//! are freed and it is recomputed later from its prompt plus the tokens it already produced.

use std::collections::VecDeque;

use super::draft::{Drafter, SpeculativeConfig};
use super::plan::{SeqWork, StepPlan};
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
    /// Speculative decoding: decoding sequences carry drafts into their steps.
    pub speculative: Option<SpeculativeConfig>,
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
    /// Draft tokens verified and accepted so far.
    pub drafted: u64,
    pub accepted: u64,
    drafter: Option<Drafter>,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, blocks: BlockManager, max_seq_len: usize) -> Self {
        Scheduler {
            blocks,
            max_seq_len,
            waiting: VecDeque::new(),
            running: Vec::new(),
            preemptions: 0,
            drafted: 0,
            accepted: 0,
            drafter: cfg.speculative.clone().map(Drafter::new),
            cfg,
        }
    }

    pub fn add(&mut self, seq: Sequence) {
        if let (Some(d), 0) = (&mut self.drafter, seq.choice) {
            d.observe(&seq.prompt.ids);
        }
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
    /// out), admit waiting ones, and plan what each running sequence computes. Afterwards every
    /// running sequence has blocks for all of its tokens. Returns the plan and the updates of
    /// preempted sequences (a step that preempts admits nobody and computes nothing).
    pub fn schedule(&mut self) -> (StepPlan, Vec<SeqUpdate>) {
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
            return (StepPlan::default(), preempted);
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
        let decoding = self
            .running
            .iter()
            .filter(|s| s.total_len() - s.computed == 1)
            .count();
        let spec = self.drafter.as_ref().filter(|d| d.cfg.drafts_at(decoding));
        let reserve = self.running.len();
        let mut plan = StepPlan::default();
        for (i, s) in self.running.iter_mut().enumerate() {
            let remaining = s.total_len() - s.computed;
            let len = if remaining == 1 {
                1
            } else {
                let n = remaining.min(budget);
                budget -= n;
                n
            };
            if len == 0 {
                continue;
            }
            let draft = match spec {
                Some(c) if remaining == 1 && s.speculative => draft_for(
                    c,
                    s,
                    &mut self.blocks,
                    self.max_seq_len,
                    reserve,
                ),
                _ => Vec::new(),
            };
            plan.work.push(SeqWork {
                seq: i,
                start: s.computed,
                len,
                sample: len == remaining,
                draft,
            });
        }
        (plan, Vec::new())
    }

    /// Mutable access to the running sequences, for the sampler (their samplers keep state).
    pub fn running_mut(&mut self) -> &mut [Sequence] {
        &mut self.running
    }

    /// After the model step: the planned tokens are computed and `sampled` holds the committed
    /// draws of each plan entry (see [`super::sample::sample_step`]: one, or with a draft the
    /// agreed draft prefix plus one). Appends them, one update per token, ends a run at the
    /// first token that finishes the sequence, and gives back the blocks of rejected drafts.
    pub fn complete_step(&mut self, plan: &StepPlan, sampled: Vec<Vec<Sampled>>) -> Vec<SeqUpdate> {
        let mut planned: Vec<Option<(&SeqWork, Vec<Sampled>)>> =
            (0..self.running.len()).map(|_| None).collect();
        for (w, d) in plan.work.iter().zip(sampled) {
            planned[w.seq] = Some((w, d));
        }
        let mut out = Vec::with_capacity(self.running.len());
        let mut keep = Vec::with_capacity(self.running.len());
        for (mut s, p) in std::mem::take(&mut self.running).into_iter().zip(planned) {
            let Some((work, draw)) = p else {
                // Idle this step (the chunk budget went to older prompts).
                keep.push(s);
                continue;
            };
            debug_assert_eq!(work.start, s.computed);
            s.computed += work.len;
            if draw.is_empty() {
                // Mid-prefill (chunked).
                let keys = s.keys();
                self.blocks.commit(&mut s.blocks, &keys, s.computed);
                keep.push(s);
                continue;
            }
            self.drafted += work.draft.len() as u64;
            if let Some(d) = &self.drafter {
                s.draft_len = d.next_length(work.draft.len(), draw.len() - 1);
            }
            let mut finish = None;
            for (j, sampled) in draw.into_iter().enumerate() {
                if j > 0 {
                    // The previous token was draft[j - 1]: its K/V are in the cache already.
                    s.computed += 1;
                    self.accepted += 1;
                }
                let tok = sampled.token;
                s.output.push(tok);
                if s.timings.first_token.is_none() {
                    s.timings.first_token = Some(s.elapsed());
                }
                finish = if s.stop_token_ids.contains(&tok) {
                    Some(FinishReason::Stop)
                } else if s.output.len() >= s.max_new_tokens || s.total_len() >= self.max_seq_len {
                    Some(FinishReason::Length)
                } else {
                    None
                };
                if finish.is_some() {
                    // Register the finished sequence's full blocks before freeing them, so a
                    // later request with the same prefix finds them.
                    let keys = s.keys();
                    self.blocks.commit(&mut s.blocks, &keys, s.computed);
                    self.blocks.release(&mut s.blocks);
                    if let Some(d) = &mut self.drafter {
                        d.observe(&s.output);
                    }
                }
                out.push(update(&mut s, Some(sampled), finish));
                if finish.is_some() {
                    break;
                }
            }
            if finish.is_none() {
                let keys = s.keys();
                self.blocks.commit(&mut s.blocks, &keys, s.computed);
                // Rejected draft tokens wrote K/V past `computed`; it is overwritten next step,
                // and blocks that held only such tokens go back to the allocator.
                let total = s.total_len();
                self.blocks.shrink(&mut s.blocks, total);
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

/// A draft for decoding sequence `s`, bounded so that every token it could commit stays within
/// the sequence's limits, and only when the cache has blocks for it beyond one per running
/// sequence (so drafting never causes a preemption).
fn draft_for(
    d: &Drafter,
    s: &mut Sequence,
    blocks: &mut BlockManager,
    max_seq_len: usize,
    reserve: usize,
) -> Vec<u32> {
    let total = s.total_len();
    // A step commits at most draft + 1 tokens.
    let room = (s.max_new_tokens.saturating_sub(s.output.len()))
        .min(max_seq_len.saturating_sub(total))
        .saturating_sub(1);
    if room == 0 || s.is_aborted() {
        return Vec::new();
    }
    let mut tokens = s.prompt.ids.clone();
    tokens.extend_from_slice(&s.output);
    let mut draft = d.propose(&tokens, room, s.draft_len);
    while !draft.is_empty() {
        let need = blocks.missing(&s.blocks, total + draft.len());
        if need == 0 || need + reserve <= blocks.num_free() {
            blocks.ensure(&mut s.blocks, total + draft.len());
            break;
        }
        draft.pop();
    }
    draft
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::actors::request::Prompt;
    use crate::engine::position::PositionIds;
    use crate::engine::sampling::{GenerationDefaults, Sampler, SamplingParams};

    fn seq(request: u64, prompt_len: usize) -> Sequence {
        let ids: Vec<u32> = (0..prompt_len as u32).map(|i| 100 + i).collect();
        let pos: Vec<i64> = (0..prompt_len as i64).collect();
        let sampling = SamplingParams::greedy()
            .resolve(&GenerationDefaults::default())
            .unwrap();
        Sequence {
            request,
            choice: 0,
            sampler: Sampler::new(sampling, &ids),
            prompt: Arc::new(Prompt {
                keys: ids.iter().map(|&t| text_key(t)).collect(),
                ids,
                positions: PositionIds {
                    streams: [pos.clone(), pos.clone(), pos],
                    rope_delta: 0,
                },
                features: None,
                visual_tokens: 0,
            }),
            output: Vec::new(),
            blocks: Default::default(),
            computed: 0,
            cached_tokens: 0,
            max_new_tokens: 3,
            draft_len: 0,
            speculative: true,
            stop_token_ids: Arc::new(vec![]),
            cancel: Default::default(),
            stop: Default::default(),
            arrival: Instant::now(),
            timings: Default::default(),
        }
    }

    fn text_key(t: u32) -> u64 {
        crate::engine::paged::prefix::text_token_key(t)
    }

    fn draw(token: u32) -> Vec<Sampled> {
        vec![Sampled {
            token,
            logprob: None,
            top_logprobs: Vec::new(),
        }]
    }

    /// The plan, not the sequences, says what a step computes: a chunk budget splits prompts
    /// oldest first, leaves a sequence idle when it is spent, and only the entries that reach
    /// the end of their sequence sample.
    #[test]
    fn plan_follows_the_chunk_budget_and_completion_applies_it() {
        let cfg = SchedulerConfig {
            max_batch_size: 8,
            max_prefill_batch_size: 8,
            max_prefill_tokens: 1000,
            prefill_chunk: 10,
            speculative: None,
        };
        let mut s = Scheduler::new(cfg, BlockManager::new(64, 4, false), 100);
        s.add(seq(1, 6));
        s.add(seq(2, 7));
        let (plan, pre) = s.schedule();
        assert!(pre.is_empty());
        let w = |seq, start, len, sample| SeqWork {
            seq,
            start,
            len,
            sample,
            draft: vec![],
        };
        assert_eq!(plan.work, vec![w(0, 0, 6, true), w(1, 0, 4, false)]);
        assert_eq!((plan.tokens(), plan.rows()), (10, 1));
        let ups = s.complete_step(&plan, vec![draw(7), vec![]]);
        assert_eq!(ups.len(), 1);
        assert_eq!(
            (s.running()[0].output.clone(), s.running()[1].computed),
            (vec![7], 4)
        );

        // Next step: a decode for the first, the rest of the second's prompt.
        let (plan, _) = s.schedule();
        assert_eq!(plan.work, vec![w(0, 6, 1, true), w(1, 4, 3, true)]);
        s.complete_step(&plan, vec![draw(8), draw(9)]);
        assert_eq!(s.running()[1].output, vec![9]);

        // A budget spent by older prompts leaves a newcomer idle, and idle means untouched.
        s.cfg.prefill_chunk = 5;
        s.add(seq(3, 5));
        s.add(seq(4, 5));
        let (plan, _) = s.schedule();
        assert_eq!(
            plan.work,
            vec![w(0, 7, 1, true), w(1, 7, 1, true), w(2, 0, 5, true)]
        );
        let ups = s.complete_step(&plan, vec![draw(10), draw(11), draw(12)]);
        // The first sequence reached max_new_tokens = 3.
        assert_eq!(ups[0].finish, Some(FinishReason::Length));
        assert_eq!(s.num_running(), 3);
        let idle = &s.running()[2];
        assert_eq!((idle.request, idle.computed, idle.output.len()), (4, 0, 0));
    }
}
