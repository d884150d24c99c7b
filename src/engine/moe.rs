//! Sparse MoE block of Qwen3-VL-MoE: fp32 softmax router, top-k, renormalisation, SwiGLU experts
//! run only for the tokens routed to them, no shared expert.

use super::error::Result;
use super::kernels::bf16::Precision;
use super::kernels::linear::Linear;
use super::kernels::ops::silu_mul;
use super::kernels::pool::ThreadPool;
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
    top_k: usize,
    inter: usize,
    hidden: usize,
    norm_topk: bool,
}

impl MoeBlock {
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
            experts.push(Expert {
                gate_up: l.text_linear_from(l.store_from_f32(gu_e), 2 * inter, hidden, None)?,
                down: l.text_linear_from(l.store_from_f32(dn_e), hidden, inter, None)?,
            });
            l.ckpt
                .release_part(&gu_name, e * gu_bytes, (e + 1) * gu_bytes);
            l.ckpt
                .release_part(&dn_name, e * dn_bytes, (e + 1) * dn_bytes);
        }
        Ok(MoeBlock {
            router,
            experts,
            top_k,
            inter,
            hidden,
            norm_topk,
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
            experts.push(Expert {
                gate_up: l.stacked_text_linear(&[&gate, &up], inter, hidden)?,
                down: l.text_linear(&format!("{p}.down_proj"), hidden, inter, false)?,
            });
        }
        Ok(MoeBlock {
            router,
            experts,
            top_k,
            inter,
            hidden,
            norm_topk,
        })
    }

    /// x: [s, hidden] (already normalised) → [s, hidden].
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        s: usize,
        p: Precision,
    ) -> Result<Vec<f32>> {
        let (h, e_count) = (self.hidden, self.experts.len());
        let logits = self.router.apply(pool, x, s)?;
        // Per expert: (token, routing weight).
        let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); e_count];
        for t in 0..s {
            let z = &logits[t * e_count..(t + 1) * e_count];
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut probs: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|v| *v /= sum);
            let mut order: Vec<usize> = (0..e_count).collect();
            // Stable sort: ties keep the lower expert index first.
            order.sort_by(|&a, &b| {
                probs[b]
                    .partial_cmp(&probs[a])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let chosen = &order[..self.top_k];
            let total: f32 = chosen.iter().map(|&e| probs[e]).sum();
            for &e in chosen {
                let w = if self.norm_topk {
                    probs[e] / total
                } else {
                    probs[e]
                };
                routed[e].push((t, p.round(w)));
            }
        }
        let mut acc = vec![0f32; s * h];
        let inter = self.inter;
        for (e, tokens) in routed.iter().enumerate() {
            if tokens.is_empty() {
                continue;
            }
            let n = tokens.len();
            let mut xs = Vec::with_capacity(n * h);
            for &(t, _) in tokens {
                xs.extend_from_slice(&x[t * h..(t + 1) * h]);
            }
            let gu = self.experts[e].gate_up.apply(pool, &xs, n)?;
            let mut act = vec![0f32; n * inter];
            for r in 0..n {
                let row = &gu[r * 2 * inter..(r + 1) * 2 * inter];
                let dst = &mut act[r * inter..(r + 1) * inter];
                dst.copy_from_slice(&row[..inter]);
                silu_mul(dst, &row[inter..], p);
            }
            let y = self.experts[e].down.apply(pool, &act, n)?;
            for (r, &(t, w)) in tokens.iter().enumerate() {
                for (a, v) in acc[t * h..(t + 1) * h]
                    .iter_mut()
                    .zip(&y[r * h..(r + 1) * h])
                {
                    *a += p.round(v * w);
                }
            }
        }
        // Contributions are summed in f32 and rounded once, like the reference's fused reduction.
        p.round_slice(&mut acc);
        Ok(acc)
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
