//! AVX-512 blocks for [`super::paged_attention`]'s prefill loops. They run the plain loops'
//! arithmetic (a multiply then an add per term, never fused; terms in the same order), so every
//! score and output has the plain loops' bits; they only lay the work out so that it stays in
//! vector registers. Written with intrinsics because the auto-vectoriser, given the same loops
//! over arrays, vectorised across the wrong dimension (gathers and scatters, 4× slower).

/// Keys per [`dots16`] call, values per vector.
pub const LANES: usize = 16;

/// Whether the blocks can run: AVX512F present and the dispatch level not lowered.
pub fn available() -> bool {
    cpu_has_it() && super::simd::level() == super::simd::Level::Avx512
}

/// The CPU has AVX512F (what the blocks' safety rests on, whatever the level).
fn cpu_has_it() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static CPU: OnceLock<bool> = OnceLock::new();
        *CPU.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The plain loop's `dot(q, k)` for 16 keys at once, from a transposed tile: key `l`'s value `d`
/// at `kt[d·stride + l]`. Lane `i` of the plain loop's 16-lane accumulator becomes register
/// `a[i]` (one lane per key), and the registers are then summed in the plain loop's lane order
/// (`Σ acc + tail`, the tail 0.0 when `q.len() % 16 == 0`). Must only be called when
/// [`available`] is true.
pub fn dots16(q: &[f32], kt: &[f32], stride: usize) -> [f32; LANES] {
    // The CPU check, not the level: another thread may lower the level after the caller chose.
    assert!(
        cpu_has_it(),
        "AVX-512 attention block on a CPU without AVX512F"
    );
    assert!(!q.is_empty() && q.len().is_multiple_of(LANES) && stride >= LANES);
    assert!(kt.len() >= (q.len() - 1) * stride + LANES);
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has AVX512F (asserted); the asserts bound every read: q.len() values of
        // `q`, and 16 values at each of the q.len() rows `d·stride` of `kt`.
        unsafe { imp::dots16(q.as_ptr(), q.len() / LANES, kt.as_ptr(), stride) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("cpu_has_it() is false off x86_64")
}

/// `acc += p[j]·v_j` for keys j < `n` in key order, `v_j = tile[j·hd..][..hd]`, `hd =
/// acc.len()` ∈ {64, 128}: the plain loop's repeated axpy with the accumulator held in registers.
/// Must only be called when [`available`] is true.
pub fn axpy_keys(acc: &mut [f32], p: &[f32], tile: &[f32], n: usize) {
    assert!(
        cpu_has_it(),
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

    /// # Safety
    /// The CPU must have AVX512F; `q` readable for `chunks`·16 values, `kt` for 16 values at each
    /// offset `d·stride`, d < chunks·16.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots16(
        q: *const f32,
        chunks: usize,
        kt: *const f32,
        stride: usize,
    ) -> [f32; LANES] {
        let mut a = [_mm512_setzero_ps(); LANES];
        for c in 0..chunks {
            for (i, ai) in a.iter_mut().enumerate() {
                let d = c * LANES + i;
                let k = _mm512_loadu_ps(kt.add(d * stride));
                *ai = _mm512_add_ps(*ai, _mm512_mul_ps(_mm512_set1_ps(*q.add(d)), k));
            }
        }
        let mut s = _mm512_setzero_ps();
        for ai in a {
            s = _mm512_add_ps(s, ai);
        }
        // The plain loop's `+ tail` (0.0): turns a -0.0 sum into +0.0, as there.
        s = _mm512_add_ps(s, _mm512_setzero_ps());
        let mut out = [0f32; LANES];
        _mm512_storeu_ps(out.as_mut_ptr(), s);
        out
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
