//! `Linear`: y = x · Wᵀ (+ b), the one op that carries almost all of the FLOPs.
//!
//! Weights keep the PyTorch layout [out, in]. A fast backend (oneDNN today, others later) may
//! take over a weight at load time through [`FastMatmul`]; otherwise the portable GEMM runs.

use half::{bf16, f16};

use super::bf16::Precision;
use super::gemm::portable as gemm_portable;
use super::int8::{quantize_row, Int8Linear, Int8Weight};
use super::ops::{Activation, RawRows};
use super::runtime::pool::ThreadPool;
use crate::engine::error::{EngineError, Result};

/// Weight storage in the model's precision.
#[derive(Clone)]
pub enum WeightStore {
    F32(Vec<f32>),
    Bf16(Vec<bf16>),
    F16(Vec<f16>),
}

/// What a matmul does to each finished output after adding the bias, in the same pass while the
/// tile is still in registers (instead of a separate pass over a multi-MB output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    /// f32 out.
    None,
    /// `round(y)`: a bf16 linear (PyTorch's addmm rounds once).
    RoundBf16,
    /// `round(gelu_tanh(round(y)))`: a bf16 linear and its `gelu_pytorch_tanh`.
    GeluTanhBf16,
}

/// A matmul implementation that owns a (re-laid-out) copy of one weight.
pub trait FastMatmul: Send + Sync {
    /// y[m, n] = x[m, k] · Wᵀ (+ bias) with f32 accumulation, produced in f32.
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()>;

    /// [`Self::matmul`] followed by `epilogue` where the kernel fuses it: returns true when it
    /// applied a (non-`None`) epilogue, false when y is left as `matmul` leaves it and the
    /// caller applies the epilogue.
    fn matmul_fused(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        epilogue: Epilogue,
        y: &mut [f32],
    ) -> Result<bool> {
        let _ = epilogue;
        self.matmul(x, m, bias, y)?;
        Ok(false)
    }

    /// Whether the kernel runs on threads of its own (oneDNN's OpenMP teams) rather than on the
    /// engine's pool: such a kernel must not be called from several pool tasks at once (each
    /// call would bring a team sized to all cores).
    fn threads_outside_pool(&self) -> bool {
        false
    }

    /// The AMX panels behind this matmul, which can share one packed input with others
    /// ([`super::gemm::amx::AmxPanels::matmul_group`]).
    fn amx_panels(&self) -> Option<&super::gemm::amx::AmxPanels> {
        None
    }

    fn name(&self) -> String;
}

/// Builds a fast path for a weight, or returns None to keep the portable path.
pub trait FastBackend: Send + Sync {
    fn prepare(&self, w: &WeightStore, n: usize, k: usize) -> Result<Option<Box<dyn FastMatmul>>>;

    /// [`Self::prepare`] for a weight handed over in row blocks (`rows(r0, r1)` = rows
    /// [r0, r1)), so a backend that re-lays weights out in parts never needs the whole source
    /// copy at once. The default asks for all rows.
    fn prepare_rows(
        &self,
        n: usize,
        k: usize,
        rows: &dyn Fn(usize, usize) -> Result<WeightStore>,
    ) -> Result<Option<Box<dyn FastMatmul>>> {
        self.prepare(&rows(0, n)?, n, k)
    }

    fn name(&self) -> String;
}

/// Rows [r0, r1) of a weight, produced on demand (see [`FastBackend::prepare_rows`]).
pub type RowSource<'a> = &'a dyn Fn(usize, usize) -> Result<WeightStore>;

/// Checks the operands of `y[m, n] = x[m, k] · Wᵀ (+ bias)`: m ≥ 1, x and y large enough, a bias
/// of n values; `what` names the kernel in the error.
pub fn check_matmul_operands(
    what: &str,
    (n, k): (usize, usize),
    x: &[f32],
    m: usize,
    bias: Option<&[f32]>,
    y: &[f32],
) -> Result<()> {
    if m == 0 || x.len() < m * k || y.len() < m * n || bias.is_some_and(|b| b.len() != n) {
        return Err(EngineError::Kernel(format!(
            "{what} matmul {n}×{k}: input {} / output {} / bias {:?} do not fit m = {m}",
            x.len(),
            y.len(),
            bias.map(|b| b.len())
        )));
    }
    Ok(())
}

