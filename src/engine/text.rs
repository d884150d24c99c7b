//! The text decoder: RMSNorm, GQA attention with per-head q/k norms and interleaved M-RoPE,
//! SwiGLU or MoE MLP, DeepStack injection, final norm and LM head.

use super::config::Qwen3VlConfig;
use super::embedding::Embedding;
use super::error::{EngineError, Result};
use super::kernels::attention::paged::{paged_attention, KvRows, PagedSeq};
use super::kernels::attention::AttnShape;
use super::kernels::bf16::Precision;
use super::kernels::linear::Linear;
use super::kernels::ops::{
    act_mul, add_inplace, par_row_blocks, residual_add, rms_norm, sized, zeroed, Activation,
};
use super::kernels::runtime::pool::ThreadPool;
use super::kv_cache::KvCache;
use super::loader::Loader;
use super::moe::MoeBlock;
use super::paged::KvBlocks;
use super::rope::{apply_rope, RopeRounding, TextRope};
use super::weights::Checkpoint;
use std::sync::Arc;

enum Mlp {
    Dense {
        gate: Linear,
        up: Linear,
        down: Linear,
    },
    Moe(MoeBlock),
}

struct Layer {
    input_norm: Vec<f32>,
    post_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    mlp: Mlp,
}

/// Activations of one decoder layer, reused across layers and steps (one set per thread).
#[derive(Default)]
struct LayerBuffers {
    n: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    y: Vec<f32>,
}

/// Steps of at most this many rows keep their layer buffers for the next step.
const KEEP_BUFFER_ROWS: usize = 64;

thread_local! {
    static LAYER_BUFFERS: std::cell::RefCell<LayerBuffers> = std::cell::RefCell::default();
}

/// DeepStack features for the visual rows of one forward pass.
pub struct Deepstack<'a> {
    /// Row indices (inside this pass) that hold visual tokens, in sequence order.
    pub rows: &'a [usize],
    /// One [rows.len(), hidden] buffer per level, added after decoder layer `level`.
    pub levels: &'a [Vec<f32>],
}

pub struct TextDecoder {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    lm_head: Linear,
    rope: TextRope,
    /// `text_config.hidden_act` of every MLP (dense and experts).
    act: Activation,
    precision: Precision,
    pub hidden: usize,
    pub vocab: usize,
    n_heads: usize,
    n_kv: usize,
    head_dim: usize,
    eps: f32,
}

