//! Sparse MoE block of Qwen3-VL-MoE: fp32 softmax router, top-k, renormalisation, SwiGLU experts
//! run only for the tokens routed to them, no shared expert.

use std::cell::RefCell;
use std::sync::Mutex;

use super::error::{EngineError, Result};
use super::kernels::bf16::Precision;
use super::kernels::linear::Linear;
use super::kernels::ops::{act_mul, zeroed, Activation};
use super::kernels::runtime::pool::ThreadPool;
use super::loader::Loader;

struct Expert {
    /// [2·I, H]: rows 0..I are the gate, I..2I the up projection.
    gate_up: Linear,
    /// [H, I].
    down: Linear,
}

pub struct MoeBlock {
    router: Linear,
    experts: Vec<Expert>,
    /// Every expert GEMM runs on the engine's pool (none on oneDNN's OpenMP threads), so whole
    /// experts may run on different cores at once.
    experts_on_pool: bool,
    top_k: usize,
    inter: usize,
    hidden: usize,
    norm_topk: bool,
    /// The experts' GLU activation (`text_config.hidden_act`; SiLU in every released model).
    act: Activation,
}

impl MoeBlock {
    /// The experts apply `act` instead of SiLU.
    pub fn with_activation(mut self, act: Activation) -> Self {
        self.act = act;
        self
    }

    pub fn load(
        l: &Loader,
        prefix: &str,
        hidden: usize,
        n_experts: usize,
        top_k: usize,
        inter: usize,
        norm_topk: bool,
    ) -> Result<Self> {
        let router = l.linear(&format!("{prefix}.gate"), n_experts, hidden, false)?;
        if !l.ckpt.contains(&format!("{prefix}.experts.gate_up_proj")) {
            return Self::load_per_expert(
                l, prefix, router, hidden, n_experts, top_k, inter, norm_topk,
            );
        }
        // Fused checkpoint tensors are stored (expert, in, out); our linears want (out, in).
        // One expert at a time is widened and transposed (a whole layer's experts in f32 would be
        // 2.4 GB for 30B-A3B), and its file pages are released once it is built.
        let (gu_name, dn_name) = (
            format!("{prefix}.experts.gate_up_proj"),
            format!("{prefix}.experts.down_proj"),
        );
        let gu = l
            .ckpt
            .get_shaped(&gu_name, &[n_experts, hidden, 2 * inter])?;
        let dn = l.ckpt.get_shaped(&dn_name, &[n_experts, inter, hidden])?;
        let (gu_bytes, dn_bytes) = (
            hidden * 2 * inter * gu.elem_size(),
            inter * hidden * dn.elem_size(),
        );
        let mut experts = Vec::with_capacity(n_experts);
        let mut rows = Vec::new();
        for e in 0..n_experts {
            rows.clear();
            gu.rows_f32(e * hidden, hidden, 2 * inter, &mut rows);
            let gu_e = transpose(&rows, hidden, 2 * inter);
            rows.clear();
            dn.rows_f32(e * inter, inter, hidden, &mut rows);
            let dn_e = transpose(&rows, inter, hidden);
            experts.push((
                l.text_linear_from(l.store_from_f32(gu_e), 2 * inter, hidden, None)?,
                l.text_linear_from(l.store_from_f32(dn_e), hidden, inter, None)?,
            ));
            l.ckpt
                .release_part(&gu_name, e * gu_bytes, (e + 1) * gu_bytes);
            l.ckpt
                .release_part(&dn_name, e * dn_bytes, (e + 1) * dn_bytes);
        }
        Self::new(router, experts, top_k, inter, hidden, norm_topk)
    }

    /// A block from built linears: the router [experts, hidden] and per expert the stacked
    /// gate/up [2·inter, hidden] and the down projection [hidden, inter].
    pub fn new(
        router: Linear,
        experts: Vec<(Linear, Linear)>,
        top_k: usize,
        inter: usize,
        hidden: usize,
        norm_topk: bool,
    ) -> Result<Self> {
        let bad = |what: String| Err(EngineError::Kernel(format!("MoE block: {what}")));
        if router.n != experts.len() || router.k != hidden {
            return bad(format!(
                "router {}×{} for {} experts of width {hidden}",
                router.n,
                router.k,
                experts.len()
            ));
        }
        if top_k == 0 || top_k > experts.len() {
            return bad(format!("top-{top_k} of {} experts", experts.len()));
        }
        for (e, (gu, dn)) in experts.iter().enumerate() {
            if (gu.n, gu.k, dn.n, dn.k) != (2 * inter, hidden, hidden, inter) {
                return bad(format!(
                    "expert {e}: gate/up {}×{}, down {}×{} (want {}×{hidden}, {hidden}×{inter})",
                    gu.n,
                    gu.k,
                    dn.n,
                    dn.k,
                    2 * inter
                ));
            }
        }
        let experts: Vec<Expert> = experts
            .into_iter()
            .map(|(gate_up, down)| Expert { gate_up, down })
            .collect();
        Ok(MoeBlock {
            router,
            experts_on_pool: experts.iter().all(Expert::runs_on_pool),
            experts,
            top_k,
            inter,
            hidden,
            norm_topk,
            act: Activation::Silu,
        })
    }

