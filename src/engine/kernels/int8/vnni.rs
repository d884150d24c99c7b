//! AVX512-VNNI tiles for the int8 GEMM in [`super`]: `vpdpbusd` multiplies 4 u8
//! activations (broadcast) by a 64-byte weight group (16 channels × 4 k) and accumulates in
//! int32. Up to 6 rows × 4 panels = 24 accumulators stay in registers; weights are loaded once
//! per group and reused across the rows, so batched decode streams the weights once.
//! 799 GOP/s at 6144 × 2048, M = 128 (oneDNN bf16: 434 GFLOP/s); 2B W8A8 decode 19.1 tok/s
//! against 7.18 in bf16 (EPYC VM).

use super::{PANEL, STRIP_PANELS, TILE_ROWS};

/// Whether the VNNI tiles can run: AVX512F/BW/VNNI present. The kernel plan's
/// [`Int8Gemm`](crate::engine::kernels::runtime::plan::Int8Gemm) decides whether they do.
pub fn available() -> bool {
    cpu_has_them()
}

/// The CPU has AVX512F/BW/VNNI (what the tiles' safety rests on).
fn cpu_has_them() -> bool {
    crate::engine::kernels::runtime::caps::CpuCaps::detect().avx512_vnni
}

/// Groups ahead that [`tile`] prefetches when asked to (one 64-byte line per panel per group):
/// about a DRAM latency of work ahead.
pub const PREFETCH_GROUPS: usize = 32;

/// `acc[i·64 + c] = Σ_k a[i·kp + k] · w[c][k]` for `rows` ≤ 6 rows and `np` ≤ 4 panels.
/// `prefetch`: the first row tile over a strip streams its weights from memory; it prefetches
/// [`PREFETCH_GROUPS`] ahead so the loads overlap the dot products (later tiles hit the caches).
/// Must only be called when [`available`] is true.
#[allow(clippy::too_many_arguments)]
pub fn tile(
    a: &[u8],
    kp: usize,
    rows: usize,
    b: &[i8],
    np: usize,
    groups: usize,
    prefetch: bool,
    acc: &mut [i32; TILE_ROWS * PANEL * STRIP_PANELS],
) {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(
        cpu_has_them(),
        "VNNI tile called on a CPU without AVX512-VNNI"
    );
    assert!((1..=TILE_ROWS).contains(&rows) && (1..=STRIP_PANELS).contains(&np));
    assert!(a.len() >= rows * kp && kp >= groups * 4);
    assert!(b.len() >= np * groups * PANEL * 4);
    #[cfg(target_arch = "x86_64")]
    {
        let pf = if prefetch { PREFETCH_GROUPS } else { 0 };
        macro_rules! go {
            ($($r:literal),*) => {
                match (rows, np) {
                    $(
                        ($r, 1) => imp::tile::<$r, 1>(a.as_ptr(), kp, b.as_ptr(), groups, pf, acc),
                        ($r, 2) => imp::tile::<$r, 2>(a.as_ptr(), kp, b.as_ptr(), groups, pf, acc),
                        ($r, 3) => imp::tile::<$r, 3>(a.as_ptr(), kp, b.as_ptr(), groups, pf, acc),
                        ($r, 4) => imp::tile::<$r, 4>(a.as_ptr(), kp, b.as_ptr(), groups, pf, acc),
                    )*
                    _ => unreachable!("checked above"),
                }
            };
        }
        // SAFETY: `available()` guarantees AVX512F/BW/VNNI; the asserts above guarantee that every
        // row read (rows·kp bytes of `a`) and every panel read (np·groups·64 bytes of `b`) is in
        // bounds, and `acc` holds TILE_ROWS × 64 values.
        unsafe { go!(1, 2, 3, 4, 5, 6) }
    }
}

/// Most rows of a [`tile_tall`].
pub const TALL_ROWS: usize = 16;