impl TextDecoder {
    pub fn load(l: &Loader, cfg: &Qwen3VlConfig, ckpt: Arc<Checkpoint>) -> Result<Self> {
        let t = &cfg.text_config;
        let (h, hd) = (t.hidden_size, cfg.head_dim());
        let (nh, nkv) = (t.num_attention_heads, t.num_key_value_heads);
        let pre = "model.language_model";
        let embed_name = format!("{pre}.embed_tokens.weight");
        let embed = Embedding::new(ckpt, &embed_name, t.vocab_size, h, l.precision)?;
        let act = t.activation().ok_or_else(|| EngineError::Config {
            path: "config.json".into(),
            msg: format!("text_config.hidden_act `{}` is not supported", t.hidden_act),
        })?;
        let mut layers = Vec::with_capacity(t.num_hidden_layers);
        for i in 0..t.num_hidden_layers {
            let p = format!("{pre}.layers.{i}");
            let mlp = if cfg.is_moe_layer(i) {
                Mlp::Moe(
                    MoeBlock::load(
                        l,
                        &format!("{p}.mlp"),
                        h,
                        t.num_experts.unwrap_or(0),
                        t.num_experts_per_tok.unwrap_or(0),
                        t.moe_intermediate_size.unwrap_or(0),
                        // transformers 4.57 always renormalises the top-k weights, whatever
                        // `norm_topk_prob` says (its MoE block leaves the field unread).
                        true,
                    )?
                    .with_activation(act),
                )
            } else {
                let im = t.intermediate_size;
                Mlp::Dense {
                    gate: l.text_linear(&format!("{p}.mlp.gate_proj"), im, h, false)?,
                    up: l.text_linear(&format!("{p}.mlp.up_proj"), im, h, false)?,
                    down: l.text_linear(&format!("{p}.mlp.down_proj"), h, im, false)?,
                }
            };
            layers.push(Layer {
                input_norm: l.vector(&format!("{p}.input_layernorm.weight"), &[h])?,
                post_norm: l.vector(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                q: l.text_linear(
                    &format!("{p}.self_attn.q_proj"),
                    nh * hd,
                    h,
                    t.attention_bias,
                )?,
                k: l.text_linear(
                    &format!("{p}.self_attn.k_proj"),
                    nkv * hd,
                    h,
                    t.attention_bias,
                )?,
                v: l.text_linear(
                    &format!("{p}.self_attn.v_proj"),
                    nkv * hd,
                    h,
                    t.attention_bias,
                )?,
                o: l.text_linear(
                    &format!("{p}.self_attn.o_proj"),
                    h,
                    nh * hd,
                    t.attention_bias,
                )?,
                q_norm: l.vector(&format!("{p}.self_attn.q_norm.weight"), &[hd])?,
                k_norm: l.vector(&format!("{p}.self_attn.k_norm.weight"), &[hd])?,
                mlp,
            });
        }
        // A quantized checkpoint may carry an int8 LM head even for a tied model (our
        // `qwen3vl quantize` writes one); it takes precedence over re-using the embedding. A
        // float `lm_head.weight` in a tied checkpoint is ignored, as transformers ties over it.
        let own_head = l.ckpt.contains("lm_head.weight") && l.is_quantized("lm_head")?;
        let lm_head = if cfg.tie_word_embeddings(l.ckpt.contains("lm_head.weight")) && !own_head {
            // The embedding matrix read as a (float) linear.
            let prefix = embed_name.strip_suffix(".weight").unwrap_or(&embed_name);
            l.text_linear(prefix, t.vocab_size, h, false)?
        } else {
            l.text_linear("lm_head", t.vocab_size, h, false)?
        };
        Ok(TextDecoder {
            embed,
            layers,
            norm: l.vector(&format!("{pre}.norm.weight"), &[h])?,
            lm_head,
            rope: TextRope::new(
                hd,
                t.rope_theta,
                &cfg.mrope_section(),
                &cfg.rope_kind().map_err(|e| EngineError::Config {
                    path: "config.json".into(),
                    msg: e,
                })?,
            ),
            act,
            precision: l.precision,
            hidden: h,
            vocab: t.vocab_size,
            n_heads: nh,
            n_kv: nkv,
            head_dim: hd,
            eps: t.rms_norm_eps as f32,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv * self.head_dim
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len(), self.kv_dim())
    }

    /// Embedding rows for token ids.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(ids.len() * self.hidden);
        self.embed.lookup(ids, &mut out)?;
        Ok(out)
    }

    /// Run the decoder over `x` ([s, hidden] embeddings) at the given positions, appending to the
    /// contiguous cache. Returns the final-normed hidden states [s, hidden].
    pub fn forward(
        &self,
        pool: &ThreadPool,
        cache: &mut KvCache,
        x: Vec<f32>,
        pos: [&[i64]; 3],
        deepstack: Option<&Deepstack>,
    ) -> Result<Vec<f32>> {
        let s = x.len() / self.hidden;
        let past = cache.len();
        // The contiguous cache is one block as large as the sequence.
        let whole = [0u32];
        let x = self.run_layers(pool, x, pos, deepstack, &mut |li, shape, q, k, v, attn| {
            let (ks, vs) = cache.append(li, k, v);
            let seq = PagedSeq {
                q0: 0,
                len: s,
                start: past,
                blocks: &whole,
            };
            let (kr, vr) = (KvRows::F32(ks), KvRows::F32(vs));
            let scale = (shape.head_dim as f32).powf(-0.5);
            paged_attention(
                pool,
                shape,
                q,
                kr,
                vr,
                usize::MAX >> 8,
                &[seq],
                scale,
                self.precision,
                attn,
            );
        })?;
        cache.advance(s);
        Ok(x)
    }

    /// Run the decoder over the new tokens of several sequences at once, stacked row-wise in
    /// `x` (sequence i owns rows `seqs[i].q0 .. q0 + len`). Every linear sees all rows (weights are
    /// streamed once per step); attention runs per sequence over its cache blocks. K/V of the new
    /// tokens are written to the blocks at cache indices start..start+len.
    pub fn forward_paged(
        &self,
        pool: &ThreadPool,
        kv: &mut KvBlocks,
        x: Vec<f32>,
        pos: [&[i64]; 3],
        seqs: &[PagedSeq],
        deepstack: Option<&Deepstack>,
    ) -> Result<Vec<f32>> {
        let rows = x.len() / self.hidden;
        let kvd = self.kv_dim();
        let bs = kv.block_size;
        for s in seqs {
            if s.q0 + s.len > rows || s.blocks.len() * bs < s.start + s.len {
                return Err(EngineError::input(
                    "paged step: sequence rows or block table out of range",
                ));
            }
            if s.blocks.iter().any(|&b| b as usize >= kv.n_blocks) {
                return Err(EngineError::input("paged step: block id out of range"));
            }
        }
        self.run_layers(pool, x, pos, deepstack, &mut |li, shape, q, k, v, attn| {
            for s in seqs {
                for i in 0..s.len {
                    let t = s.start + i;
                    let slot = s.blocks[t / bs] as usize * bs + t % bs;
                    let r = s.q0 + i;
                    kv.write(
                        li,
                        slot,
                        &k[r * kvd..(r + 1) * kvd],
                        &v[r * kvd..(r + 1) * kvd],
                    );
                }
            }
            let (kr, vr) = kv.layer(li);
            let scale = (shape.head_dim as f32).powf(-0.5);
            paged_attention(
                pool,
                shape,
                q,
                kr,
                vr,
                bs,
                seqs,
                scale,
                self.precision,
                attn,
            );
        })
    }

    /// The decoder layers with attention left to `attend(layer, shape, q, k, v, out)`, which
    /// stores the new K/V rows and writes the attention output.
    #[allow(clippy::type_complexity)]
    fn run_layers(
        &self,
        pool: &ThreadPool,
        mut x: Vec<f32>,
        pos: [&[i64]; 3],
        deepstack: Option<&Deepstack>,
        attend: &mut dyn FnMut(usize, AttnShape, &[f32], &[f32], &[f32], &mut [f32]),
    ) -> Result<Vec<f32>> {
        let p = self.precision;
        let (h, hd, nh, nkv) = (self.hidden, self.head_dim, self.n_heads, self.n_kv);
        let s = x.len() / h;
        if pos.iter().any(|st| st.len() != s) {
            return Err(EngineError::input(
                "position ids do not match the sequence length",
            ));
        }
        let (cos, sin) = self.rope.tables(pos, p);
        let shape = AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
        };
        // Per-layer activations live in buffers reused across layers and steps: a decode step
        // runs hundreds of linears and should not allocate for each.
        let mut buf = LAYER_BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let result = self.layers_with(
            pool, &mut x, s, shape, &cos, &sin, deepstack, attend, &mut buf,
        );
        // Keep only decode-sized buffers: a long prefill's would pin hundreds of MB.
        if s <= KEEP_BUFFER_ROWS {
            LAYER_BUFFERS.with(|b| *b.borrow_mut() = buf);
        }
        result?;
        rms_norm(pool, &mut x, h, &self.norm, self.eps, p);
        Ok(x)
    }

    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn layers_with(
        &self,
        pool: &ThreadPool,
        x: &mut [f32],
        s: usize,
        shape: AttnShape,
        cos: &[f32],
        sin: &[f32],
        deepstack: Option<&Deepstack>,
        attend: &mut dyn FnMut(usize, AttnShape, &[f32], &[f32], &[f32], &mut [f32]),
        buf: &mut LayerBuffers,
    ) -> Result<()> {
        let p = self.precision;
        let (h, hd, nh, nkv) = (self.hidden, self.head_dim, self.n_heads, self.n_kv);
        let LayerBuffers {
            n,
            q,
            k,
            v,
            attn,
            g,
            u,
            y,
        } = buf;
        zeroed(attn, s * nh * hd);
        for (li, layer) in self.layers.iter().enumerate() {
            n.clear();
            n.extend_from_slice(x);
            rms_norm(pool, n, h, &layer.input_norm, self.eps, p);
            sized(q, s * layer.q.n);
            sized(k, s * layer.k.n);
            sized(v, s * layer.v.n);
            Linear::forward_shared(
                pool,
                &[&layer.q, &layer.k, &layer.v],
                n,
                s,
                &mut [&mut q[..], &mut k[..], &mut v[..]],
            )?;
            rms_norm(pool, q, hd, &layer.q_norm, self.eps, p);
            rms_norm(pool, k, hd, &layer.k_norm, self.eps, p);
            par_row_blocks(
                pool,
                s,
                [&mut q[..], &mut k[..]],
                [nh * hd, nkv * hd],
                &|r0, r1, [q, k]: [&mut [f32]; 2]| {
                    let (c, sn) = (&cos[r0 * hd..], &sin[r0 * hd..]);
                    apply_rope(q, r1 - r0, nh, hd, c, sn, p, RopeRounding::EachOp);
                    apply_rope(k, r1 - r0, nkv, hd, c, sn, p, RopeRounding::EachOp);
                },
            );
            attend(li, shape, q, k, v, attn);
            layer.o.forward(pool, attn, s, n)?;
            residual_add(pool, x, n, h, p);
            n.clear();
            n.extend_from_slice(x);
            rms_norm(pool, n, h, &layer.post_norm, self.eps, p);
            match &layer.mlp {
                Mlp::Dense { gate, up, down } => {
                    sized(g, s * gate.n);
                    sized(u, s * up.n);
                    Linear::forward_shared(pool, &[gate, up], n, s, &mut [&mut g[..], &mut u[..]])?;
                    // Element-wise, so any split gives the same bits; both cores.
                    par_row_blocks(
                        pool,
                        s,
                        [&mut g[..], &mut u[..]],
                        [gate.n, up.n],
                        &|_, _, [g, u]: [&mut [f32]; 2]| act_mul(g, u, self.act, p),
                    );
                    sized(y, s * h);
                    down.forward(pool, g, s, y)?;
                }
                Mlp::Moe(moe) => moe.forward(pool, n, s, p, y)?,
            };
            residual_add(pool, x, y, h, p);
            if let Some(ds) = deepstack {
                if let Some(level) = ds.levels.get(li) {
                    for (i, &row) in ds.rows.iter().enumerate() {
                        add_inplace(
                            &mut x[row * h..(row + 1) * h],
                            &level[i * h..(i + 1) * h],
                            p,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Logits [rows, vocab] (f32) for hidden rows [rows, hidden].
    pub fn logits(&self, pool: &ThreadPool, hidden: &[f32]) -> Result<Vec<f32>> {
        self.lm_head.apply(pool, hidden, hidden.len() / self.hidden)
    }

    /// How the decoder layers' linears run (the LM head may be sliced differently).
    pub fn backend_name(&self) -> String {
        self.layers
            .first()
            .map_or_else(|| self.lm_head.backend_name(), |l| l.o.backend_name())
    }
}
