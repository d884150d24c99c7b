//! The vision tower: patch embedding, interpolated learned positions, 2-D RoPE blocks with
//! per-slice bidirectional attention, the patch merger and the DeepStack mergers.

use super::config::VisionConfig;
use super::error::{EngineError, Result};
use super::kernels::attention::{attention, AttnShape, Mask, Segment};
use super::kernels::bf16::Precision;
use super::kernels::linear::Linear;
use super::kernels::ops::{
    activate, add_inplace, add_layer_norm, layer_norm, layer_norm_into, par_row_blocks,
    residual_add, Activation,
};
use super::kernels::runtime::pool::ThreadPool;
use super::loader::Loader;
use super::rope::{apply_rope, vision_tables, RopeRounding};

const LN_EPS: f32 = 1e-6;

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Norm {
    fn load(l: &Loader, prefix: &str, dim: usize) -> Result<Self> {
        Ok(Norm {
            w: l.vector(&format!("{prefix}.weight"), &[dim])?,
            b: l.vector(&format!("{prefix}.bias"), &[dim])?,
        })
    }
    fn apply(&self, pool: &ThreadPool, x: &mut [f32], p: Precision) {
        layer_norm(pool, x, self.w.len(), &self.w, &self.b, LN_EPS, p);
    }

    /// `out = norm(x)`.
    fn apply_into(&self, pool: &ThreadPool, x: &[f32], out: &mut [f32], p: Precision) {
        layer_norm_into(pool, x, out, self.w.len(), &self.w, &self.b, LN_EPS, p);
    }

    /// The residual add before this norm, fused with it: `x += y`, then `y = norm(x)`.
    fn add_then_apply(&self, pool: &ThreadPool, x: &mut [f32], y: &mut [f32], p: Precision) {
        add_layer_norm(pool, x, y, self.w.len(), &self.w, &self.b, LN_EPS, p);
    }
}

struct Block {
    norm1: Norm,
    qkv: Linear,
    proj: Linear,
    norm2: Norm,
    fc1: Linear,
    fc2: Linear,
}

/// Patch merger. The main merger normalises each patch before the 2×2 concat; the DeepStack
/// mergers normalise after it ("post-shuffle").
struct Merger {
    norm: Norm,
    fc1: Linear,
    fc2: Linear,
}

impl Merger {
    fn load(
        l: &Loader,
        prefix: &str,
        hv: usize,
        unit: usize,
        out: usize,
        postshuffle: bool,
    ) -> Result<Self> {
        let wide = hv * unit;
        Ok(Merger {
            norm: Norm::load(
                l,
                &format!("{prefix}.norm"),
                if postshuffle { wide } else { hv },
            )?,
            fc1: l.linear(&format!("{prefix}.linear_fc1"), wide, wide, true)?,
            fc2: l.linear(&format!("{prefix}.linear_fc2"), out, wide, true)?,
        })
    }

    fn forward(&self, pool: &ThreadPool, x: &[f32], p: Precision) -> Result<Vec<f32>> {
        let mut h = x.to_vec();
        // Rows of hv values and rows of 4·hv values are the same buffer: only the norm width differs.
        self.norm.apply(pool, &mut h, p);
        let rows = h.len() / self.fc1.k;
        let mut a = self.fc1.apply(pool, &h, rows)?;
        activate(pool, &mut a, Activation::GeluErf, p);
        self.fc2.apply(pool, &a, rows)
    }
}

pub struct VisionTower {
    cfg: VisionConfig,
    precision: Precision,
    patch_embed: Linear,
    pos_embed: Vec<f32>,
    blocks: Vec<Block>,
    merger: Merger,
    deepstack: Vec<Merger>,
    /// (block, merger) DeepStack taps in block order ([`VisionConfig::deepstack_taps`]).
    taps: Vec<(usize, usize)>,
    act: Activation,
}

/// Output of one tower pass: merged visual tokens and one DeepStack feature set per level.
pub struct VisionOutput {
    pub embeds: Vec<f32>,
    pub deepstack: Vec<Vec<f32>>,
    pub n_tokens: usize,
}

