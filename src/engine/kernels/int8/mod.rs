//! W8A8 int8 linear layers: `y = dequant(q(x) · Wqᵀ)`, int8 weights with one scale per output
//! channel, int8 activations quantized per call — per token (dynamic, msModelSlim
//! `W8A8_DYNAMIC`) or with a calibrated per-tensor scale and zero point (static, `W8A8`).
//!
//! Activations are stored as `u8 = q + 128` so one integer GEMM serves AVX512-VNNI (`vpdpbusd`
//! multiplies u8 by s8), AVX2 ([`avx2`], exact i16 products) and the portable path; the shift
//! is undone exactly in the epilogue with the precomputed column sums:
//! `Σ (q+128)·w = Σ q·w + 128·Σ w`. All paths therefore produce the same int32 accumulators and
//! bit-identical outputs.
//!
//! Weight layout: panels of 16 output channels; inside a panel, groups of 4 input channels, each
//! group 64 bytes `[16 channels][4 k]` — exactly one `vpdpbusd` operand. K is padded to a multiple
//! of 4 and N to a multiple of 16 with zero weights.

pub mod amx;
pub mod avx2;
pub mod onednn;
mod portable;
pub mod quant;
pub mod vnni;

use std::cell::RefCell;

use self::onednn::{default_engine, Int8Engine, OneDnnInt8};
pub use self::quant::{quantize_activations, quantize_row};
use super::ops::{RawRows, SyncSlice};
use super::runtime::aligned::AlignedBuf;
use super::runtime::amx::Tiles;
use super::runtime::plan::Int8Gemm;
use super::runtime::pool::ThreadPool;
use super::runtime::simd::multiversion;
use crate::engine::error::{EngineError, Result};

/// Output channels per panel.
pub const PANEL: usize = 16;
/// Panels per strip: the unit of work of one task (64 output channels).
pub const STRIP_PANELS: usize = 4;
/// Rows computed together in one tile (weights are re-used from registers across them).
pub const TILE_ROWS: usize = 6;
/// Row counts that use the one-pass tall tiles on VNNI ([`vnni::tile_tall`]).
pub const TALL_M: std::ops::RangeInclusive<usize> = 7..=16;

/// How activations are quantized before the integer GEMM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActQuant {
    /// Per token: `s_t = max|x_t|/127`, `q = round(x/s_t)` (msModelSlim `W8A8_DYNAMIC`).
    Dynamic,
    /// Per tensor, calibrated offline: `q = clamp(round(x·inv_scale + zero_point), -128, 127)`
    /// (msModelSlim `W8A8`, MindIE multiplies by the reciprocal).
    Static { inv_scale: f32, zero_point: i32 },
}

/// Int8 weights [n, k] packed for the integer GEMM, with their per-channel column sums.
pub struct Int8Weight {
    pub n: usize,
    pub k: usize,
    /// K rounded up to a multiple of 4.
    kp: usize,
    /// Our panels, 64-byte aligned and followed by [`amx::SLACK_BYTES`] zeros (AMX tile
    /// reads); empty when oneDNN holds the weight.
    packed: AlignedBuf<i8>,
    onednn: Option<OneDnnInt8>,
    /// Σ_k Wq[n, k] per output channel.
    col_sum: Vec<i32>,
}

impl Int8Weight {
    /// Packs row-major int8 weights [n, k] for the engine this CPU prefers ([`default_engine`]).
    pub fn pack(q: &[i8], n: usize, k: usize) -> Result<Self> {
        Self::pack_with(q, n, k, default_engine())
    }

    /// [`Self::pack`] for a given engine; oneDNN falls back to the panels where it cannot run
    /// exactly (see [`OneDnnInt8::pack`]).
    pub fn pack_with(q: &[i8], n: usize, k: usize, engine: Int8Engine) -> Result<Self> {
        if q.len() != n * k || n == 0 || k == 0 {
            return Err(EngineError::Kernel(format!(
                "int8 weight has {} values, expected {n}×{k}",
                q.len()
            )));
        }
        let kp = k.div_ceil(4) * 4;
        let col_sum: Vec<i32> = q
            .chunks_exact(k)
            .map(|wr| wr.iter().map(|&w| w as i32).sum())
            .collect();
        if engine == Int8Engine::OneDnn {
            if let Some(d) = OneDnnInt8::pack(q, n, k)? {
                return Ok(Int8Weight {
                    n,
                    k,
                    kp,
                    packed: AlignedBuf::new(),
                    onednn: Some(d),
                    col_sum,
                });
            }
        }
        let groups = kp / 4;
        let panels = n.div_ceil(PANEL);
        let len = panels * groups * PANEL * 4;
        let mut packed = AlignedBuf::<i8>::zeroed_huge(len + amx::SLACK_BYTES);
        for (row, wr) in q.chunks_exact(k).enumerate() {
            let (p, j) = (row / PANEL, row % PANEL);
            for (kk, &w) in wr.iter().enumerate() {
                packed[((p * groups + kk / 4) * PANEL + j) * 4 + kk % 4] = w;
            }
        }
        Ok(Int8Weight {
            n,
            k,
            kp,
            packed,
            onednn: None,
            col_sum,
        })
    }

