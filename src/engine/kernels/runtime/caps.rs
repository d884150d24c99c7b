//! What this machine can run, detected once: the CPU's name, core count and the instruction-set
//! features our kernels rest on, plus the one measurement that decides between two kernels (the
//! `vdpbf16ps` vs FMA rates). Every `is_x86_feature_detected!` and CPUID read of the crate is
//! here, so a kernel's "can I run?" and the plan's "which one runs?" read the same facts.
//!
//! Fields are public so tests can describe another CPU to [`super::plan::KernelPlan::resolve`];
//! a plan built from such caps can be inspected but not activated ([`super::plan::KernelPlan::fits`]
//! checks it against [`CpuCaps::detect`]).

use std::sync::OnceLock;

use super::simd::Level;

/// The CPU's features and measured rates (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuCaps {
    /// `model name` of `/proc/cpuinfo` ("unknown" elsewhere).
    pub model: String,
    /// Logical CPUs this process may run on.
    pub cores: usize,
    /// The widest [`Level`] the CPU has: AVX-512F/BW/VL + FMA, AVX2 + FMA, or the baseline.
    pub isa: Level,
    /// AVX2 + FMA + F16C: the FMA panels' AVX2 tiles (F16C widens f16 panels).
    pub avx2_fma_f16c: bool,
    /// AVX2 alone: the int8 AVX2 tiles (`vpmaddwd`).
    pub avx2: bool,
    /// AVX-512F: the FMA panels' AVX-512 tiles, the paged-attention blocks.
    pub avx512f: bool,
    /// AVX-512F + AVX512_BF16 (`vdpbf16ps`): the dot GEMM and the bf16 attention tiles.
    pub avx512_bf16: bool,
    /// AVX-512F/BW + AVX512_VNNI (`vpdpbusd`): the int8 VNNI tiles.
    pub avx512_vnni: bool,
    /// AMX-TILE and Linux granted this process the tile data state.
    pub amx_tiles: bool,
    /// AMX-BF16 (`tdpbf16ps`) on usable tiles.
    pub amx_bf16: bool,
    /// AMX-INT8 (`tdpbusd`) on usable tiles.
    pub amx_int8: bool,
    /// FLOP/s of one core's `vfmadd231ps` and `vdpbf16ps` (best of three short runs, ≈ 0.1 ms),
    /// measured only where both exist.
    pub fma_dot_rates: Option<(f64, f64)>,
}

