//! The step plan: what the scheduler decided each running sequence computes in the next model
//! step. The runner reads it together with the (unchanged) sequences, and the scheduler applies
//! the step's outcome with the same plan; neither writes per-step fields into a sequence for the
//! other to read.

/// One sequence's share of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqWork {
    /// Index into the scheduler's running sequences.
    pub seq: usize,
    /// Cache index of the first token computed (the sequence's `computed` when planned).
    pub start: usize,
    /// Tokens computed: one for a decode, a prompt or a chunk of it for a prefill.
    pub len: usize,
    /// The step computes the sequence's last known token: its logits row is returned and a
    /// token is sampled from it. False for a prefill chunk that stops short of the end.
    pub sample: bool,
    /// Guessed next tokens computed after the known ones (speculative decoding; empty
    /// otherwise). Each gets a logits row, and the sampler keeps the prefix it agrees with.
    pub draft: Vec<u32>,
}

/// Everything one model step computes, in running-sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepPlan {
    pub work: Vec<SeqWork>,
}

impl StepPlan {
    /// Nothing to compute (a step that only preempted, or an idle engine).
    pub fn is_empty(&self) -> bool {
        self.work.is_empty()
    }

    /// Tokens computed by the step, all sequences together.
    pub fn tokens(&self) -> usize {
        self.work.iter().map(|w| w.len + w.draft.len()).sum()
    }

    /// Logits rows the runner returns: 1 + draft length per entry that samples, in plan order.
    pub fn rows(&self) -> usize {
        self.work
            .iter()
            .filter(|w| w.sample)
            .map(|w| 1 + w.draft.len())
            .sum()
    }

}
