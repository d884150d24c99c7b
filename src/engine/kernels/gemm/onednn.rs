//! Optional oneDNN (v2 C API, `libdnnl.so.2`) matmul for `Linear` layers: `y = x · Wᵀ (+ b)`.
//!
//! Why it stays: it is the only fast path for f32 weights (`--dtype f32`: we have no f32 panels),
//! and its AMX-INT8 matmul prefills W8A8 1.36× faster than our panels (352 vs 258 tok/s, 2B, AMX
//! VM; `QWEN3VL_INT8=onednn`, see [`crate::engine::kernels::int8::onednn`]). For bf16 weights
//! our kernels win on every CPU measured (docs/performance.md), so oneDNN's bf16 matmul is the
//! automatic choice only where none of ours runs (a dispatch level lowered to the baseline);
//! that route costs only the bf16 arm of the weight and source types.
//!
//! * The library is `dlopen`ed at run time ([`OneDnn::get`]), so the binary builds and runs
//!   without oneDNN; the kernel plan loads it unless `QWEN3VL_NO_ONEDNN=1`, from the file
//!   `QWEN3VL_ONEDNN_LIB` names (default `libdnnl.so.2`). Only the v2 API (major version 2) is
//!   accepted.
//! * [`PackedWeight::new`] reorders a PyTorch-layout `[N, K]` weight **once** into the blocked layout
//!   oneDNN prefers (weights format `any`, chosen for a representative `M = 128`). Primitives for
//!   other `M` reuse exactly that layout and are cached per `(M, has_bias)` (LRU, 16 entries;
//!   the decode entries `M = 1` are never evicted). Only one copy of the weight is ever kept:
//!   * if `M = 1` (decode) cannot use the blocked layout, the weight is stored plain instead;
//!   * if another `M` cannot use it, that call reorders the weight back to plain into a
//!     per-thread scratch buffer and runs a plain-layout primitive (slow but correct; the impl
//!     name then ends in "(weights unpacked per call)").
//!
//!   Neither case happens with oneDNN 2.6.3 on AVX-512 (`BA16a64b` f32 / `BA16a64b2a` bf16
//!   weights are accepted for every `M`).
//! * Primitives are created with the *user* scratchpad mode, so one primitive can run on several
//!   threads at once: each call brings its own (per-thread, reused) scratchpad and stream.
//!
//! # Threading
//! Debian's `libdnnl2` 2.6.3 is built with the **OpenMP** runtime (`ldd` shows `libgomp.so.1`,
//! `dnnl_version()->cpu_runtime == DNNL_RUNTIME_OMP`). Each call runs an OpenMP parallel region
//! with `omp_get_max_threads()` threads: `OMP_NUM_THREADS` if set, otherwise one per CPU in the
//! affinity mask. libgomp reads the environment when it is loaded, i.e. at the first
//! [`OneDnn::get`], so set it before that. Two Rust threads calling at once each get their own team.
//! After a region libgomp workers spin before sleeping (`GOMP_SPINCOUNT`, default 300 000
//! iterations, up to milliseconds); if the engine's own thread pool (rayon) runs between matmuls,
//! `OMP_WAIT_POLICY=passive` (or a small `GOMP_SPINCOUNT`) stops them stealing its cores.
//! `KMP_BLOCKTIME` only affects Intel's libiomp5 and does nothing here.
//!
//! # AMX
//! On Linux, AMX tile data needs a per-process permission (`arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`). oneDNN 2.6 requests it itself, but we also request it once before
//! creating the engine; the call fails harmlessly on CPUs without AMX. Whether AMX is really
//! used shows in [`PackedWeight::impl_name`] (`brg:avx512_core_amx` / `..._amx_bf16`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex, OnceLock};

use half::bf16;
use half::slice::HalfFloatSliceExt;
use libloading::Library;

use super::onednn_sys::*;

mod handles;
mod load;
mod primitives;
use handles::{AlignedBuf, Prim};

/// The source operand of a matmul.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    F32(&'a [f32]),
    /// Already rounded to bf16 (only for bf16 weights).
    Bf16(&'a [bf16]),
}