    /// Which engine holds the weight.
    pub fn engine(&self) -> Int8Engine {
        if self.onednn.is_some() {
            Int8Engine::OneDnn
        } else {
            Int8Engine::Panels
        }
    }

    /// Row-major int8 values back (for saving a quantized checkpoint).
    pub fn unpack(&self) -> Result<Vec<i8>> {
        if let Some(d) = &self.onednn {
            return d.unpack();
        }
        let groups = self.kp / 4;
        let mut out = vec![0i8; self.n * self.k];
        for (row, wr) in out.chunks_exact_mut(self.k).enumerate() {
            let (p, j) = (row / PANEL, row % PANEL);
            for (kk, w) in wr.iter_mut().enumerate() {
                *w = self.packed[((p * groups + kk / 4) * PANEL + j) * 4 + kk % 4];
            }
        }
        Ok(out)
    }

    pub fn bytes(&self) -> usize {
        self.packed.len() + self.onednn.as_ref().map_or(0, |d| d.bytes()) + 4 * self.col_sum.len()
    }

    /// Pool tasks of one matmul: 64-channel strips of the panels, or oneDNN's slices.
    fn tasks(&self) -> usize {
        match &self.onednn {
            Some(d) => d.tasks(),
            None => self.n.div_ceil(PANEL * STRIP_PANELS),
        }
    }
}

/// A W8A8 linear layer: packed int8 weights plus everything the epilogue needs.
pub struct Int8Linear {
    w: Int8Weight,
    act: ActQuant,
    /// Per channel: `s_w` (dynamic) or `deq_scale = s_x·s_w` (static).
    col_scale: Vec<f32>,
    /// Per channel, added to the u8·s8 accumulator: `quant_bias − 128·Σw` (static) or `−128·Σw`.
    comp: Vec<i32>,
    /// Float bias added after dequantization (dynamic layers; static ones fold it in quant_bias).
    bias: Option<Vec<f32>>,
}

impl Int8Linear {
    /// Dynamic per-token activations, weights with scales `s_w` (one per output channel).
    pub fn dynamic(w: Int8Weight, weight_scale: Vec<f32>, bias: Option<Vec<f32>>) -> Result<Self> {
        Self::build(w, ActQuant::Dynamic, weight_scale, None, bias)
    }

    /// Static per-tensor activations (msModelSlim `W8A8`): `y = (acc + quant_bias)·deq_scale`.
    pub fn static_per_tensor(
        w: Int8Weight,
        input_scale: f32,
        input_offset: i32,
        deq_scale: Vec<f32>,
        quant_bias: Vec<i32>,
    ) -> Result<Self> {
        if !(input_scale.is_finite() && input_scale > 0.0) {
            return Err(EngineError::Kernel(format!(
                "W8A8 input_scale must be a positive number, got {input_scale}"
            )));
        }
        let act = ActQuant::Static {
            inv_scale: 1.0 / input_scale,
            zero_point: input_offset,
        };
        Self::build(w, act, deq_scale, Some(quant_bias), None)
    }

