//! The GEMMs behind `Linear` layers and the backends that hand each weight to one of them:
//! [`amx`] (AMX-BF16 tiles), [`bf16_dot`] (`vdpbf16ps`), [`bf16_fma`] (f32 FMA over bf16 or f16
//! panels), oneDNN ([`onednn`]) and the portable path ([`portable`]). Which one a weight gets is
//! the kernel plan's choice ([`backend_for`]); each module's doc gives the measured figure that
//! keeps it:
//! * [`amx`]: 1.96 vs oneDNN 2.6's 0.97 TFLOP/s at M = 784 (6144 × 2048, 2 threads, AMX VM).
//! * [`bf16_dot`]: at oneDNN's rate on the vision shapes (905 vs 885 GOP/s, Zen 5 VM), 3–4× faster
//!   on small expert weights (0.017–0.022 vs 0.06–0.09 ms).
//! * [`bf16_fma`]: prefill 66.7 vs 49 tok/s and vision 3.4 vs 4.4 s against oneDNN where
//!   `vdpbf16ps` is slow; the only fast bf16 path on AVX2-only CPUs, and the f16 path.
//! * [`onednn`]: f32 weights everywhere it loads (we have no f32 panels), bf16 where none of ours
//!   runs, and W8A8 weights on AMX-INT8 for prefill (352 vs 258 tok/s for the panels).
//! * [`portable`]: what every x86-64 CPU runs, and the reference of the tests.

pub mod amx;
pub mod bf16_dot;
pub mod bf16_fma;
mod chunk_acc;
pub mod onednn;
pub mod onednn_sys;
pub mod portable;

use super::linear::{self, FastBackend, FastMatmul, WeightStore};
pub use super::runtime::plan::AUTO_MIN_ELEMENTS;
use super::runtime::plan::{self, Bf16Gemm, F16Gemm, F32Gemm, KernelPlan, OneDnnFacts};
use super::runtime::pool;
use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::{bf16, ops};
use onednn::{OneDnn, PackedWeight, Source, WeightData};

/// The GEMM backend `plan` describes: its bf16 kernel ([`amx`], [`bf16_dot`],
/// [`bf16_fma`], oneDNN or none), f16 weights on [`bf16_fma`]'s f16 panels where the
/// plan says so, f32 (and declined bf16) weights on oneDNN where it is loaded; weights below the
/// plan's `gemm_min_elements` stay portable. `None`: everything portable.
pub fn backend_for(plan: &KernelPlan) -> Option<Box<dyn FastBackend>> {
    let kernel = match plan.bf16_gemm {
        Bf16Gemm::Amx => Some(PanelKernel::Amx),
        Bf16Gemm::Dot => Some(PanelKernel::Dot),
        Bf16Gemm::Fma => Some(PanelKernel::Fma),
        Bf16Gemm::OneDnn | Bf16Gemm::Portable => None,
    };
    let f16 = plan.f16_gemm == F16Gemm::Fma;
    let wants_dnn = plan.f32_gemm == F32Gemm::OneDnn || plan.bf16_gemm == Bf16Gemm::OneDnn;
    let dnn = if wants_dnn {
        onednn_backend(plan.gemm_min_elements)
    } else {
        None
    };
    if kernel.is_none() && !f16 {
        return dnn;
    }
    Some(Box::new(Bf16PanelBackend {
        kernel,
        f16,
        fallback: dnn,
        min_elements: plan.gemm_min_elements,
    }))
}

/// [`backend_for`] the plan in force ([`crate::engine::kernels::runtime::plan::active`]).
pub fn auto_backend() -> Option<Box<dyn FastBackend>> {
    backend_for(&plan::active())
}

/// [`bf16_fma`] for every bf16 weight of at least `min_elements` (f32 weights go to oneDNN
/// with the same bound when present, else stay portable); `None` where the kernel cannot run.
pub fn fma_backend(min_elements: usize) -> Option<Box<dyn FastBackend>> {
    panel_backend(PanelKernel::Fma, min_elements)
}

/// [`bf16_dot`] for every bf16 weight of at least `min_elements` (f32 weights as in
/// [`fma_backend`]); `None` without AVX512_BF16.
pub fn dot_backend(min_elements: usize) -> Option<Box<dyn FastBackend>> {
    panel_backend(PanelKernel::Dot, min_elements)
}