/// Hands the `n` rows of a [n, k] weight from `rows` to `f(r0, r1, part)` in blocks of whole
/// `unit`-row groups, about 8 MiB of bf16 source each (so a packer never holds the whole source
/// next to its packed copy), checking that every block holds (r1 − r0)·k values; `what` names
/// the packer in errors.
pub fn for_row_blocks(
    n: usize,
    k: usize,
    unit: usize,
    rows: RowSource,
    what: &str,
    f: &mut dyn FnMut(usize, usize, &WeightStore),
) -> Result<()> {
    let block = ((8 << 20) / (k * 2 * unit)).max(1) * unit;
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + block).min(n);
        let part = rows(r0, r1)?;
        if part.len() != (r1 - r0) * k {
            return Err(EngineError::Kernel(format!(
                "{what}: rows {r0}..{r1} hold {} values, expected {}",
                part.len(),
                (r1 - r0) * k
            )));
        }
        f(r0, r1, &part);
        r0 = r1;
    }
    Ok(())
}

pub struct Linear {
    pub n: usize,
    pub k: usize,
    /// Portable copy; dropped when a fast backend owns the weight.
    weight: Option<WeightStore>,
    fast: Option<Box<dyn FastMatmul>>,
    /// W8A8 weights; when present nothing else is kept.
    int8: Option<Box<Int8Linear>>,
    bias: Option<Vec<f32>>,
    precision: Precision,
}

