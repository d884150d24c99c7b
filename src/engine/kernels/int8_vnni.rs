//! AVX512-VNNI tiles for the int8 GEMM in [`super::int8`]: `vpdpbusd` multiplies 4 u8
//! activations (broadcast) by a 64-byte weight group (16 channels × 4 k) and accumulates in
//! int32. Up to 6 rows × 4 panels = 24 accumulators stay in registers; weights are loaded once
//! per group and reused across the rows, so batched decode streams the weights once.

use super::int8::{PANEL, STRIP_PANELS, TILE_ROWS};

/// Whether the VNNI tiles can run: AVX512-VNNI present and the dispatch level not lowered
/// (`QWEN3VL_ISA=avx2|base` or [`super::simd::force_level`] select the portable path).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static CPU: OnceLock<bool> = OnceLock::new();
        let cpu = *CPU.get_or_init(|| {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        });
        cpu && super::simd::level() == super::simd::Level::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// acc[i·64 + c] = Σ_k a[i·kp + k] · w[c][k] for `rows` ≤ 6 rows and `np` ≤ 4 panels.
/// Must only be called when [`available`] is true.
pub fn tile(
    a: &[u8],
    kp: usize,
    rows: usize,
    b: &[i8],
    np: usize,
    groups: usize,
    acc: &mut [i32; TILE_ROWS * PANEL * STRIP_PANELS],
) {
    assert!(available(), "VNNI tile called on a CPU without AVX512-VNNI");
    assert!((1..=TILE_ROWS).contains(&rows) && (1..=STRIP_PANELS).contains(&np));
    assert!(a.len() >= rows * kp && kp >= groups * 4);
    assert!(b.len() >= np * groups * PANEL * 4);
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($($r:literal),*) => {
                match (rows, np) {
                    $(
                        ($r, 1) => imp::tile::<$r, 1>(a.as_ptr(), kp, b.as_ptr(), groups, acc),
                        ($r, 2) => imp::tile::<$r, 2>(a.as_ptr(), kp, b.as_ptr(), groups, acc),
                        ($r, 3) => imp::tile::<$r, 3>(a.as_ptr(), kp, b.as_ptr(), groups, acc),
                        ($r, 4) => imp::tile::<$r, 4>(a.as_ptr(), kp, b.as_ptr(), groups, acc),
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

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{PANEL, STRIP_PANELS};

    /// # Safety
    /// The CPU must have AVX512F/BW/VNNI; `a` must be readable for MR rows of `kp` bytes, `b` for
    /// NR panels of `groups·64` bytes, and `acc` writable for MR rows of 64 values.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile<const MR: usize, const NR: usize>(
        a: *const u8,
        kp: usize,
        b: *const i8,
        groups: usize,
        acc: *mut [i32; super::TILE_ROWS * PANEL * STRIP_PANELS],
    ) {
        let panel_bytes = groups * PANEL * 4;
        let mut c = [[_mm512_setzero_si512(); NR]; MR];
        for g in 0..groups {
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
}