    fn build(
        w: Int8Weight,
        act: ActQuant,
        col_scale: Vec<f32>,
        quant_bias: Option<Vec<i32>>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        let n = w.n;
        let check = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(EngineError::Kernel(format!(
                    "int8 linear {what} has {len} values, expected {n}"
                )))
            }
        };
        check("scale", col_scale.len())?;
        if let Some(b) = &quant_bias {
            check("quant_bias", b.len())?;
        }
        if let Some(b) = &bias {
            check("bias", b.len())?;
        }
        let comp = (0..n)
            .map(|c| quant_bias.as_ref().map_or(0, |b| b[c]) - 128 * w.col_sum[c])
            .collect();
        Ok(Int8Linear {
            w,
            act,
            col_scale,
            comp,
            bias,
        })
    }

    pub fn n(&self) -> usize {
        self.w.n
    }

    pub fn k(&self) -> usize {
        self.w.k
    }

    pub fn weight(&self) -> &Int8Weight {
        &self.w
    }

    pub fn act(&self) -> ActQuant {
        self.act
    }

    pub fn col_scale(&self) -> &[f32] {
        &self.col_scale
    }

    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    pub fn describe(&self) -> String {
        let isa = match &self.w.onednn {
            Some(d) => format!("oneDNN {}", d.impl_name(128)),
            None => match super::runtime::plan::active().int8_gemm {
                Int8Gemm::Amx => "amx-int8 / avx512-vnni".into(),
                tier => tier.name().into(),
            },
        };
        let a = match self.act {
            ActQuant::Dynamic => "per-token",
            ActQuant::Static { .. } => "per-tensor",
        };
        format!("int8 {isa} ({a} activations)")
    }

    /// y[m, n] = dequant(q(x[m, k]) · Wqᵀ) (+ bias), in f32.
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
        Self::forward_group(pool, &[self], x, m, &mut [y])
    }

    /// Whether [`Self::forward_group`] can run these layers together: same input width and the
    /// same activation quantization, so one quantized copy of the input serves all of them.
    pub fn can_share_input(layers: &[&Int8Linear]) -> bool {
        layers
            .windows(2)
            .all(|w| w[0].w.k == w[1].w.k && w[0].w.kp == w[1].w.kp && w[0].act == w[1].act)
    }

    /// [`Self::forward`] for several layers reading the same input (q/k/v, gate/up): the input is
    /// quantized once and the output strips of all layers are one batch of pool tasks.
    pub fn forward_group(
        pool: &ThreadPool,
        layers: &[&Int8Linear],
        x: &[f32],
        m: usize,
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        let Some(first) = layers.first() else {
            return Ok(());
        };
        if !Self::can_share_input(layers) || ys.len() != layers.len() {
            return Err(EngineError::Kernel(
                "int8 group: layers differ in input width or activation quantization".into(),
            ));
        }
        let (k, kp, act) = (first.w.k, first.w.kp, first.act);
        for (l, y) in layers.iter().zip(ys.iter()) {
            if x.len() < m * k || y.len() < m * l.w.n {
                return Err(EngineError::Kernel(format!(
                    "int8 linear {}×{k}: input {} / output {} too small for m = {m}",
                    l.w.n,
                    x.len(),
                    y.len()
                )));
            }
        }
        SCRATCH.with(|cell| {
            let mut s = cell.borrow_mut();
            let Scratch {
                xu,
                xt,
                xw,
                xk,
                xa,
                row_scale,
            } = &mut *s;
            xu.resize(m * kp, 128);
            row_scale.resize(m, 0.0);
            let quantize = |r: usize, dst: &mut [u8]| {
                dst[k..].fill(128);
                quantize_activations(&x[r * k..(r + 1) * k], &mut dst[..k], act)
            };
            if m < 4 {
                for (r, dst) in xu.chunks_exact_mut(kp).enumerate() {
                    row_scale[r] = quantize(r, dst);
                }
            } else {
                // Prefill: rows are quantized in parallel (single-threaded it was ~5% of the step).
                let (xp, sp) = (RawRows(xu.as_mut_ptr()), RawRows(row_scale.as_mut_ptr()));
                pool.run_chunks(m, 1, &|a, b| {
                    for r in a..b {
                        // SAFETY: row r (kp bytes of `xu`, one scale) belongs to this chunk only,
                        // and r < m keeps it inside the buffers resized above.
                        let (dst, scale) = unsafe {
                            (
                                std::slice::from_raw_parts_mut(xp.get().add(r * kp), kp),
                                &mut *sp.get().add(r),
                            )
                        };
                        *scale = quantize(r, dst);
                    }
                });
            }
            // Task t is strip t − first[i] of layer i.
            let mut first_task = Vec::with_capacity(layers.len() + 1);
            first_task.push(0);
            for l in layers {
                let last = *first_task.last().expect("non-empty");
                first_task.push(last + l.w.tasks());
            }
            let outs: Vec<SyncSlice> = layers
                .iter()
                .zip(ys.iter_mut())
                .map(|(l, y)| SyncSlice(y.as_mut_ptr(), m * l.w.n))
                .collect();
            let panel_layers = layers.iter().any(|l| l.w.onednn.is_none());
            // The plan's tiles (it only names tiers this CPU has; the checks keep that local).
            let tier = super::runtime::plan::active().int8_gemm;
            let vnni = tier >= Int8Gemm::Vnni && vnni::available();
            // AMX-INT8 tiles for 2+ rows (same sums as VNNI, see `amx`).
            let use_amx =
                panel_layers && tier == Int8Gemm::Amx && m >= amx::MIN_ROWS && amx::available();
            let amx = use_amx.then(|| amx::pack_rows(xu, m, kp, xa));
            // The group-major copy only serves panel layers (oneDNN reads `xu` itself).
            let use_tall = !use_amx && panel_layers && TALL_M.contains(&m) && vnni;
            if use_tall {
                xt.clear();
                xt.resize(m * kp, 0);
                for (r, row) in xu.chunks_exact(kp).enumerate() {
                    for (g, word) in row.chunks_exact(4).enumerate() {
                        xt[(g * m + r) * 4..][..4].copy_from_slice(word);
                    }
                }
            }
            let tall = use_tall.then_some(&xt[..]);
            // The AVX2 tiles multiply i16: widen the activations once for every strip.
            let use_wide = panel_layers && tier == Int8Gemm::Avx2 && !vnni && avx2::available();
            if use_wide {
                xw.clear();
                xw.extend(xu.iter().map(|&v| v as i16));
            }
            let wide = use_wide.then_some(&xw[..]);
            // oneDNN takes the source as [m, k]: drop the padding to a multiple of 4.
            let dense = if layers.iter().any(|l| l.w.onednn.is_some()) && kp != k {
                xk.clear();
                xk.extend(xu.chunks_exact(kp).flat_map(|r| &r[..k]));
                &xk[..]
            } else {
                &xu[..]
            };
            let (xu, row_scale) = (&xu[..], &row_scale[..]);
            let total = *first_task.last().expect("non-empty");
            let failure = std::sync::Mutex::new(None);
            pool.run(total, &|t| {
                let i = first_task.partition_point(|&f| f <= t) - 1;
                let (l, out) = (layers[i], &outs[i]);
                match &l.w.onednn {
                    None => {
                        let inputs = StripInputs {
                            xu,
                            vnni,
                            tall,
                            wide,
                            amx,
                        };
                        l.strip(t - first_task[i], inputs, row_scale, m, out)
                    }
                    Some(d) => {
                        let r = d.run_task(t - first_task[i], dense, m, &|r, c0, c1, sums| {
                            // SAFETY: this task owns columns [c0, c1) of every row.
                            let dst = unsafe { out.range(r * l.w.n + c0, r * l.w.n + c1) };
                            l.epilogue_row(sums, c0, c1, row_scale[r], dst);
                        });
                        if let Err(e) = r {
                            *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                        }
                    }
                }
            });
            match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
    }

    /// Dequantizes one row's int32 sums for columns [c0, c1) into `dst`.
    fn epilogue_row(&self, sums: &[i32], c0: usize, c1: usize, row_scale: f32, dst: &mut [f32]) {
        epilogue(
            &sums[..c1 - c0],
            &self.comp[c0..c1],
            &self.col_scale[c0..c1],
            row_scale,
            self.bias.as_ref().map(|b| &b[c0..c1]),
            dst,
        );
    }

    /// All rows for output channels [64·s, 64·s + 64), from whichever form of the activations
    /// [`StripInputs`] offers first: AMX row tiles, the group-major copy (`tall`, VNNI tall tiles
    /// for m in [`TALL_M`]), i16 (AVX2), else the plain rows.
    fn strip(&self, s: usize, inputs: StripInputs, row_scale: &[f32], m: usize, out: &SyncSlice) {
        let StripInputs {
            xu,
            vnni,
            tall,
            wide,
            amx,
        } = inputs;
        let (n, kp) = (self.w.n, self.w.kp);
        let groups = kp / 4;
        let panel_bytes = groups * PANEL * 4;
        let panels = n.div_ceil(PANEL);
        let p0 = s * STRIP_PANELS;
        let np = STRIP_PANELS.min(panels - p0);
        let c0 = p0 * PANEL;
        let c1 = (c0 + np * PANEL).min(n);
        if let Some(a) = amx {
            AMX_ACC.with(|cell| {
                let mut acc = cell.borrow_mut();
                acc.resize_zeroed(a.row_tiles * super::runtime::amx::TILE * PANEL * STRIP_PANELS);
                let tiles = Tiles::new().expect("AMX-INT8 chosen only where tiles run");
                let words = &self.w.packed.as_words()[p0 * panel_bytes / 4..];
                amx::strip(&tiles, a, words, np, groups, &mut acc);
                for r in 0..m {
                    // SAFETY: this task owns columns [c0, c1) of every row; rows are disjoint.
                    let dst = unsafe { out.range(r * n + c0, r * n + c1) };
                    let sums = &acc[r * PANEL * STRIP_PANELS..];
                    self.epilogue_row(sums, c0, c1, row_scale[r], dst);
                }
            });
            return;
        }
        let b = &self.w.packed[p0 * panel_bytes..(p0 + np) * panel_bytes];
        let mut acc = [0i32; vnni::TALL_ROWS * PANEL * STRIP_PANELS];
        if let (true, Some(at)) = (vnni, tall) {
            // 7..=16 rows (batched decode): one pass over the weights for all rows.
            for p in 0..np {
                let panel = &b[p * panel_bytes..(p + 1) * panel_bytes];
                vnni::tile_tall(at, m, panel, groups, &mut acc[p * PANEL..]);
            }
            for r in 0..m {
                // SAFETY: this task owns columns [c0, c1) of every row; rows are disjoint ranges.
                let dst = unsafe { out.range(r * n + c0, r * n + c1) };
                self.epilogue_row(&acc[r * PANEL * STRIP_PANELS..], c0, c1, row_scale[r], dst);
            }
            return;
        }
        let mut r0 = 0;
        while r0 < m {
            let rows = TILE_ROWS.min(m - r0);
            let a = &xu[r0 * kp..(r0 + rows) * kp];
            let tile_acc: &mut [i32; TILE_ROWS * PANEL * STRIP_PANELS] = (&mut acc
                [..TILE_ROWS * PANEL * STRIP_PANELS])
                .try_into()
                .expect("tile-sized prefix");
            if vnni {
                vnni::tile(a, kp, rows, b, np, groups, r0 == 0, tile_acc);
            } else if let Some(xw) = wide {
                let aw = &xw[r0 * kp..(r0 + rows) * kp];
                avx2::tile(aw, kp, rows, b, np, groups, tile_acc);
            } else {
                portable::tile(a, kp, rows, b, np, groups, tile_acc);
            }
            for i in 0..rows {
                let r = r0 + i;
                // SAFETY: this task owns columns [c0, c1) of every row; rows are disjoint ranges.
                let dst = unsafe { out.range(r * n + c0, r * n + c1) };
                self.epilogue_row(&acc[i * PANEL * STRIP_PANELS..], c0, c1, row_scale[r], dst);
            }
            r0 += rows;
        }
    }
}

/// The forms of one call's quantized activations a strip can read (see [`Int8Linear::strip`]).
#[derive(Clone, Copy)]
struct StripInputs<'a> {
    xu: &'a [u8],
    /// The VNNI tiles run (else AVX2 with `wide`, else portable).
    vnni: bool,
    tall: Option<&'a [u8]>,
    wide: Option<&'a [i16]>,
    amx: Option<amx::RowTiles<'a>>,
}