/// [`amx`] for every bf16 weight of at least `min_elements` (f32 weights as in
/// [`fma_backend`]); `None` where AMX tiles cannot run.
pub fn amx_backend(min_elements: usize) -> Option<Box<dyn FastBackend>> {
    panel_backend(PanelKernel::Amx, min_elements)
}

fn panel_backend(kernel: PanelKernel, min_elements: usize) -> Option<Box<dyn FastBackend>> {
    kernel.available().then(|| {
        Box::new(Bf16PanelBackend {
            kernel: Some(kernel),
            f16: bf16_fma::available(),
            fallback: onednn_backend(min_elements),
            min_elements,
        }) as Box<dyn FastBackend>
    })
}

/// Our own bf16-weight kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PanelKernel {
    Fma,
    Dot,
    Amx,
}

impl PanelKernel {
    fn available(self) -> bool {
        match self {
            PanelKernel::Fma => bf16_fma::available(),
            PanelKernel::Dot => bf16_dot::available(),
            PanelKernel::Amx => amx::available(),
        }
    }

    fn pack(self, n: usize, k: usize, rows: linear::RowSource) -> Result<Box<dyn FastMatmul>> {
        if let WeightStore::F16(_) = rows(0, 1)? {
            // Only the FMA panels widen f16 (`takes` routes f16 weights nowhere else).
            return Ok(Box::new(FmaMatmul(bf16_fma::Bf16Panels::from_rows_as(
                pool::ThreadPool::global(),
                n,
                k,
                rows,
                bf16_fma::PanelFormat::F16,
            )?)));
        }
        let pool = pool::ThreadPool::global();
        Ok(match self {
            PanelKernel::Fma => Box::new(FmaMatmul(bf16_fma::Bf16Panels::from_rows(
                pool, n, k, rows,
            )?)),
            PanelKernel::Dot => {
                Box::new(DotMatmul(bf16_dot::DotPanels::from_rows(pool, n, k, rows)?))
            }
            PanelKernel::Amx => Box::new(AmxMatmul(amx::AmxPanels::from_rows(pool, n, k, rows)?)),
        })
    }
}

/// bf16 weights to one of our [`PanelKernel`]s (when `kernel` is set), f16 weights to the FMA
/// panels in f16 format (when `f16` is set); everything else to `fallback`.
struct Bf16PanelBackend {
    kernel: Option<PanelKernel>,
    f16: bool,
    fallback: Option<Box<dyn FastBackend>>,
    min_elements: usize,
}

impl Bf16PanelBackend {
    /// The kernel that packs a weight of this store's kind, if one of ours takes it.
    fn takes(&self, w: &WeightStore, n: usize, k: usize) -> Option<PanelKernel> {
        if n * k < self.min_elements {
            return None;
        }
        match w {
            WeightStore::Bf16(_) => self.kernel.filter(|k| k.available()),
            WeightStore::F16(_) => (self.f16 && bf16_fma::available()).then_some(PanelKernel::Fma),
            WeightStore::F32(_) => None,
        }
    }
}

impl FastBackend for Bf16PanelBackend {
    fn prepare(&self, w: &WeightStore, n: usize, k: usize) -> Result<Option<Box<dyn FastMatmul>>> {
        if let Some(kernel) = self.takes(w, n, k) {
            let rows = |r0: usize, r1: usize| {
                Ok(match w {
                    WeightStore::Bf16(v) => WeightStore::Bf16(v[r0 * k..r1 * k].to_vec()),
                    WeightStore::F16(v) => WeightStore::F16(v[r0 * k..r1 * k].to_vec()),
                    WeightStore::F32(v) => WeightStore::F32(v[r0 * k..r1 * k].to_vec()),
                })
            };
            return kernel.pack(n, k, &rows).map(Some);
        }
        match &self.fallback {
            Some(be) => be.prepare(w, n, k),
            None => Ok(None),
        }
    }

