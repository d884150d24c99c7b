//! Logits processing and sampling for one sequence, in Hugging Face's warper order: repetition
//! penalty → presence/frequency penalties (vLLM) → temperature → top-k → top-p → min-p → draw.
//! Candidates are ordered by (logit desc, token id asc), so ties and seeds are reproducible.

use std::collections::HashMap;

use super::params::ResolvedSampling;
use super::rng::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    pub token: u32,
    /// log p(token) under the model's raw distribution, when logprobs were requested.
    pub logprob: Option<f32>,
    /// The most likely tokens of the raw distribution with their log-probabilities.
    pub top_logprobs: Vec<(u32, f32)>,
}

#[derive(Debug, Clone)]
pub struct Sampler {
    cfg: ResolvedSampling,
    rng: Rng,
    /// Tokens of the prompt and the output (repetition penalty).
    seen: std::collections::HashSet<u32>,
    /// Output token counts (presence / frequency penalties).
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(cfg: ResolvedSampling, prompt: &[u32]) -> Self {
        let seen = if cfg.repetition_penalty != 1.0 {
            prompt.iter().copied().collect()
        } else {
            Default::default()
        };
        Sampler {
            rng: Rng::new(cfg.seed),
            cfg,
            seen,
            counts: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ResolvedSampling {
        &self.cfg
    }

    /// Choose the next token from `logits` (modified in place) and record it.
    pub fn sample(&mut self, logits: &mut [f32]) -> Sampled {
        let (logprob_of, top) = match self.cfg.logprobs {
            Some(k) => {
                let lp = log_softmax(logits);
                let top = top_n(&lp, k);
                (Some(lp), top)
            }
            None => (None, Vec::new()),
        };
        self.apply_penalties(logits);
        let token = if self.cfg.greedy {
            argmax(logits) as u32
        } else {
            self.draw(logits)
        };
        self.record(token);
        Sampled {
            token,
            logprob: logprob_of.map(|lp| lp[token as usize]),
            top_logprobs: top,
        }
    }

    /// Note a token generated without `sample` (e.g. replayed after preemption).
    pub fn record(&mut self, token: u32) {
        if self.cfg.repetition_penalty != 1.0 {
            self.seen.insert(token);
        }
        *self.counts.entry(token).or_insert(0) += 1;
    }

    pub fn apply_penalties(&self, logits: &mut [f32]) {
        let rp = self.cfg.repetition_penalty;
        if rp != 1.0 {
            for &t in &self.seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / rp } else { *l * rp };
                }
            }
        }
        let (pp, fp) = (self.cfg.presence_penalty, self.cfg.frequency_penalty);
        if pp != 0.0 || fp != 0.0 {
            for (&t, &c) in &self.counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= pp + fp * c as f32;
                }
            }
        }
    }

    /// The candidate set after temperature, top-k, top-p and min-p: (token, probability),
    /// most likely first, probabilities renormalised.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let t = self.cfg.temperature.max(1e-6);
        let mut idx: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| logits[i as usize] > f32::NEG_INFINITY)
            .collect();
        let order = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = self.cfg.top_k;
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, order);
            idx.truncate(k);
        }
        idx.sort_unstable_by(order);
        if idx.is_empty() {
            return vec![(argmax(logits) as u32, 1.0)];
        }
        let max = logits[idx[0] as usize] / t;
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| (logits[i as usize] / t - max).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        // top-p: the smallest prefix whose mass reaches top_p (at least one token).
        let mut keep = probs.len();
        if self.cfg.top_p < 1.0 {
            let mut cum = 0f32;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= self.cfg.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        // min-p: drop tokens below min_p × the top probability.
        if self.cfg.min_p > 0.0 {
            let floor = self.cfg.min_p * probs[0];
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        let mass: f32 = probs[..keep].iter().sum();
        idx[..keep]
            .iter()
            .zip(&probs[..keep])
            .map(|(&i, &p)| (i, p / mass))
            .collect()
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let c = self.candidates(logits);
        let u = self.rng.next_f64() as f32;
        let mut cum = 0f32;
        for &(t, p) in &c {
            cum += p;
            if u < cum {
                return t;
            }
        }
        c.last().map(|x| x.0).unwrap_or(0)
    }
}

/// Index of the first maximum (as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in xs.iter().enumerate() {
        if v > xs[best] {
            best = i;
        }
    }
    best
}

pub fn log_softmax(xs: &[f32]) -> Vec<f32> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = xs
        .iter()
        .map(|&x| ((x - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    xs.iter().map(|&x| x - lse).collect()
}

fn top_n(lp: &[f32], n: usize) -> Vec<(u32, f32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut idx: Vec<u32> = (0..lp.len() as u32).collect();
    let order = |a: &u32, b: &u32| lp[*b as usize].total_cmp(&lp[*a as usize]).then(a.cmp(b));
    let n = n.min(idx.len());
    idx.select_nth_unstable_by(n - 1, order);
    idx.truncate(n);
    idx.sort_unstable_by(order);
    idx.into_iter().map(|i| (i, lp[i as usize])).collect()
}
