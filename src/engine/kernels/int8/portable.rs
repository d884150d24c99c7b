//! The portable tier of the int8 GEMM in [`super`]: plain integer loops the compiler vectorises
//! at the plan's dispatch level. The reference the other tiers' int32 sums are tested against,
//! and the path of CPUs without AVX2.

use super::{PANEL, STRIP_PANELS, TILE_ROWS};
use crate::engine::kernels::runtime::simd::multiversion;

multiversion! {
    /// acc[i][c] = Σ_k a[i][k]·w[c][k] for `rows` rows and `np` panels (portable integer GEMM).
    pub(super) fn tile(
        a: &[u8],
        kp: usize,
        rows: usize,
        b: &[i8],
        np: usize,
        groups: usize,
        acc: &mut [i32; TILE_ROWS * PANEL * STRIP_PANELS],
    ) {
        for i in 0..rows {
            let ar = &a[i * kp..(i + 1) * kp];
            for p in 0..np {
                let mut sum = [0i32; PANEL];
                let panel = &b[p * groups * PANEL * 4..(p + 1) * groups * PANEL * 4];
                for (av, w) in ar.chunks_exact(4).zip(panel.chunks_exact(PANEL * 4)) {
                    for j in 0..PANEL {
                        for kk in 0..4 {
                            sum[j] += av[kk] as i32 * w[j * 4 + kk] as i32;
                        }
                    }
                }
                acc[i * PANEL * STRIP_PANELS + p * PANEL..][..PANEL].copy_from_slice(&sum);
            }
        }
    }
}