    fn prepare_rows(
        &self,
        n: usize,
        k: usize,
        rows: &dyn Fn(usize, usize) -> Result<WeightStore>,
    ) -> Result<Option<Box<dyn FastMatmul>>> {
        // The loader hands rows in the model precision: one row tells which it is.
        if n * k >= self.min_elements {
            if let Some(kernel) = self.takes(&rows(0, 1)?, n, k) {
                return kernel.pack(n, k, rows).map(Some);
            }
        }
        match &self.fallback {
            Some(be) => be.prepare_rows(n, k, rows),
            None => Ok(None),
        }
    }

    fn name(&self) -> String {
        let bf16 = match self.kernel {
            Some(PanelKernel::Fma) => "bf16 FMA panels + ",
            Some(PanelKernel::Dot) => "bf16 dot panels + ",
            Some(PanelKernel::Amx) => "bf16 AMX tiles + ",
            None => "",
        };
        let f16 = if self.f16 { "f16 FMA panels" } else { "" };
        let ours = format!("{bf16}{f16}");
        let ours = ours.trim_end_matches(" + ");
        match &self.fallback {
            Some(be) => format!("{ours} + {}", be.name()),
            None => ours.to_string(),
        }
    }
}

struct FmaMatmul(bf16_fma::Bf16Panels);

impl FastMatmul for FmaMatmul {
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        self.0.matmul(pool::ThreadPool::global(), x, m, bias, y)
    }

    fn name(&self) -> String {
        let format = match self.0.format() {
            bf16_fma::PanelFormat::Bf16 => "bf16",
            bf16_fma::PanelFormat::F16 => "f16",
        };
        format!("{format} panels ({} FMA)", bf16_fma::tiles_name())
    }
}

struct DotMatmul(bf16_dot::DotPanels);

impl FastMatmul for DotMatmul {
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        self.0.matmul(pool::ThreadPool::global(), x, m, bias, y)
    }

    fn matmul_fused(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        epilogue: linear::Epilogue,
        y: &mut [f32],
    ) -> Result<bool> {
        let pool = pool::ThreadPool::global();
        self.0.matmul_fused(pool, x, m, bias, epilogue, y)?;
        Ok(epilogue != linear::Epilogue::None)
    }

    fn name(&self) -> String {
        "bf16 panels (AVX512-BF16 dot)".into()
    }
}

struct AmxMatmul(amx::AmxPanels);

impl FastMatmul for AmxMatmul {
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        self.0.matmul(pool::ThreadPool::global(), x, m, bias, y)
    }

    fn amx_panels(&self) -> Option<&amx::AmxPanels> {
        Some(&self.0)
    }

    fn name(&self) -> String {
        "bf16 AMX tiles".into()
    }
}

/// The oneDNN backend when the library is present; `min_elements` keeps smaller weights portable.
pub fn onednn_backend(min_elements: usize) -> Option<Box<dyn FastBackend>> {
    OneDnn::get().map(|dnn| Box::new(OneDnnBackend { dnn, min_elements }) as Box<dyn FastBackend>)
}

/// Whether oneDNN is present and its matmuls compute every row of a call the same way whatever
/// the row count. Batched and single requests then give bit-identical logits on weights it holds.
/// True for its AVX-512 BF16 kernels (Zen 4 / 5). Not for its AVX2 GEMM, which re-blocks by M;
/// not on AVX-512 CPUs without BF16 (Ice Lake: `avx512_core_vnni`, measured with oneDNN 2.6.3: a
/// single row goes through `gemm:jit`'s GEMV and its last bits differ from the same row in a
/// batch); nor on AMX: there a few rows run on AVX-512 and more on AMX tiles, and even between two
/// AMX row counts the blocking changes, so the last bits of a row depend on its batch.
pub fn onednn_row_invariant() -> bool {
    OneDnn::get().is_some_and(|d| d.has_avx512_bf16() && !d.has_amx())
}

/// Whether oneDNN is present and has a non-reference bf16 matmul on this CPU (none on AVX2-only
/// CPUs, where the oneDNN backend leaves bf16 weights to the FMA kernel or the portable path).
pub fn onednn_runs_bf16() -> bool {
    OneDnn::get().is_some_and(runs_bf16)
}

/// Whether `dnn` packs a bf16 weight without falling back to its reference kernels (tried once).
fn runs_bf16(dnn: &'static OneDnn) -> bool {
    static RUNS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *RUNS.get_or_init(|| {
        let w = vec![half::bf16::ZERO; 64 * 64];
        PackedWeight::new(dnn, WeightData::Bf16(&w), 64, 64).is_ok()
    })
}