/// One panel (16 channels) for 7..=16 rows in a single pass over its weights: each 64-byte weight
/// group is loaded once and used by every row (the 6-row tiles would stream the weights from
/// memory once and then sit on cached copies while memory idles). `at` holds the activations
/// group-major: word (g, i) = the 4 bytes of row i for group g at `at[(g·rows + i)·4..]`.
/// Writes out[i·64 + c] for i < rows, c < 16. Must only be called when [`available`] is true.
pub fn tile_tall(at: &[u8], rows: usize, panel: &[i8], groups: usize, out: &mut [i32]) {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(
        cpu_has_them(),
        "VNNI tile called on a CPU without AVX512-VNNI"
    );
    assert!((1..=TALL_ROWS).contains(&rows));
    assert!(at.len() >= groups * rows * 4 && panel.len() >= groups * PANEL * 4);
    assert!(out.len() >= (rows - 1) * PANEL * STRIP_PANELS + PANEL);
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($($r:literal),*) => {
                match rows {
                    $($r => imp::tile_tall::<$r>(at.as_ptr(), panel.as_ptr(), groups, out.as_mut_ptr()),)*
                    _ => unreachable!("checked above"),
                }
            };
        }
        // SAFETY: `available()` guarantees AVX512F/BW/VNNI; the asserts bound every read of `at`
        // (groups·rows words) and `panel` (groups·64 bytes) and every write of `out`.
        unsafe { go!(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16) }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{PANEL, STRIP_PANELS};

    /// # Safety
    /// The CPU must have AVX512F/BW/VNNI; `a` must be readable for MR rows of `kp` bytes, `b` for
    /// NR panels of `groups·64` bytes, and `acc` writable for MR rows of 64 values.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile<const MR: usize, const NR: usize>(
        a: *const u8,
        kp: usize,
        b: *const i8,
        groups: usize,
        prefetch: usize,
        acc: *mut [i32; super::TILE_ROWS * PANEL * STRIP_PANELS],
    ) {
        let panel_bytes = groups * PANEL * 4;
        let mut c = [[_mm512_setzero_si512(); NR]; MR];
        for g in 0..groups {
            if prefetch != 0 {
                for j in 0..NR {
                    // A prefetch never faults; past the panel's end it only wastes a line.
                    let line = b.wrapping_add(j * panel_bytes + (g + prefetch) * 64);
                    _mm_prefetch::<_MM_HINT_T0>(line.cast());
                }
            }
            let mut w = [_mm512_setzero_si512(); NR];
            for (j, wj) in w.iter_mut().enumerate() {
                // SAFETY: panel j, group g lies inside the NR panels the caller guarantees.
                *wj = unsafe { _mm512_loadu_si512(b.add(j * panel_bytes + g * 64).cast()) };
            }
            for (i, ci) in c.iter_mut().enumerate() {
                // SAFETY: 4 bytes at row i, column 4g are inside the row (4g + 4 ≤ kp).
                let av = unsafe { (a.add(i * kp + 4 * g) as *const i32).read_unaligned() };
                let av = _mm512_set1_epi32(av);
                for (cij, wj) in ci.iter_mut().zip(&w) {
                    *cij = _mm512_dpbusd_epi32(*cij, av, *wj);
                }
            }
        }
        for (i, ci) in c.iter().enumerate() {
            for (j, cij) in ci.iter().enumerate() {
                // SAFETY: row i < MR ≤ TILE_ROWS, panel j < NR ≤ STRIP_PANELS: inside `acc`.
                unsafe {
                    _mm512_storeu_si512(
                        (*acc)
                            .as_mut_ptr()
                            .add(i * PANEL * STRIP_PANELS + j * PANEL)
                            .cast(),
                        *cij,
                    )
                }
            }
        }
    }

    /// # Safety
    /// AVX512F/BW/VNNI present; `at` readable for `groups·MR` words, `panel` for `groups·64`
    /// bytes, `out` writable at i·64 + c for i < MR, c < 16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile_tall<const MR: usize>(
        at: *const u8,
        panel: *const i8,
        groups: usize,
        out: *mut i32,
    ) {
        let mut c = [_mm512_setzero_si512(); MR];
        for g in 0..groups {
            // A prefetch never faults; past the panel's end it only wastes a line.
            let ahead = panel.wrapping_add((g + super::PREFETCH_GROUPS) * 64);
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            // SAFETY: group g of the panel is inside the caller's `panel`.
            let w = unsafe { _mm512_loadu_si512(panel.add(g * 64).cast()) };
            for (i, ci) in c.iter_mut().enumerate() {
                // SAFETY: word (g, i) is inside the caller's `at`.
                let av = unsafe { (at.add((g * MR + i) * 4) as *const i32).read_unaligned() };
                *ci = _mm512_dpbusd_epi32(*ci, _mm512_set1_epi32(av), w);
            }
        }
        for (i, ci) in c.iter().enumerate() {
            // SAFETY: row i < MR, 16 values at i·64: inside the caller's `out`.
            unsafe { _mm512_storeu_si512(out.add(i * PANEL * STRIP_PANELS).cast(), *ci) };
        }
    }
}
