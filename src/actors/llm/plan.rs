//! The step plan: what the scheduler decided each running sequence computes in the next model
//! step. The runner reads it together with the (unchanged) sequences, and the scheduler applies
//! the step's outcome with the same plan; neither writes per-step fields into a sequence for the
//! other to read.

/// One sequence's share of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        self.work.iter().map(|w| w.len).sum()
    }

    /// Logits rows the runner returns: one per entry that samples, in plan order.
    pub fn rows(&self) -> usize {
        self.work.iter().filter(|w| w.sample).count()
    }
}