/// Loads oneDNN for the kernel plan (once per process; see [`OneDnn::load_once`]) and tells the
/// plan what it can do.
pub(crate) fn load_onednn(
    threads: usize,
    lib: Option<&str>,
) -> std::result::Result<OneDnnFacts, String> {
    let dnn = OneDnn::load_once(threads, lib)?;
    Ok(OneDnnFacts {
        describe: dnn.describe(),
        amx: dnn.has_amx(),
        runs_bf16: runs_bf16(dnn),
    })
}

/// libgomp (oneDNN's runtime) reads its environment once, when oneDNN is loaded. Give it our
/// thread count and a short spin so its idle workers do not steal cores from the compute pool
/// between matmuls. Explicit user settings win.
fn configure_openmp(threads: usize) {
    if std::env::var_os("OMP_NUM_THREADS").is_none() {
        std::env::set_var("OMP_NUM_THREADS", threads.to_string());
    }
    if std::env::var_os("OMP_WAIT_POLICY").is_none() && std::env::var_os("GOMP_SPINCOUNT").is_none()
    {
        std::env::set_var("GOMP_SPINCOUNT", "20000");
    }
}

struct OneDnnBackend {
    dnn: &'static OneDnn,
    min_elements: usize,
}

impl FastBackend for OneDnnBackend {
    fn prepare(&self, w: &WeightStore, n: usize, k: usize) -> Result<Option<Box<dyn FastMatmul>>> {
        if n * k < self.min_elements {
            return Ok(None);
        }
        let data = match w {
            WeightStore::F32(v) => WeightData::F32(v),
            WeightStore::Bf16(v) => WeightData::Bf16(v),
            // No fast oneDNN f16 matmul on CPUs without AVX512-FP16 / AMX-FP16: stays ours.
            WeightStore::F16(_) => return Ok(None),
        };
        self.pack_slices(n, k, &mut |n0, n1, pack| {
            pack(match data {
                WeightData::F32(v) => WeightData::F32(&v[n0 * k..n1 * k]),
                WeightData::Bf16(v) => WeightData::Bf16(&v[n0 * k..n1 * k]),
                WeightData::S8(v) => WeightData::S8(&v[n0 * k..n1 * k]),
            })
        })
    }

    fn prepare_rows(
        &self,
        n: usize,
        k: usize,
        rows: &dyn Fn(usize, usize) -> Result<WeightStore>,
    ) -> Result<Option<Box<dyn FastMatmul>>> {
        if n * k < self.min_elements || matches!(rows(0, 1)?, WeightStore::F16(_)) {
            return Ok(None);
        }
        // Each slice's rows exist only while that slice is packed.
        self.pack_slices(n, k, &mut |n0, n1, pack| {
            let part = rows(n0, n1)?;
            pack(match &part {
                WeightStore::F32(v) => WeightData::F32(v),
                WeightStore::Bf16(v) => WeightData::Bf16(v),
                WeightStore::F16(_) => {
                    return Err(EngineError::Kernel(
                        "oneDNN backend handed f16 rows after f32/bf16 ones".into(),
                    ))
                }
            })
        })
    }

    fn name(&self) -> String {
        self.dnn.describe()
    }
}

const MAX_SLICE_BYTES: usize = 128 << 20;

/// Packs one slice from its rows; `Ok(None)` when oneDNN has only reference kernels for it.
type PackSlice<'a> = &'a mut dyn FnMut(WeightData) -> Result<Option<PackedWeight>>;
/// Hands rows [n0, n1) of the weight to a [`PackSlice`].
type SliceRows<'a> = &'a mut dyn FnMut(usize, usize, PackSlice) -> Result<Option<PackedWeight>>;