impl CpuCaps {
    /// This machine's caps, detected on the first call (CPUID serialises the core and exits to
    /// the hypervisor in a VM, so nothing reads it per call).
    pub fn detect() -> &'static CpuCaps {
        static CAPS: OnceLock<CpuCaps> = OnceLock::new();
        CAPS.get_or_init(detect)
    }

    /// An x86-64 CPU with none of the features above (one core): what the portable paths need.
    pub fn baseline() -> CpuCaps {
        CpuCaps {
            model: "x86-64 baseline".into(),
            cores: 1,
            isa: Level::Base,
            avx2_fma_f16c: false,
            avx2: false,
            avx512f: false,
            avx512_bf16: false,
            avx512_vnni: false,
            amx_tiles: false,
            amx_bf16: false,
            amx_int8: false,
            fma_dot_rates: None,
        }
    }

    /// `vdpbf16ps` below 3/4 of the FMA FLOP rate, or absent. Measured on this project's Xeon
    /// VM (family 6 model 207): 86 GFLOP/s per core against 350 for `vfmadd231ps`, where the FMA
    /// panels run prefill and the vision tower ~3× faster than a `vdpbf16ps` GEMM.
    pub fn dot_is_slow(&self) -> bool {
        self.fma_dot_rates.is_none_or(|(fma, dot)| dot < 0.75 * fma)
    }

    /// The features that matter to the kernels, as `/proc/cpuinfo` spells them.
    pub fn flags(&self) -> Vec<&'static str> {
        [
            (self.isa >= Level::Avx2, "avx2+fma"),
            (self.avx2_fma_f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.isa == Level::Avx512, "avx512bw+vl"),
            (self.avx512_vnni, "avx512_vnni"),
            (self.avx512_bf16, "avx512_bf16"),
            (self.amx_tiles, "amx_tile"),
            (self.amx_bf16, "amx_bf16"),
            (self.amx_int8, "amx_int8"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

fn detect() -> CpuCaps {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    CpuCaps {
        model,
        cores,
        ..features()
    }
}

#[cfg(target_arch = "x86_64")]
fn features() -> CpuCaps {
    let avx512f = is_x86_feature_detected!("avx512f");
    let bw_vl = is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl");
    let fma = is_x86_feature_detected!("fma");
    let avx2 = is_x86_feature_detected!("avx2");
    let isa = if avx512f && bw_vl && fma {
        Level::Avx512
    } else if avx2 && fma {
        Level::Avx2
    } else {
        Level::Base
    };
    let avx512_bf16 = avx512f && is_x86_feature_detected!("avx512bf16");
    let amx = read_amx_cpuid();
    // The permission is asked only where the tiles exist; it is what executing them rests on.
    let amx_tiles = amx.tile && super::amx::request_permission();
    CpuCaps {
        model: String::new(),
        cores: 1,
        isa,
        avx2_fma_f16c: avx2 && fma && is_x86_feature_detected!("f16c"),
        avx2,
        avx512f,
        avx512_bf16,
        avx512_vnni: avx512f
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni"),
        amx_tiles,
        amx_bf16: amx_tiles && amx.bf16,
        amx_int8: amx_tiles && amx.int8,
        // SAFETY: both features were detected just above.
        fma_dot_rates: avx512_bf16.then(|| unsafe { rates::fma_and_dot() }),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn features() -> CpuCaps {
    CpuCaps::baseline()
}

#[cfg(target_arch = "x86_64")]
struct AmxCpuid {
    tile: bool,
    bf16: bool,
    int8: bool,
}

/// CPUID leaf 7: EDX bit 22 AMX-BF16, bit 24 AMX-TILE, bit 25 AMX-INT8.
#[cfg(target_arch = "x86_64")]
fn read_amx_cpuid() -> AmxCpuid {
    use std::arch::x86_64::__cpuid_count;
    // Leaf 7 only where the leaf-0 maximum says it exists.
    let edx = if __cpuid_count(0, 0).eax >= 7 {
        __cpuid_count(7, 0).edx
    } else {
        0
    };
    let tile = edx & (1 << 24) != 0;
    AmxCpuid {
        tile,
        bf16: tile && edx & (1 << 22) != 0,
        int8: tile && edx & (1 << 25) != 0,
    }
}

/// The `vfmadd231ps` / `vdpbf16ps` rate probe behind [`CpuCaps::dot_is_slow`].
#[cfg(target_arch = "x86_64")]
mod rates {
    use std::arch::x86_64::*;

    const RATE_ITERS: usize = 20_000;

    /// Seconds for RATE_ITERS × 8 independent `vfmadd231ps`.
    ///
    /// # Safety
    /// AVX-512F must be present.
    #[target_feature(enable = "avx512f")]
    unsafe fn time_fma() -> f64 {
        let x = _mm512_set1_ps(std::hint::black_box(0.999));
        let y = _mm512_set1_ps(std::hint::black_box(1e-3));
        let mut c = [_mm512_setzero_ps(); 8];
        let t = std::time::Instant::now();
        for _ in 0..RATE_ITERS {
            for ci in c.iter_mut() {
                *ci = _mm512_fmadd_ps(*ci, x, y);
            }
        }
        std::hint::black_box(c.iter().map(|v| _mm512_reduce_add_ps(*v)).sum::<f32>());
        t.elapsed().as_secs_f64()
    }

    /// Seconds for RATE_ITERS × 8 independent `vdpbf16ps`.
    ///
    /// # Safety
    /// AVX-512F and AVX512-BF16 must be present.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn time_dot() -> f64 {
        let bits = _mm512_set1_epi32(std::hint::black_box(0x3f00_3e80));
        // SAFETY: __m512i and __m512bh are both 64 plain bytes.
        let x: __m512bh = unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) };
        let mut c = [_mm512_setzero_ps(); 8];
        let t = std::time::Instant::now();
        for _ in 0..RATE_ITERS {
            for ci in c.iter_mut() {
                *ci = _mm512_dpbf16_ps(*ci, x, x);
            }
        }
        std::hint::black_box(c.iter().map(|v| _mm512_reduce_add_ps(*v)).sum::<f32>());
        t.elapsed().as_secs_f64()
    }

    /// FLOP/s of `vfmadd231ps` and of `vdpbf16ps` on one core (best of three short runs).
    ///
    /// # Safety
    /// AVX-512F and AVX512-BF16 must be present.
    pub unsafe fn fma_and_dot() -> (f64, f64) {
        let (mut fma, mut dot) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..3 {
            // SAFETY: the caller guarantees both features.
            unsafe {
                fma = fma.min(time_fma());
                dot = dot.min(time_dot());
            }
        }
        let ops = (RATE_ITERS * 8) as f64;
        (ops * 32.0 / fma, ops * 64.0 / dot)
    }
}