impl WeightStore {
    pub fn len(&self) -> usize {
        match self {
            WeightStore::F32(w) => w.len(),
            WeightStore::Bf16(w) => w.len(),
            WeightStore::F16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `r` of a [rows, cols] matrix as f32.
    pub fn row_f32(&self, r: usize, cols: usize, out: &mut [f32]) {
        match self {
            WeightStore::F32(w) => out.copy_from_slice(&w[r * cols..(r + 1) * cols]),
            WeightStore::Bf16(w) => super::bf16::widen(out, &w[r * cols..(r + 1) * cols]),
            WeightStore::F16(w) => super::bf16::widen_f16(out, &w[r * cols..(r + 1) * cols]),
        }
    }
}

impl Linear {
    pub fn new(
        weight: WeightStore,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
        backend: Option<&dyn FastBackend>,
    ) -> Result<Self> {
        let len = weight.len();
        if len != n * k {
            return Err(EngineError::Kernel(format!(
                "linear weight has {len} values, expected {n}×{k}"
            )));
        }
        let bias = checked_bias(bias, n, precision)?;
        let fast = match backend {
            Some(be) => be.prepare(&weight, n, k)?,
            None => None,
        };
        Ok(Linear {
            n,
            k,
            weight: if fast.is_some() { None } else { Some(weight) },
            fast,
            int8: None,
            bias,
            precision,
        })
    }

    /// [`Self::new`] from a weight produced in row blocks: a fast backend packs it part by part
    /// (peak memory: packed weight + one part, not + a whole second copy, which matters for the
    /// 0.6 GB LM head); the portable path asks for all rows.
    pub fn from_rows(
        rows: RowSource,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
        backend: Option<&dyn FastBackend>,
    ) -> Result<Self> {
        let bias = checked_bias(bias, n, precision)?;
        if let Some(fast) = backend
            .map(|be| be.prepare_rows(n, k, rows))
            .transpose()?
            .flatten()
        {
            return Ok(Linear {
                n,
                k,
                weight: None,
                fast: Some(fast),
                int8: None,
                bias,
                precision,
            });
        }
        Linear::new(rows(0, n)?, n, k, bias, precision, None)
    }

    /// A W8A8 layer from already-quantized weights (a msModelSlim checkpoint or our own).
    pub fn from_int8(q: Int8Linear, precision: Precision) -> Self {
        Linear {
            n: q.n(),
            k: q.k(),
            weight: None,
            fast: None,
            int8: Some(Box::new(q)),
            bias: None,
            precision,
        }
    }

    /// Quantizes a float weight to W8A8 with per-token dynamic activations: symmetric int8 per
    /// output channel (`s_w = max|w|/127`), the bias kept in float and added after dequantization.
    pub fn quantized(
        pool: &ThreadPool,
        weight: &WeightStore,
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Result<Self> {
        if weight.len() != n * k {
            return Err(EngineError::Kernel(format!(
                "linear weight has {} values, expected {n}×{k}",
                weight.len()
            )));
        }
        let mut q = vec![0i8; n * k];
        let mut scales = vec![0f32; n];
        let qs = super::ops::SyncSlice(scales.as_mut_ptr(), n);
        let qp = RawRows(q.as_mut_ptr());
        pool.run_chunks(n, 16, &|a, b| {
            let mut row = vec![0f32; k];
            for r in a..b {
                weight.row_f32(r, k, &mut row);
                // SAFETY: rows [a, b) belong to this chunk only; r < n so the ranges are in bounds.
                let dst = unsafe { std::slice::from_raw_parts_mut(qp.get().add(r * k), k) };
                // SAFETY: as above, index r of the scale vector belongs to this chunk.
                let scale = unsafe { qs.range(r, r + 1) };
                scale[0] = quantize_row(&row, dst);
            }
        });
        if let Some(r) = scales.iter().position(|s| s.is_nan()) {
            return Err(EngineError::Kernel(format!(
                "cannot quantize: weight row {r} holds a non-finite value"
            )));
        }
        let mut bias = bias;
        if let Some(b) = &mut bias {
            precision.round_slice(b);
        }
        let q = Int8Linear::dynamic(Int8Weight::pack(&q, n, k)?, scales, bias)?;
        Ok(Self::from_int8(q, precision))
    }

    pub fn int8(&self) -> Option<&Int8Linear> {
        self.int8.as_deref()
    }

    /// Whether `forward` runs on the engine's pool alone, so that several pool tasks may each run
    /// a whole `forward` at once (nested pool regions run inline, one core per task); false for
    /// oneDNN, which brings its own OpenMP threads.
    pub fn runs_on_pool(&self) -> bool {
        match (&self.fast, &self.int8) {
            (_, Some(q)) => q.weight().engine() != super::int8::onednn::Int8Engine::OneDnn,
            (Some(f), None) => !f.threads_outside_pool(),
            (None, None) => true,
        }
    }

    pub fn backend_name(&self) -> String {
        match (&self.fast, &self.int8) {
            (_, Some(q)) => q.describe(),
            (Some(f), None) => f.name(),
            (None, None) => "portable".into(),
        }
    }

    /// [`Self::forward`] for several layers reading the same input (q/k/v, gate/up). W8A8
    /// layers with one activation scheme quantize the input once and share one batch of pool
    /// tasks; other layers run one after the other. Results equal separate `forward` calls.
    pub fn forward_shared(
        pool: &ThreadPool,
        layers: &[&Linear],
        x: &[f32],
        m: usize,
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        let int8: Option<Vec<&Int8Linear>> = layers.iter().map(|l| l.int8.as_deref()).collect();
        match int8 {
            Some(q) if ys.len() == layers.len() && Int8Linear::can_share_input(&q) => {
                for (l, y) in layers.iter().zip(ys.iter()) {
                    if x.len() < m * l.k || y.len() < m * l.n {
                        return Err(EngineError::Kernel(format!(
                            "linear {}×{}: input {} / output {} too small for m = {m}",
                            l.n,
                            l.k,
                            x.len(),
                            y.len()
                        )));
                    }
                }
                let mut outs: Vec<&mut [f32]> = layers
                    .iter()
                    .zip(ys.iter_mut())
                    .map(|(l, y)| &mut y[..m * l.n])
                    .collect();
                Int8Linear::forward_group(pool, &q, x, m, &mut outs)?;
                for (l, y) in layers.iter().zip(outs) {
                    l.precision.round_slice(y);
                }
                Ok(())
            }
            _ => {
                if let Some(panels) = Self::shared_amx(layers) {
                    let biases: Vec<Option<&[f32]>> =
                        layers.iter().map(|l| l.bias.as_deref()).collect();
                    let mut outs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut **y).collect();
                    super::gemm::amx::AmxPanels::matmul_group(
                        pool, &panels, x, m, &biases, &mut outs,
                    )?;
                    for (l, y) in layers.iter().zip(outs) {
                        super::ops::round_par(pool, &mut y[..m * l.n], l.precision);
                    }
                    return Ok(());
                }
                for (l, y) in layers.iter().zip(ys.iter_mut()) {
                    l.forward(pool, x, m, y)?;
                }
                Ok(())
            }
        }
    }

    /// Every layer's AMX panels, when all of them are on AMX tiles (float weights) with one
    /// reduction length.
    fn shared_amx<'a>(layers: &[&'a Linear]) -> Option<Vec<&'a super::gemm::amx::AmxPanels>> {
        if layers.len() < 2 {
            return None;
        }
        let panels: Option<Vec<_>> = layers
            .iter()
            .map(|l| match (&l.int8, &l.fast) {
                (None, Some(f)) => f.amx_panels(),
                _ => None,
            })
            .collect();
        panels.filter(|p| p.iter().all(|q| q.k() == p[0].k()))
    }

    /// y[m, n] = x[m, k] · Wᵀ + b, rounded to the model precision (one rounding, as PyTorch's
    /// bf16 addmm does).
    pub fn forward(&self, pool: &ThreadPool, x: &[f32], m: usize, y: &mut [f32]) -> Result<()> {
        self.forward_then(pool, x, m, y, None)
    }

    /// `act(forward(x))`, rounded to the model precision like [`super::ops::activate`]: the
    /// same values as `forward` then `activate`, in one pass where the kernel fuses the
    /// activation into its output tiles.
    pub fn forward_activated(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        act: Activation,
    ) -> Result<()> {
        self.forward_then(pool, x, m, y, Some(act))
    }

    fn forward_then(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        act: Option<Activation>,
    ) -> Result<()> {
        if x.len() < m * self.k || y.len() < m * self.n {
            return Err(EngineError::Kernel(format!(
                "linear {}×{}: input {} / output {} too small for m = {m}",
                self.n,
                self.k,
                x.len(),
                y.len()
            )));
        }
        let y = &mut y[..m * self.n];
        // The fused epilogues round to bf16; f16 outputs are rounded after the matmul below.
        let bf16 = self.precision == Precision::Bf16;
        let epilogue = match act {
            None if bf16 => Epilogue::RoundBf16,
            Some(Activation::GeluTanh) if bf16 => Epilogue::GeluTanhBf16,
            _ => Epilogue::None,
        };
        if let Some(q) = &self.int8 {
            q.forward(pool, &x[..m * self.k], m, y)?;
        } else if let Some(f) = &self.fast {
            let x = &x[..m * self.k];
            if f.matmul_fused(x, m, self.bias.as_deref(), epilogue, y)? {
                return Ok(());
            }
        } else {
            match self.weight.as_ref().expect("portable weight present") {
                WeightStore::F32(w) => gemm_portable::matmul_f32(pool, x, m, self.k, w, self.n, y),
                WeightStore::Bf16(w) => {
                    gemm_portable::matmul_bf16(pool, x, m, self.k, w, self.n, y)
                }
                WeightStore::F16(w) => gemm_portable::matmul_f16(pool, x, m, self.k, w, self.n, y),
            }
            if let Some(b) = &self.bias {
                for row in y.chunks_exact_mut(self.n) {
                    for (v, bb) in row.iter_mut().zip(b) {
                        *v += bb;
                    }
                }
            }
        }
        match act {
            Some(act) => super::ops::round_then_activate(pool, y, act, self.precision),
            None => super::ops::round_par(pool, y, self.precision),
        }
        Ok(())
    }

    /// Convenience: allocate the output.
    pub fn apply(&self, pool: &ThreadPool, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let mut y = vec![0f32; m * self.n];
        self.forward(pool, x, m, &mut y)?;
        Ok(y)
    }
}

/// A bias of `n` values, rounded as the model stores it (a bf16 model's bias is a bf16 tensor).
fn checked_bias(
    bias: Option<Vec<f32>>,
    n: usize,
    precision: Precision,
) -> Result<Option<Vec<f32>>> {
    let mut bias = bias;
    if let Some(b) = &mut bias {
        if b.len() != n {
            return Err(EngineError::Kernel(format!(
                "linear bias has {} values, expected {n}",
                b.len()
            )));
        }
        precision.round_slice(b);
    }
    Ok(bias)
}
