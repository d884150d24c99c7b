//! AVX-512 blocks for [`super::paged`]'s prefill loops. They run the plain loops'
//! arithmetic (a multiply then an add per term, never fused; terms in the same order), so every
//! score and output has the plain loops' bits; they only lay the work out so that it stays in
//! vector registers. Written with intrinsics because the auto-vectoriser, given the same loops
//! over arrays, vectorised across the wrong dimension (gathers and scatters, 4× slower).
//! Against the plain loops: 1024-token prefill 136.4 / 132.1 → 159.6 / 173.3 tok/s (2B, Zen 5 VM).

use crate::engine::kernels::bf16::Precision;

/// Keys per `dots16` call, values per vector.
pub const LANES: usize = 16;

/// Whether the blocks can run: AVX512F present. The kernel plan's [`PagedAttention`] decides
/// whether they do.
///
/// [`PagedAttention`]: crate::engine::kernels::runtime::plan::PagedAttention
pub fn available() -> bool {
    crate::engine::kernels::runtime::caps::CpuCaps::detect().avx512f
}

/// Query rows per [`dots_lines`] call.
pub const LINES: usize = 4;
/// Keys per [`dots_lines`] call (two vectors).
pub const KEYS: usize = 2 * LANES;

/// The plain loop's `dot(q, k)` of up to [`LINES`] query rows with [`KEYS`] keys at once, from a
/// transposed tile: key `l`'s value `d` at `kt[d·stride + l]`. Out row `r`, lane `l` = the score
/// of `q_rows[r]` and key `l`, finished as the plain loop finishes it: `round(round(dot)·scale)`
/// with the rounding of `p` ([`crate::engine::kernels::bf16::Precision::round`]; none in f32).
///
/// The plain loop keeps 16 lane sums (lane i adds the terms d ≡ i mod 16 in increasing d) and
/// then adds them to 0 in lane order, then the tail (0.0 when `hd % 16 == 0`). Here lane sum i
/// of every (row, key) is finished before lane sum i + 1 starts and is added to the running
/// total at once: the same additions in the same order, so the same bits, but only two
/// registers per (row, 16 keys) are live, so several rows share every key load. Must only be
/// called when [`available`] is true.
pub fn dots_lines(
    q_rows: &[&[f32]],
    kt: &[f32],
    stride: usize,
    scale: f32,
    p: Precision,
) -> [[f32; KEYS]; LINES] {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(
        available(),
        "AVX-512 attention block on a CPU without AVX512F"
    );
    assert!((1..=LINES).contains(&q_rows.len()));
    let hd = q_rows[0].len();
    assert!(hd > 0 && hd.is_multiple_of(LANES) && q_rows.iter().all(|q| q.len() == hd));
    assert!(stride >= KEYS && kt.len() >= (hd - 1) * stride + KEYS);
    #[cfg(target_arch = "x86_64")]
    {
        let mut out = [[0f32; KEYS]; LINES];
        let mut qp = [q_rows[0].as_ptr(); LINES];
        for (p, q) in qp.iter_mut().zip(q_rows) {
            *p = q.as_ptr();
        }
        let (chunks, k) = (hd / LANES, kt.as_ptr());
        let o = (&mut out, scale, p);
        // SAFETY: the CPU has AVX512F (asserted); the asserts bound every read: hd values of
        // each query row, and KEYS values at each of the hd rows `d·stride` of `kt`.
        unsafe {
            match q_rows.len() {
                1 => imp::dots_lines::<1>(qp, chunks, k, stride, o),
                2 => imp::dots_lines::<2>(qp, chunks, k, stride, o),
                3 => imp::dots_lines::<3>(qp, chunks, k, stride, o),
                _ => imp::dots_lines::<4>(qp, chunks, k, stride, o),
            }
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("available() is false off x86_64")
}

/// `acc += p[j]·v_j` for keys j < `n` in key order, `v_j = tile[j·hd..][..hd]`, `hd =
/// acc.len()` ∈ {64, 128}: the plain loop's repeated axpy with the accumulator held in registers.
/// Must only be called when [`available`] is true.
pub fn axpy_keys(acc: &mut [f32], p: &[f32], tile: &[f32], n: usize) {
    assert!(
        available(),
        "AVX-512 attention block on a CPU without AVX512F"
    );
    let hd = acc.len();
    assert!(p.len() >= n && tile.len() >= n * hd);
    #[cfg(target_arch = "x86_64")]
    {
        let (a, pp, t) = (acc.as_mut_ptr(), p.as_ptr(), tile.as_ptr());
        match hd {
            // SAFETY: the CPU has AVX512F (asserted); `acc` holds hd values, `p` n and `tile`
            // n·hd (asserted), exactly what the block reads and writes.
            128 => unsafe { imp::axpy_keys::<8>(a, pp, t, n) },
            // SAFETY: as above.
            64 => unsafe { imp::axpy_keys::<4>(a, pp, t, n) },
            _ => panic!("axpy_keys: head size {hd} (64 or 128 only)"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::LANES;
    use crate::engine::kernels::avx512_math::{round_bf16, round_f16};
    use crate::engine::kernels::bf16::Precision;

    /// # Safety
    /// The CPU must have AVX512F; `q[r]` (r < R) readable for `chunks`·16 values, `kt` for 32
    /// values at each offset `d·stride`, d < chunks·16.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_lines<const R: usize>(
        q: [*const f32; super::LINES],
        chunks: usize,
        kt: *const f32,
        stride: usize,
        (out, scale, p): (&mut [[f32; super::KEYS]; super::LINES], f32, Precision),
    ) {
        let zero = _mm512_setzero_ps();
        let mut total = [[zero; 2]; R];
        for i in 0..LANES {
            let mut lane = [[zero; 2]; R];
            for c in 0..chunks {
                let d = c * LANES + i;
                let k0 = _mm512_loadu_ps(kt.add(d * stride));
                let k1 = _mm512_loadu_ps(kt.add(d * stride + LANES));
                for (r, lr) in lane.iter_mut().enumerate() {
                    let qd = _mm512_set1_ps(*q[r].add(d));
                    lr[0] = _mm512_add_ps(lr[0], _mm512_mul_ps(qd, k0));
                    lr[1] = _mm512_add_ps(lr[1], _mm512_mul_ps(qd, k1));
                }
            }
            for (t, l) in total.iter_mut().zip(&lane) {
                t[0] = _mm512_add_ps(t[0], l[0]);
                t[1] = _mm512_add_ps(t[1], l[1]);
            }
        }
        let scale = _mm512_set1_ps(scale);
        let finish = |t: __m512| {
            // The plain loop's `+ tail` (0.0): turns a -0.0 sum into +0.0, as there.
            let dot = _mm512_add_ps(t, zero);
            match p {
                Precision::Bf16 => round_bf16(_mm512_mul_ps(round_bf16(dot), scale)),
                Precision::F16 => round_f16(_mm512_mul_ps(round_f16(dot), scale)),
                Precision::F32 => _mm512_mul_ps(dot, scale),
            }
        };
        for (o, t) in out.iter_mut().zip(&total) {
            _mm512_storeu_ps(o.as_mut_ptr(), finish(t[0]));
            _mm512_storeu_ps(o.as_mut_ptr().add(LANES), finish(t[1]));
        }
    }

    /// # Safety
    /// The CPU must have AVX512F; `acc` readable and writable for NC·16 values, `p` readable for
    /// `n` values, `tile` for n·NC·16.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy_keys<const NC: usize>(
        acc: *mut f32,
        p: *const f32,
        tile: *const f32,
        n: usize,
    ) {
        let hd = NC * LANES;
        let mut a = [_mm512_setzero_ps(); NC];
        for (c, ac) in a.iter_mut().enumerate() {
            *ac = _mm512_loadu_ps(acc.add(c * LANES));
        }
        for j in 0..n {
            let pj = _mm512_set1_ps(*p.add(j));
            let v = tile.add(j * hd);
            for (c, ac) in a.iter_mut().enumerate() {
                *ac = _mm512_add_ps(*ac, _mm512_mul_ps(pj, _mm512_loadu_ps(v.add(c * LANES))));
            }
        }
        for (c, ac) in a.iter().enumerate() {
            _mm512_storeu_ps(acc.add(c * LANES), *ac);
        }
    }
}