    /// msModelSlim layout: per-expert 2-D `experts.{e}.{gate,up,down}_proj` in [out, in] order.
    #[allow(clippy::too_many_arguments)]
    fn load_per_expert(
        l: &Loader,
        prefix: &str,
        router: Linear,
        hidden: usize,
        n_experts: usize,
        top_k: usize,
        inter: usize,
        norm_topk: bool,
    ) -> Result<Self> {
        let mut experts = Vec::with_capacity(n_experts);
        for e in 0..n_experts {
            let p = format!("{prefix}.experts.{e}");
            let (gate, up) = (format!("{p}.gate_proj"), format!("{p}.up_proj"));
            experts.push((
                l.stacked_text_linear(&[&gate, &up], inter, hidden)?,
                l.text_linear(&format!("{p}.down_proj"), hidden, inter, false)?,
            ));
        }
        Self::new(router, experts, top_k, inter, hidden, norm_topk)
    }

    /// x: [s, hidden] (already normalised) → y: [s, hidden] (resized), scheduled by
    /// [`ExpertSchedule::Auto`].
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        s: usize,
        p: Precision,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        self.forward_scheduled(pool, x, s, p, ExpertSchedule::Auto, y)
    }

    /// [`Self::forward`] with the experts spread over the cores as `schedule` says. Every
    /// schedule gives the same bits: an expert's GEMMs compute each output the same way on one
    /// core as split across several, and the contributions are summed in expert order.
    pub fn forward_scheduled(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        s: usize,
        p: Precision,
        schedule: ExpertSchedule,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let h = self.hidden;
        if x.len() < s * h {
            return Err(EngineError::Kernel(format!(
                "MoE block: input of {} values for {s} rows of {h}",
                x.len()
            )));
        }
        ROUTING.with(|cell| {
            let mut r = cell.borrow_mut();
            let result = self.forward_routed(pool, &x[..s * h], s, p, schedule, &mut r, y);
            // Steps of many rows do not keep their buffers (a long prefill's routed rows would
            // otherwise stay allocated).
            if s > KEEP_BUFFER_ROWS {
                *r = Routing::default();
            }
            result
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_routed(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        s: usize,
        p: Precision,
        schedule: ExpertSchedule,
        r: &mut Routing,
        y: &mut Vec<f32>,
    ) -> Result<()> {
        let h = self.hidden;
        self.route(pool, x, s, p, r)?;
        let e_count = self.experts.len();
        if r.outputs.len() < e_count {
            r.outputs.resize_with(e_count, Default::default);
        }
        // Busiest experts first: with tasks claimed in this order the cores finish together.
        r.active.clear();
        r.active
            .extend((0..e_count).filter(|&e| r.starts[e + 1] > r.starts[e]));
        let starts = &r.starts;
        r.active
            .sort_by_key(|&e| std::cmp::Reverse(starts[e + 1] - starts[e]));
        let routed = r.starts[e_count];
        let busiest = r.active.first().map_or(0, |&e| starts[e + 1] - starts[e]);
        let threads = pool.threads();
        let by_expert = match schedule {
            ExpertSchedule::ByExpert => true,
            ExpertSchedule::WithinExpert => false,
            // Whole experts per core pay one pool region per layer instead of two per expert,
            // where enough experts are busy to keep every core fed (decode: top-k experts of
            // one row each) and no single expert holds more than a core's share of the rows.
            ExpertSchedule::Auto => {
                threads > 1
                    && r.active.len() >= 2 * threads
                    && busiest * threads <= routed
                    && self.experts_on_pool
            }
        };
        let failure: Mutex<Option<EngineError>> = Mutex::new(None);
        let (rows, outputs) = (&r.rows, &r.outputs);
        let run = |e: usize| {
            let mine = &rows[starts[e]..starts[e + 1]];
            let mut out = outputs[e].lock().unwrap_or_else(|p| p.into_inner());
            if let Err(err) =
                self.experts[e].run(pool, x, h, (self.inter, self.act), mine, p, &mut out)
            {
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
            }
        };
        if by_expert {
            // Each task's GEMMs open nested pool regions, which run inline on its core.
            pool.run(r.active.len(), &|i| run(r.active[i]));
        } else {
            r.active.iter().for_each(|&e| run(e));
        }
        if let Some(err) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(err);
        }
        // Contributions are added in expert order whatever the schedule, then rounded once, like
        // the reference's fused reduction.
        zeroed(y, s * h);
        for e in 0..e_count {
            let mine = &r.rows[r.starts[e]..r.starts[e + 1]];
            if mine.is_empty() {
                continue;
            }
            let out = r.outputs[e].lock().unwrap_or_else(|p| p.into_inner());
            for (&(t, w), row) in mine.iter().zip(out.chunks_exact(h)) {
                for (a, v) in y[t * h..(t + 1) * h].iter_mut().zip(row) {
                    *a += p.round(v * w);
                }
            }
        }
        p.round_slice(y);
        Ok(())
    }

    /// fp32 softmax over the router logits, top-k (ties: lower expert first), renormalised
    /// weights rounded to the model precision; the routed rows grouped by expert in token order.
    fn route(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        s: usize,
        p: Precision,
        r: &mut Routing,
    ) -> Result<()> {
        let e_count = self.experts.len();
        zeroed(&mut r.logits, s * e_count);
        self.router.forward(pool, x, s, &mut r.logits)?;
        r.chosen.clear();
        r.starts.clear();
        r.starts.resize(e_count + 1, 0);
        for z in r.logits.chunks_exact(e_count) {
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            r.probs.clear();
            r.probs.extend(z.iter().map(|v| (v - max).exp()));
            let sum: f32 = r.probs.iter().sum();
            r.probs.iter_mut().for_each(|v| *v /= sum);
            r.order.clear();
            r.order.extend(0..e_count);
            let probs = &r.probs;
            // Stable sort: ties keep the lower expert index first.
            r.order.sort_by(|&a, &b| {
                probs[b]
                    .partial_cmp(&probs[a])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let chosen = &r.order[..self.top_k];
            let total: f32 = chosen.iter().map(|&e| probs[e]).sum();
            for &e in chosen {
                let w = if self.norm_topk {
                    probs[e] / total
                } else {
                    probs[e]
                };
                r.chosen.push((e, p.round(w)));
                r.starts[e + 1] += 1;
            }
        }
        for e in 0..e_count {
            r.starts[e + 1] += r.starts[e];
        }
        r.fill.clear();
        r.fill.extend_from_slice(&r.starts[..e_count]);
        r.rows.clear();
        r.rows.resize(r.chosen.len(), (0, 0.0));
        for (i, &(e, w)) in r.chosen.iter().enumerate() {
            r.rows[r.fill[e]] = (i / self.top_k, w);
            r.fill[e] += 1;
        }
        Ok(())
    }
}

/// How the routed experts share the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertSchedule {
    /// `ByExpert` where enough experts are busy to balance the cores and every expert GEMM runs
    /// on the engine's pool, otherwise `WithinExpert`.
    Auto,
    /// Whole experts on different cores, each expert's GEMMs on one core.
    ByExpert,
    /// One expert after another, each GEMM split across all cores.
    WithinExpert,
}

/// Steps of at most this many rows keep their routing buffers for the next step.
const KEEP_BUFFER_ROWS: usize = 64;

/// One step's routing and expert outputs, reused across layers and steps (one set per thread).
#[derive(Default)]
struct Routing {
    logits: Vec<f32>,
    probs: Vec<f32>,
    order: Vec<usize>,
    /// (expert, weight) per token and choice, token-major.
    chosen: Vec<(usize, f32)>,
    /// Expert e's routed rows are `rows[starts[e]..starts[e + 1]]`.
    starts: Vec<usize>,
    fill: Vec<usize>,
    /// (token, weight) per routed row, grouped by expert, tokens ascending.
    rows: Vec<(usize, f32)>,
    /// Experts with rows, busiest first.
    active: Vec<usize>,
    /// [rows, hidden] per expert; each task locks its own.
    outputs: Vec<Mutex<Vec<f32>>>,
}

/// One expert's activations on the thread that runs it.
#[derive(Default)]
struct ExpertScratch {
    xs: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
}

thread_local! {
    static ROUTING: RefCell<Routing> = RefCell::default();
    static EXPERT_SCRATCH: RefCell<ExpertScratch> = RefCell::default();
}

impl Expert {
    fn runs_on_pool(&self) -> bool {
        self.gate_up.runs_on_pool() && self.down.runs_on_pool()
    }

    /// SwiGLU for the tokens `rows` of `x` (rows of `h`) into `out` ([rows, h], resized).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        h: usize,
        (inter, act_fn): (usize, Activation),
        rows: &[(usize, f32)],
        p: Precision,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let n = rows.len();
        EXPERT_SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let ExpertScratch { xs, gate_up, act } = &mut *scratch;
            xs.clear();
            for &(t, _) in rows {
                xs.extend_from_slice(&x[t * h..(t + 1) * h]);
            }
            zeroed(gate_up, n * 2 * inter);
            self.gate_up.forward(pool, xs, n, gate_up)?;
            zeroed(act, n * inter);
            for (dst, row) in act
                .chunks_exact_mut(inter)
                .zip(gate_up.chunks_exact(2 * inter))
            {
                dst.copy_from_slice(&row[..inter]);
                act_mul(dst, &row[inter..], act_fn, p);
            }
            zeroed(out, n * h);
            let result = self.down.forward(pool, act, n, out);
            if n > KEEP_BUFFER_ROWS {
                *scratch = ExpertScratch::default();
            }
            result
        })
    }
}

/// [rows, cols] → [cols, rows].
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = m[r * cols + c];
        }
    }
    out
}