impl VisionTower {
    pub fn load(l: &Loader, cfg: &VisionConfig, patch_dim: usize) -> Result<Self> {
        let hv = cfg.hidden_size;
        let unit = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let pre = "model.visual";
        let conv = l.ckpt.get(&format!("{pre}.patch_embed.proj.weight"))?;
        let want = [
            hv,
            cfg.in_channels,
            cfg.temporal_patch_size,
            cfg.patch_size,
            cfg.patch_size,
        ];
        if conv.shape != want {
            return Err(EngineError::Shape {
                name: conv.name.to_string(),
                got: conv.shape.to_vec(),
                expected: want.to_vec(),
            });
        }
        // Conv3d with kernel = stride = its input is a linear map over the flattened patch.
        let mut w = conv.to_f32();
        l.precision.round_slice(&mut w);
        let patch_embed = l.linear_from(
            l.store_from_f32(w),
            hv,
            patch_dim,
            Some(l.vector(&format!("{pre}.patch_embed.proj.bias"), &[hv])?),
        )?;
        let pos_embed = l.vector(
            &format!("{pre}.pos_embed.weight"),
            &[cfg.num_position_embeddings, hv],
        )?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for i in 0..cfg.depth {
            let b = format!("{pre}.blocks.{i}");
            blocks.push(Block {
                norm1: Norm::load(l, &format!("{b}.norm1"), hv)?,
                qkv: l.vision_linear(&format!("{b}.attn.qkv"), 3 * hv, hv, true)?,
                proj: l.vision_linear(&format!("{b}.attn.proj"), hv, hv, true)?,
                norm2: Norm::load(l, &format!("{b}.norm2"), hv)?,
                fc1: l.vision_linear(
                    &format!("{b}.mlp.linear_fc1"),
                    cfg.intermediate_size,
                    hv,
                    true,
                )?,
                fc2: l.vision_linear(
                    &format!("{b}.mlp.linear_fc2"),
                    hv,
                    cfg.intermediate_size,
                    true,
                )?,
            });
        }
        let merger = Merger::load(
            l,
            &format!("{pre}.merger"),
            hv,
            unit,
            cfg.out_hidden_size,
            false,
        )?;
        let deepstack = (0..cfg.deepstack_visual_indexes.len())
            .map(|k| {
                Merger::load(
                    l,
                    &format!("{pre}.deepstack_merger_list.{k}"),
                    hv,
                    unit,
                    cfg.out_hidden_size,
                    true,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(VisionTower {
            cfg: cfg.clone(),
            precision: l.precision,
            patch_embed,
            pos_embed,
            blocks,
            merger,
            deepstack,
            taps: cfg.deepstack_taps(),
            act: cfg.activation().ok_or_else(|| EngineError::Config {
                path: "config.json".into(),
                msg: format!(
                    "vision_config.hidden_act `{}` is not supported",
                    cfg.hidden_act
                ),
            })?,
        })
    }

    /// Number of merged visual tokens for a grid.
    pub fn tokens_for(&self, grid: [usize; 3]) -> usize {
        let m = self.cfg.spatial_merge_size;
        grid[0] * (grid[1] / m) * (grid[2] / m)
    }

    fn check_grids(&self, pixels: &[f32], grids: &[[usize; 3]], patch_dim: usize) -> Result<usize> {
        let m = self.cfg.spatial_merge_size;
        let mut np = 0usize;
        for g in grids {
            if g.contains(&0) || g[1] % m != 0 || g[2] % m != 0 {
                return Err(EngineError::input(format!(
                    "grid_thw {g:?}: all dims must be positive and h, w multiples of {m}"
                )));
            }
            np = g[0]
                .checked_mul(g[1])
                .and_then(|v| v.checked_mul(g[2]))
                .and_then(|v| v.checked_add(np))
                .ok_or_else(|| EngineError::input("grid_thw overflows"))?;
        }
        if pixels.len() != np * patch_dim {
            return Err(EngineError::input(format!(
                "pixel values have {} rows of {patch_dim} but the grids {grids:?} need {np}",
                pixels.len() as f64 / patch_dim as f64
            )));
        }
        Ok(np)
    }

    /// Interpolated learned positions, tiled over time and put in merge-window order.
    fn position_embeddings(&self, grids: &[[usize; 3]]) -> Vec<f32> {
        let hv = self.cfg.hidden_size;
        let side = (self.cfg.num_position_embeddings as f64).sqrt() as usize;
        let m = self.cfg.spatial_merge_size;
        let p = self.precision;
        let mut out = Vec::new();
        for &[t, h, w] in grids {
            let hs = linspace(0.0, (side - 1) as f32, h);
            let ws = linspace(0.0, (side - 1) as f32, w);
            let mut grid = vec![0f32; h * w * hv];
            for (r, &hy) in hs.iter().enumerate() {
                let fh = hy as usize;
                let ch = (fh + 1).min(side - 1);
                let dh = hy - fh as f32;
                for (c, &wx) in ws.iter().enumerate() {
                    let fw = wx as usize;
                    let cw = (fw + 1).min(side - 1);
                    let dw = wx - fw as f32;
                    let idx = [
                        fh * side + fw,
                        fh * side + cw,
                        ch * side + fw,
                        ch * side + cw,
                    ];
                    let wts = [
                        (1.0 - dh) * (1.0 - dw),
                        (1.0 - dh) * dw,
                        dh * (1.0 - dw),
                        dh * dw,
                    ]
                    .map(|x| p.round(x));
                    let dst = &mut grid[(r * w + c) * hv..][..hv];
                    for (k, (&ix, &wt)) in idx.iter().zip(&wts).enumerate() {
                        let row = &self.pos_embed[ix * hv..][..hv];
                        for (d, &e) in dst.iter_mut().zip(row) {
                            let prod = p.round(e * wt);
                            *d = if k == 0 { prod } else { p.round(*d + prod) };
                        }
                    }
                }
            }
            for _ in 0..t {
                for br in 0..h / m {
                    for bc in 0..w / m {
                        for ir in 0..m {
                            for ic in 0..m {
                                let (r, c) = (br * m + ir, bc * m + ic);
                                out.extend_from_slice(&grid[(r * w + c) * hv..][..hv]);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// (row, col) of every patch in merge-window order, repeated per temporal slice.
    fn patch_coords(&self, grids: &[[usize; 3]]) -> Vec<(usize, usize)> {
        let m = self.cfg.spatial_merge_size;
        let mut coords = Vec::new();
        for &[t, h, w] in grids {
            for _ in 0..t {
                for br in 0..h / m {
                    for bc in 0..w / m {
                        for ir in 0..m {
                            for ic in 0..m {
                                coords.push((br * m + ir, bc * m + ic));
                            }
                        }
                    }
                }
            }
        }
        coords
    }

    /// Run the tower on `pixels` ([Σ t·h·w, patch_dim] in merge-window order).
    pub fn forward(
        &self,
        pool: &ThreadPool,
        pixels: &[f32],
        grids: &[[usize; 3]],
    ) -> Result<VisionOutput> {
        let p = self.precision;
        let patch_dim = self.patch_embed.k;
        let np = self.check_grids(pixels, grids, patch_dim)?;
        let hv = self.cfg.hidden_size;
        let heads = self.cfg.num_heads;
        let hd = hv / heads;
        let mut input = pixels.to_vec();
        p.round_slice(&mut input);
        let mut x = self.patch_embed.apply(pool, &input, np)?;
        drop(input);
        add_inplace(&mut x, &self.position_embeddings(grids), p);
        let (cos, sin) = vision_tables(hd, &self.patch_coords(grids));
        // One attention segment per temporal slice of every item.
        let mut segments = Vec::new();
        let mut start = 0;
        for &[t, h, w] in grids {
            for _ in 0..t {
                segments.push(Segment {
                    q0: start,
                    len: h * w,
                    k0: start,
                    klen: h * w,
                    mask: Mask::Full,
                });
                start += h * w;
            }
        }
        let shape = AttnShape {
            n_heads: heads,
            n_kv_heads: heads,
            head_dim: hd,
        };
        let scale = (hd as f32).powf(-0.5);
        let mut deepstack = Vec::with_capacity(self.deepstack.len());
        let (mut q, mut k, mut v) = (
            vec![0f32; np * hv],
            vec![0f32; np * hv],
            vec![0f32; np * hv],
        );
        let mut attn = vec![0f32; np * hv];
        // Scratch reused by every block (fresh multi-MB buffers per block cost page faults).
        let mut h = vec![0f32; np * hv];
        let mut qkv = vec![0f32; np * 3 * hv];
        let mut a = vec![0f32; np * self.cfg.intermediate_size];
        // `h` enters each block as norm1(x): the previous block's last residual add is fused
        // with it.
        if let Some(b0) = self.blocks.first() {
            b0.norm1.apply_into(pool, &x, &mut h, p);
        }
        for (bi, b) in self.blocks.iter().enumerate() {
            b.qkv.forward(pool, &h, np, &mut qkv)?;
            let bufs = [&mut q[..], &mut k[..], &mut v[..]];
            par_row_blocks(
                pool,
                np,
                bufs,
                [hv; 3],
                &|r0, r1, [q, k, v]: [&mut [f32]; 3]| {
                    let rows = qkv[r0 * 3 * hv..r1 * 3 * hv].chunks_exact(3 * hv);
                    for (i, row) in rows.enumerate() {
                        q[i * hv..(i + 1) * hv].copy_from_slice(&row[..hv]);
                        k[i * hv..(i + 1) * hv].copy_from_slice(&row[hv..2 * hv]);
                        v[i * hv..(i + 1) * hv].copy_from_slice(&row[2 * hv..]);
                    }
                    let (c, s) = (&cos[r0 * hd..], &sin[r0 * hd..]);
                    apply_rope(q, r1 - r0, heads, hd, c, s, p, RopeRounding::Once);
                    apply_rope(k, r1 - r0, heads, hd, c, s, p, RopeRounding::Once);
                },
            );
            attention(pool, shape, &q, &k, &v, &segments, scale, p, &mut attn);
            b.proj.forward(pool, &attn, np, &mut h)?;
            b.norm2.add_then_apply(pool, &mut x, &mut h, p);
            b.fc1.forward_activated(pool, &h, np, &mut a, self.act)?;
            b.fc2.forward(pool, &a, np, &mut h)?;
            match self.blocks.get(bi + 1) {
                Some(next) => next.norm1.add_then_apply(pool, &mut x, &mut h, p),
                None => residual_add(pool, &mut x, &h, hv, p),
            }
            // Block order, as transformers appends them (not merger order).
            if let Some(&(_, merger)) = self.taps.iter().find(|&&(b, _)| b == bi) {
                deepstack.push(self.deepstack[merger].forward(pool, &x, p)?);
            }
        }
        let embeds = self.merger.forward(pool, &x, p)?;
        let unit = self.cfg.spatial_merge_size * self.cfg.spatial_merge_size;
        Ok(VisionOutput {
            embeds,
            deepstack,
            n_tokens: np / unit,
        })
    }
}

/// `torch.linspace` in f32: the first half counts up from `start`, the second half down from `end`.
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}