/// The destination of a matmul: f32 for float weights, the exact int32 accumulators for int8.
pub enum Dest<'a> {
    F32(&'a mut [f32]),
    S32(&'a mut [i32]),
}

/// Errors from the oneDNN binding.
#[derive(Debug, thiserror::Error)]
pub enum OneDnnError {
    /// A oneDNN C call returned a non-success status.
    #[error("oneDNN call {call} failed: {} (status {status})", status_name(*.status))]
    Call { call: &'static str, status: c_int },
    /// Arguments do not match the weight's shape.
    #[error("oneDNN matmul: {0}")]
    Shape(String),
    /// oneDNN only offers its (very slow) reference implementation for this problem.
    #[error("oneDNN has only a reference implementation ({impl_name}) for this matmul")]
    ReferenceOnly { impl_name: String },
    /// oneDNN has no implementation at all for this data type on this CPU (bf16 on AVX2-only
    /// CPUs, for one).
    #[error("oneDNN has no {dtype} matmul on this CPU")]
    Unimplemented { dtype: &'static str },
}

impl OneDnnError {
    /// The weight should stay on our own kernels: oneDNN has nothing faster for it here.
    pub fn no_fast_kernel(&self) -> bool {
        matches!(
            self,
            Self::ReferenceOnly { .. } | Self::Unimplemented { .. }
        )
    }
}

fn check(call: &'static str, status: c_int) -> Result<(), OneDnnError> {
    if status == DNNL_SUCCESS {
        Ok(())
    } else {
        Err(OneDnnError::Call { call, status })
    }
}

/// The loaded library, its entry points, one CPU engine and a pool of streams.
pub struct OneDnn {
    api: Api,
    engine: dnnl_engine_t,
    /// Primitive attribute with `scratchpad_mode = user`; only read by `primitive_desc_create`.
    attr_user_scratchpad: dnnl_primitive_attr_t,
    /// Idle streams; a call takes one (or creates one) and gives it back.
    streams: Mutex<Vec<usize>>,
    describe: String,
    /// `dnnl_get_effective_cpu_isa()` at load.
    isa: c_int,
    /// Keeps the code behind `api` mapped. Declared last; never dropped in practice (static).
    _lib: Library,
}

// SAFETY: the engine and the attribute are created once and afterwards only passed to oneDNN
// functions that read them (the oneDNN CPU engine is documented thread-safe; the attribute is a
// `const` parameter of `primitive_desc_create`). Streams are handed to one thread at a time
// through the `streams` mutex. The function pointers are plain code addresses.
unsafe impl Send for OneDnn {}
// SAFETY: see `Send` above; no method mutates shared state outside the mutex.
unsafe impl Sync for OneDnn {}

static INSTANCE: OnceLock<Result<OneDnn, String>> = OnceLock::new();

impl OneDnn {
    /// Process-wide instance; `None` if the library is missing, fails to initialise, or the
    /// process plan disabled it (`QWEN3VL_NO_ONEDNN=1`).
    pub fn get() -> Option<&'static OneDnn> {
        Self::get_or_reason().ok()
    }

    /// Like [`OneDnn::get`], but says why oneDNN is unavailable (for logs). The process kernel
    /// plan loads the library when it resolves (with its thread count and library path), so
    /// this resolves the plan first if nothing has.
    pub fn get_or_reason() -> Result<&'static OneDnn, &'static str> {
        if INSTANCE.get().is_none() {
            let plan = crate::engine::kernels::runtime::plan::process();
            if let (None, Err(why)) = (INSTANCE.get(), &plan.onednn) {
                return Err(why.as_str());
            }
        }
        match INSTANCE.get() {
            Some(r) => r.as_ref().map_err(|e| e.as_str()),
            None => Err("not loaded"),
        }
    }

    /// Loads the library once per process (`lib`: file name or path, default `libdnnl.so.2`),
    /// first telling libgomp to use `threads` threads (it reads its environment when loaded).
    /// Later calls return the first call's result whatever their arguments.
    pub(crate) fn load_once(
        threads: usize,
        lib: Option<&str>,
    ) -> Result<&'static OneDnn, &'static str> {
        INSTANCE
            .get_or_init(|| {
                super::configure_openmp(threads);
                Self::load(lib.unwrap_or("libdnnl.so.2"))
            })
            .as_ref()
            .map_err(|e| e.as_str())
    }

    /// Short description for logs, e.g. "oneDNN 2.6.3 (OpenMP, 2 threads, isa avx512_core_amx)".
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Whether oneDNN runs AMX kernels here (its effective ISA includes AMX tiles).
    pub fn has_amx(&self) -> bool {
        isa_name(self.isa).contains("amx")
    }

    /// Whether oneDNN runs its AVX-512 (or AMX) kernels here.
    pub fn has_avx512(&self) -> bool {
        isa_name(self.isa).starts_with("avx512")
    }

    /// Whether oneDNN's effective ISA is AVX-512 with native BF16 (`avx512_core_bf16`).
    pub fn has_avx512_bf16(&self) -> bool {
        let isa = isa_name(self.isa);
        isa.starts_with("avx512") && isa.contains("bf16")
    }
}

/// Weight elements handed to [`PackedWeight::new`], row-major `[N, K]`.
pub enum WeightData<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    /// int8 weights multiplied by u8 activations into int32 (`u8 × s8 → s32`, exact).
    S8(&'a [i8]),
}

/// Per-thread scratch reused across calls (it keeps its largest size).
#[derive(Default)]
struct Scratch {
    /// bf16 copy of `x` for bf16 weights.
    x_bf16: Vec<bf16>,
    /// oneDNN scratchpad (user scratchpad mode).
    pad: AlignedBuf,
    /// Plain copy of the weight, only on the (never observed) unpack fallback.
    plain_w: AlignedBuf,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `M` used to let oneDNN choose the blocked weight layout.
const PACK_M: usize = 128;
/// Cached primitives per weight.
const CACHE_CAP: usize = 16;

/// A matmul primitive for one `(M, has_bias)` with the descriptors its arguments need.
struct Matmul {
    prim: Prim,
    src_md: dnnl_memory_desc_t,
    w_md: dnnl_memory_desc_t,
    dst_md: dnnl_memory_desc_t,
    bias_md: Option<dnnl_memory_desc_t>,
    /// The blocked layout was refused for this M: unpack the weight to plain on each call.
    unpack_weights: bool,
}

#[derive(Default)]
struct Cache {
    tick: u64,
    entries: HashMap<(usize, bool), (Arc<Matmul>, u64)>,
}

/// A Linear weight `[N, K]` (PyTorch layout, row-major, `y = x · Wᵀ`) reordered once into the
/// blocked layout oneDNN prefers. Holds its own copy; the original is not needed afterwards.
pub struct PackedWeight {
    dnn: &'static OneDnn,
    n: usize,
    k: usize,
    /// Data type of the weight (`DNNL_F32`, `DNNL_BF16` or `DNNL_S8`).
    dt: dnnl_data_type_t,
    /// Source and destination types: the weight's type and f32, or u8 and s32 for int8.
    src_dt: dnnl_data_type_t,
    dst_dt: dnnl_data_type_t,
    /// Layout of `data`.
    w_md: dnnl_memory_desc_t,
    /// The plain `[K, N]` `ba` layout (= the caller's `[N, K]` row-major).
    plain_md: dnnl_memory_desc_t,
    blocked: bool,
    data: AlignedBuf,
    cache: Mutex<Cache>,
}

// SAFETY: `data` is written only in `new`; afterwards it is only read by oneDNN. The primitive
// cache is behind a mutex, and the descriptors are plain bytes.
unsafe impl Send for PackedWeight {}
// SAFETY: see `Send`.
unsafe impl Sync for PackedWeight {}

impl PackedWeight {
    /// Reorders `w` (`[N, K]` row-major) into oneDNN's preferred layout for this CPU.
    pub fn new(
        dnn: &'static OneDnn,
        w: WeightData<'_>,
        n: usize,
        k: usize,
    ) -> Result<Self, OneDnnError> {
        let (dt, src_ptr, len) = match w {
            WeightData::F32(s) => (DNNL_F32, s.as_ptr() as *mut c_void, s.len()),
            WeightData::Bf16(s) => (DNNL_BF16, s.as_ptr() as *mut c_void, s.len()),
            WeightData::S8(s) => (DNNL_S8, s.as_ptr() as *mut c_void, s.len()),
        };
        let (src_dt, dst_dt) = if dt == DNNL_S8 {
            (DNNL_U8, DNNL_S32)
        } else {
            (dt, DNNL_F32)
        };
        if n == 0 || k == 0 || len != n * k {
            return Err(OneDnnError::Shape(format!(
                "weight has {len} elements, expected N·K = {n}·{k}"
            )));
        }
        let plain_md = dnn.md(k, n, dt, DNNL_BA)?;
        let any_md = dnn.md(k, n, dt, DNNL_FORMAT_TAG_ANY)?;
        let mut pw = PackedWeight {
            dnn,
            n,
            k,
            dt,
            src_dt,
            dst_dt,
            w_md: plain_md,
            plain_md,
            blocked: false,
            data: AlignedBuf::default(),
            cache: Mutex::new(Cache::default()),
        };
        let probe = match pw.create(PACK_M, false, &any_md) {
            Err(OneDnnError::Call { status, .. }) if status == DNNL_UNIMPLEMENTED => {
                return Err(OneDnnError::Unimplemented {
                    dtype: dtype_name(dt),
                })
            }
            r => r?,
        };
        if probe.prim.impl_name.starts_with("ref") {
            return Err(OneDnnError::ReferenceOnly {
                impl_name: probe.prim.impl_name.clone(),
            });
        }
        // SAFETY: `pd` is live; the returned descriptor is owned by it and copied immediately.
        let chosen =
            unsafe { (dnn.api.primitive_desc_query_md)(probe.prim.pd, DNNL_QUERY_WEIGHTS_MD, 0) };
        if chosen.is_null() {
            return Err(OneDnnError::Call {
                call: "dnnl_primitive_desc_query_md(weights)",
                status: 2,
            });
        }
        // SAFETY: non-null pointer to a descriptor owned by the live `pd`.
        let chosen = unsafe { *chosen };
        // The decode path (M = 1) must accept the layout; otherwise keep the plain one.
        if let Ok(m1) = pw.create(1, false, &chosen) {
            pw.w_md = chosen;
            // SAFETY: both are valid descriptors.
            pw.blocked = unsafe { (dnn.api.memory_desc_equal)(&chosen, &plain_md) } == 0;
            pw.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entries
                .insert((1, false), (Arc::new(m1), 0));
        }
        // SAFETY: valid descriptor.
        let bytes = unsafe { (dnn.api.memory_desc_get_size)(&pw.w_md) };
        let dst_ptr = pw.data.ensure(bytes);
        let reorder = Prim::create(dnn, None, Some((&plain_md, &pw.w_md)))?;
        SCRATCH.with(|s| {
            let pad = &mut s.borrow_mut().pad;
            // `src_ptr` is the caller's weight (read only); `dst_ptr` has room for `bytes`.
            dnn.run(
                &reorder,
                &[
                    (DNNL_ARG_FROM, &plain_md, src_ptr),
                    (DNNL_ARG_TO, &pw.w_md, dst_ptr),
                ],
                pad,
            )
        })?;
        Ok(pw)
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Whether the weight is stored in a blocked (non-plain) layout.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Bytes held by the packed copy (including oneDNN's padding).
    pub fn packed_bytes(&self) -> usize {
        self.data.bytes()
    }

    /// `y[M,N] = x[M,K] · Wᵀ (+ bias[N])` with f32 accumulation; `x` and `y` are f32 row-major.
    /// For bf16 weights `x` is rounded to bf16 (round-to-nearest-even) first; `y` is f32.
    pub fn matmul(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<(), OneDnnError> {
        self.matmul_src(Source::F32(x), m, bias, y)
    }

    /// `y[M,N] = x[M,K] · Wᵀ` for int8 weights: `x` u8 row-major, `y` the exact int32 sums.
    pub fn matmul_u8(&self, x: &[u8], m: usize, y: &mut [i32]) -> Result<(), OneDnnError> {
        if self.dt != DNNL_S8 {
            return Err(OneDnnError::Shape("a u8 source needs int8 weights".into()));
        }
        let (n, k) = (self.n, self.k);
        if m == 0 || x.len() != m * k || y.len() != m * n {
            return Err(OneDnnError::Shape(format!(
                "x has {} elements and y {}, expected M·K = {m}·{k} and M·N = {m}·{n} (M ≥ 1)",
                x.len(),
                y.len()
            )));
        }
        self.execute(m, x.as_ptr() as *mut c_void, Dest::S32(y), None)
    }

    /// Whether this weight multiplies a bf16 source (then callers may convert `x` once with
    /// [`Source::Bf16`] and share it between several weights or slices).
    pub fn wants_bf16_source(&self) -> bool {
        self.dt == DNNL_BF16
    }

    /// As [`PackedWeight::matmul`], with the source given as f32 or already as bf16.
    pub fn matmul_src(
        &self,
        x: Source<'_>,
        m: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<(), OneDnnError> {
        let (n, k) = (self.n, self.k);
        let x_len = match x {
            Source::F32(v) => v.len(),
            Source::Bf16(v) => v.len(),
        };
        if m == 0 || x_len != m * k || y.len() != m * n {
            return Err(OneDnnError::Shape(format!(
                "x has {x_len} elements and y {}, expected M·K = {m}·{k} and M·N = {m}·{n} (M ≥ 1)",
                y.len()
            )));
        }
        if let Some(b) = bias.filter(|b| b.len() != n) {
            return Err(OneDnnError::Shape(format!(
                "bias has {} elements, expected N = {n}",
                b.len()
            )));
        }
        if self.dt == DNNL_S8 {
            return Err(OneDnnError::Shape(
                "int8 weights take a u8 source (matmul_u8)".into(),
            ));
        }
        let src = SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            Ok(match (self.dt == DNNL_BF16, x) {
                (true, Source::Bf16(xb)) => xb.as_ptr() as *mut c_void,
                (true, Source::F32(x)) => {
                    if s.x_bf16.len() < x.len() {
                        s.x_bf16.resize(x.len(), bf16::ZERO);
                    }
                    let xb = &mut s.x_bf16[..x.len()];
                    xb.convert_from_f32_slice(x);
                    xb.as_mut_ptr().cast()
                }
                // oneDNN only reads the source; the cast to *mut is what its C API takes.
                (false, Source::F32(x)) => x.as_ptr() as *mut c_void,
                (false, Source::Bf16(_)) => {
                    return Err(OneDnnError::Shape(
                        "an f32 weight needs an f32 source".into(),
                    ))
                }
            })
        })?;
        // `src` points into the caller's `x` or this thread's scratch, which `execute` (same
        // thread) does not resize.
        self.execute(m, src, Dest::F32(y), bias)
    }

    /// Runs the cached primitive for `m` rows on `src` (already in the source type) into `y`.
    fn execute(
        &self,
        m: usize,
        src: *mut c_void,
        y: Dest<'_>,
        bias: Option<&[f32]>,
    ) -> Result<(), OneDnnError> {
        let mm = self.primitive(m, bias.is_some())?;
        let dst = match y {
            Dest::F32(y) => y.as_mut_ptr().cast(),
            Dest::S32(y) => y.as_mut_ptr().cast(),
        };
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            let w = if mm.unpack_weights {
                self.unpack(&mut s.plain_w, &mut s.pad)?
            } else {
                self.data.0.as_ptr() as *mut c_void
            };
            let mut args = vec![
                (DNNL_ARG_SRC, &mm.src_md, src),
                (DNNL_ARG_WEIGHTS, &mm.w_md, w),
                (DNNL_ARG_DST, &mm.dst_md, dst),
            ];
            if let (Some(md), Some(b)) = (&mm.bias_md, bias) {
                args.push((DNNL_ARG_BIAS, md, b.as_ptr() as *mut c_void));
            }
            self.dnn.run(&mm.prim, &args, &mut s.pad)
        })
    }

    /// Which implementation oneDNN picked for `M` rows (impl info string), e.g.
    /// `brg:avx512_core_amx`.
    pub fn impl_name(&self, m: usize) -> Result<String, OneDnnError> {
        let mm = self.primitive(m.max(1), false)?;
        let mut name = mm.prim.impl_name.clone();
        if mm.unpack_weights {
            name.push_str(" (weights unpacked per call)");
        }
        Ok(name)
    }

    /// The weight back in the caller's layout (`[N, K]` row-major), as raw bytes of its type.
    pub fn plain_bytes(&self) -> Result<Vec<u8>, OneDnnError> {
        let (mut buf, mut pad) = (AlignedBuf::default(), AlignedBuf::default());
        let elt = self.elem_size();
        let ptr = self.unpack(&mut buf, &mut pad)?;
        // SAFETY: `unpack` wrote n·k elements of `elt` bytes at `ptr`, inside `buf`.
        Ok(unsafe { std::slice::from_raw_parts(ptr as *const u8, self.n * self.k * elt) }.to_vec())
    }

    fn elem_size(&self) -> usize {
        match self.dt {
            DNNL_BF16 => 2,
            DNNL_S8 => 1,
            _ => 4,
        }
    }

    /// Forces the slow fallback for `M` (weight unpacked to plain on every call); for tests.
    #[doc(hidden)]
    pub fn force_unpack_fallback(&self, m: usize, has_bias: bool) -> Result<(), OneDnnError> {
        let mm = self.plain_fallback(m, has_bias)?;
        self.insert((m, has_bias), mm);
        Ok(())
    }
}