impl OneDnnBackend {
    /// Column slices of ≥ 64 outputs, claimed dynamically by the compute threads; `slice(n0, n1,
    /// pack)` hands rows [n0, n1) to `pack`.
    fn pack_slices(
        &self,
        n: usize,
        k: usize,
        slice: SliceRows,
    ) -> Result<Option<Box<dyn FastMatmul>>> {
        let threads = pool::ThreadPool::global().threads();
        // Weights over 128 MiB (the LM head) get more slices, a multiple of the thread count, so
        // the source rows of one slice (alive while it packs) stay small next to the model.
        let by_size = (n * k * 2).div_ceil(MAX_SLICE_BYTES).div_ceil(threads) * threads;
        let parts = (threads * slices_per_thread())
            .max(by_size)
            .min(n / 64)
            .max(1);
        let per = n.div_ceil(parts).div_ceil(64) * 64;
        let mut slices = Vec::with_capacity(parts);
        let mut n0 = 0;
        while n0 < n {
            let n1 = (n0 + per).min(n);
            let mut pack = |part: WeightData| match PackedWeight::new(self.dnn, part, n1 - n0, k) {
                Ok(p) => Ok(Some(p)),
                // oneDNN's reference kernels are slower than the portable path, and where it has
                // none at all (bf16 on AVX2) the weight stays ours too.
                Err(e) if e.no_fast_kernel() => Ok(None),
                Err(e) => Err(EngineError::Kernel(e.to_string())),
            };
            match slice(n0, n1, &mut pack)? {
                Some(p) => slices.push((n0, n1, p)),
                None => return Ok(None),
            }
            n0 = n1;
        }
        Ok(Some(Box::new(SplitPacked { n, slices })))
    }
}

/// oneDNN column slices per compute thread: the plan's `onednn_slices`. One by default: decode
/// runs ~1500 matmuls per token and every slice execution costs a fixed overhead (measured on
/// the 2B model, 2 threads: 9.6 vs 7.4 tok/s with 4 slices per thread, vision and prefill
/// unchanged). More slices balance better when other processes steal cores.
fn slices_per_thread() -> usize {
    plan::active().onednn_slices
}

thread_local! {
    static SLICE_OUT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A weight packed as column slices [n0, n1), each computed by one pool task.
struct SplitPacked {
    n: usize,
    slices: Vec<(usize, usize, PackedWeight)>,
}

impl FastMatmul for SplitPacked {
    fn matmul(&self, x: &[f32], m: usize, bias: Option<&[f32]>, y: &mut [f32]) -> Result<()> {
        let n = self.n;
        // Convert the source to bf16 once for all slices (not once per slice).
        let x_bf16: Vec<half::bf16>;
        let src = if self.slices[0].2.wants_bf16_source() {
            x_bf16 = {
                let mut v = vec![half::bf16::ZERO; x.len()];
                bf16::narrow(&mut v, x);
                v
            };
            Source::Bf16(&x_bf16)
        } else {
            Source::F32(x)
        };
        let failure = std::sync::Mutex::new(None);
        let out = ops::SyncSlice(y.as_mut_ptr(), y.len());
        pool::ThreadPool::global().run(self.slices.len(), &|i| {
            let (n0, n1, w) = &self.slices[i];
            let (n0, n1) = (*n0, *n1);
            let b = bias.map(|b| &b[n0..n1]);
            let r = if m == 1 {
                // SAFETY: slice i owns output columns [n0, n1); with one row they are contiguous.
                w.matmul_src(src, m, b, unsafe { out.range(n0, n1) })
            } else {
                SLICE_OUT.with(|cell| {
                    // Reused per thread: fresh multi-MB buffers cost a page fault per 4 KiB.
                    let mut tmp = cell.borrow_mut();
                    tmp.resize(m * (n1 - n0), 0.0);
                    let r = w.matmul_src(src, m, b, &mut tmp);
                    for (row, src) in tmp.chunks_exact(n1 - n0).enumerate() {
                        // SAFETY: columns [n0, n1) of each row belong to slice i only.
                        unsafe { out.range(row * n + n0, row * n + n1) }.copy_from_slice(src);
                    }
                    r
                })
            };
            if let Err(e) = r {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
        });
        match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(EngineError::Kernel(e.to_string())),
            None => Ok(()),
        }
    }

    fn threads_outside_pool(&self) -> bool {
        true
    }

    fn name(&self) -> String {
        match self.slices[0].2.impl_name(1) {
            Ok(s) => format!("oneDNN {s} ×{} slices", self.slices.len()),
            Err(_) => "oneDNN".into(),
        }
    }
}