struct Scratch {
    xu: Vec<u8>,
    /// `xu` group-major, for the tall tiles.
    xt: Vec<u8>,
    /// `xu` widened to i16, for the AVX2 tiles.
    xw: Vec<i16>,
    /// `xu` without the k padding, for oneDNN.
    xk: Vec<u8>,
    /// `xu` as AMX row tiles.
    xa: AlignedBuf<u8>,
    row_scale: Vec<f32>,
}

thread_local! {
    // One strip's AMX sums for all rows (per compute thread).
    static AMX_ACC: RefCell<AlignedBuf<i32>> = const { RefCell::new(AlignedBuf::new()) };
    // Reused across calls: decode runs hundreds of linears per token and should not allocate.
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            xu: Vec::new(),
            xt: Vec::new(),
            xw: Vec::new(),
            xk: Vec::new(),
            xa: AlignedBuf::new(),
            row_scale: Vec::new(),
        })
    };
}

multiversion! {
    fn epilogue(
        acc: &[i32],
        comp: &[i32],
        col_scale: &[f32],
        row_scale: f32,
        bias: Option<&[f32]>,
        dst: &mut [f32],
    ) {
        for (((d, &a), &c), &s) in dst.iter_mut().zip(acc).zip(comp).zip(col_scale) {
            *d = (a + c) as f32 * (row_scale * s);
        }
        if let Some(b) = bias {
            for (d, &bb) in dst.iter_mut().zip(b) {
                *d += bb;
            }
        }
    }
}
