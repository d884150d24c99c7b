//! oneDNN matmul binding vs a naive f64 reference. Skips (passes) where oneDNN is unavailable.

mod common;

use common::reference;
use half::bf16;
use qwen3vl::engine::kernels::gemm::onednn::{OneDnn, OneDnnError, PackedWeight, WeightData};

/// Deterministic values in [-1, 1) (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next()).collect()
    }
}

use qwen3vl::engine::kernels::gemm::onednn_runs_bf16;

fn dnn() -> Option<&'static OneDnn> {
    match OneDnn::get_or_reason() {
        Ok(d) => {
            eprintln!("using {}", d.describe());
            Some(d)
        }
        Err(why) => {
            eprintln!("skipping: oneDNN unavailable ({why})");
            None
        }
    }
}

/// Checks |y − ref| ≤ rel·Σ|x·w| + 1e-6 everywhere; returns the worst error / Σ|x·w|.
fn assert_close(what: &str, y: &[f32], r: &[f64], mag: &[f64], rel: f64) -> f64 {
    let mut worst = 0f64;
    for (i, ((&yv, &rv), &mv)) in y.iter().zip(r).zip(mag).enumerate() {
        let err = (yv as f64 - rv).abs();
        let tol = rel * mv + 1e-6;
        assert!(
            err <= tol,
            "{what}: element {i}: got {yv}, want {rv} (err {err:.3e} > tol {tol:.3e})"
        );
        worst = worst.max(err / (mv + 1e-30));
    }
    worst
}

fn report(what: &str, worst: f64) {
    eprintln!("{what}: ok, worst error / Σ|x·w| = {worst:.2e}");
}

fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&f| bf16::from_f32(f).to_f32()).collect()
}

/// One shape, f32 and bf16 weights, with and without bias.
fn check_shape(dnn: &'static OneDnn, ms: &[usize], n: usize, k: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let wb: Vec<bf16> = w.iter().map(|&f| bf16::from_f32(f)).collect();
    let pf = PackedWeight::new(dnn, WeightData::F32(&w), n, k).expect("pack f32");
    let pb = match PackedWeight::new(dnn, WeightData::Bf16(&wb), n, k) {
        Ok(pb) => Some(pb),
        // AVX2-only CPUs: oneDNN has no bf16 matmul, and says so with a typed error.
        Err(e) if !onednn_runs_bf16() && e.no_fast_kernel() => None,
        Err(e) => panic!("pack bf16: {e}"),
    };
    assert_eq!((pf.n(), pf.k()), (n, k));
    let w_rounded = bf16_round(&w);
    for &m in ms {
        let x = rng.vec(m * k);
        let x_rounded = bf16_round(&x);
        for bias in [None, Some(b.as_slice())] {
            let tag = format!("M={m} N={n} K={k} bias={}", bias.is_some());
            let mut y = vec![f32::NAN; m * n];

            pf.matmul(&x, m, bias, &mut y).expect("f32 matmul");
            let (r, mag) = reference(&x, &w, bias, m, n, k);
            let name = format!("f32 [{}] {tag}", pf.impl_name(m).unwrap());
            report(&name, assert_close(&name, &y, &r, &mag, 1e-5));

            let Some(pb) = &pb else { continue };
            assert_eq!((pb.n(), pb.k()), (n, k));
            y.fill(f32::NAN);
            pb.matmul(&x, m, bias, &mut y).expect("bf16 matmul");
            // Tight: against the exact product of the bf16-rounded operands (f32 accumulation only).
            let (r, mag) = reference(&x_rounded, &w_rounded, bias, m, n, k);
            let name = format!("bf16 [{}] {tag}", pb.impl_name(m).unwrap());
            report(&name, assert_close(&name, &y, &r, &mag, 1e-5));
            // Loose: against the f32 product, at bf16 precision (2⁻⁸ per operand).
            let (r, mag) = reference(&x, &w, bias, m, n, k);
            let name = format!("{name} vs f32");
            report(&name, assert_close(&name, &y, &r, &mag, 1e-2));
        }
    }
}

#[test]
fn odd_shapes() {
    let Some(dnn) = dnn() else { return };
    check_shape(dnn, &[1, 3, 17, 128, 300], 37, 100, 1);
    check_shape(dnn, &[1, 2, 5, 33], 1, 1, 2);
    check_shape(dnn, &[1, 7, 64], 129, 65, 3);
}

#[test]
fn mlp_sized() {
    let Some(dnn) = dnn() else { return };
    check_shape(dnn, &[1, 64], 6144, 2048, 4);
}

/// x is rounded to bf16 with round-to-nearest-even, not truncated.
#[test]
fn bf16_source_rounding() {
    let Some(dnn) = dnn() else { return };
    if !onednn_runs_bf16() {
        eprintln!("skipping: oneDNN has no bf16 matmul on this CPU");
        return;
    }
    let one = [bf16::ONE];
    let p = PackedWeight::new(dnn, WeightData::Bf16(&one), 1, 1).unwrap();
    let u = 2f32.powi(-8); // half an ulp of bf16 at 1.0
    let cases = [
        (1.0 + u, 1.0),                            // tie → even (down)
        (1.0 + 3.0 * u, 1.0 + 4.0 * u),            // tie → even (up)
        (1.0 + u + 2f32.powi(-20), 1.0 + 2.0 * u), // above the tie → up
        (-(1.0 + 3.0 * u), -(1.0 + 4.0 * u)),
    ];
    let x: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let mut y = vec![0f32; x.len()];
    p.matmul(&x, x.len(), None, &mut y).unwrap();
    for ((xv, want), got) in cases.iter().zip(&y) {
        assert_eq!(*got, *want, "x = {xv}");
    }
}

#[test]
fn unpack_fallback_and_cache() {
    let Some(dnn) = dnn() else { return };
    let (n, k) = (70, 90);
    let mut rng = Rng(5);
    let w = rng.vec(n * k);
    let b = rng.vec(n);
    let p = PackedWeight::new(dnn, WeightData::F32(&w), n, k).unwrap();
    p.force_unpack_fallback(9, true).unwrap();
    p.force_unpack_fallback(9, false).unwrap();
    let name = p.impl_name(9).unwrap();
    eprintln!("blocked layout: {}; M=9: {name}", p.is_blocked());
    assert_eq!(name.contains("unpacked"), p.is_blocked());
    // More distinct M values than the cache holds, then revisit the early ones.
    for m in (1..=40).chain(1..=10) {
        let x = rng.vec(m * k);
        let mut y = vec![0f32; m * n];
        p.matmul(&x, m, Some(&b), &mut y).unwrap();
        let (r, mag) = reference(&x, &w, Some(&b), m, n, k);
        assert_close(&format!("M={m}"), &y, &r, &mag, 1e-5);
    }
}

#[test]
fn concurrent_calls() {
    let Some(dnn) = dnn() else { return };
    if !onednn_runs_bf16() {
        eprintln!("skipping: oneDNN has no bf16 matmul on this CPU");
        return;
    }
    let (n, k) = (300, 200);
    let mut rng = Rng(6);
    let w = rng.vec(n * k);
    let wb: Vec<bf16> = w.iter().map(|&f| bf16::from_f32(f)).collect();
    let p = PackedWeight::new(dnn, WeightData::Bf16(&wb), n, k).unwrap();
    let w_rounded = bf16_round(&w);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (p, w_rounded) = (&p, &w_rounded);
            s.spawn(move || {
                let mut rng = Rng(100 + t);
                for i in 0..20 {
                    let m = [1, 16, 33][(i + t as usize) % 3];
                    let x = bf16_round(&rng.vec(m * k));
                    let mut y = vec![0f32; m * n];
                    p.matmul(&x, m, None, &mut y).unwrap();
                    let (r, mag) = reference(&x, w_rounded, None, m, n, k);
                    assert_close(&format!("thread {t} M={m}"), &y, &r, &mag, 1e-5);
                }
            });
        }
    });
}

#[test]
fn shape_errors() {
    let Some(dnn) = dnn() else { return };
    let w = vec![0f32; 6];
    assert!(matches!(
        PackedWeight::new(dnn, WeightData::F32(&w), 4, 2),
        Err(OneDnnError::Shape(_))
    ));
    let p = PackedWeight::new(dnn, WeightData::F32(&w), 3, 2).unwrap();
    let mut y = vec![0f32; 3];
    assert!(matches!(
        p.matmul(&[0.0; 3], 1, None, &mut y),
        Err(OneDnnError::Shape(_))
    ));
    assert!(matches!(
        p.matmul(&[0.0; 2], 1, Some(&[0.0; 2]), &mut y),
        Err(OneDnnError::Shape(_))
    ));
    assert!(matches!(
        p.matmul(&[], 0, None, &mut []),
        Err(OneDnnError::Shape(_))
    ));
    p.matmul(&[0.0; 2], 1, Some(&[1.0; 3]), &mut y).unwrap();
    assert_eq!(y, [1.0; 3]);
}

/// A weight handed over in row blocks packs slice by slice (never all rows at once) and computes
/// exactly what the same weight handed over whole does.
#[test]
fn row_blocks_pack_like_the_whole_weight() {
    use qwen3vl::engine::kernels::bf16::Precision;
    use qwen3vl::engine::kernels::gemm::onednn_backend;
    use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
    use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
    use std::sync::Mutex;

    let Some(backend) = onednn_backend(0) else {
        eprintln!("skipping: oneDNN unavailable");
        return;
    };
    let (n, k, m) = (300, 72, 5);
    let mut rng = Rng(7);
    let w: Vec<bf16> = rng.vec(n * k).into_iter().map(bf16::from_f32).collect();
    let bias = rng.vec(n);
    let x = bf16_round(&rng.vec(m * k));
    // bf16 where oneDNN runs it, else the same values as f32 weights.
    let bf16_weights = onednn_runs_bf16();
    let store = |v: &[bf16]| {
        if bf16_weights {
            WeightStore::Bf16(v.to_vec())
        } else {
            WeightStore::F32(v.iter().map(|b| b.to_f32()).collect())
        }
    };
    let asked = Mutex::new(Vec::new());
    let rows = |r0: usize, r1: usize| {
        asked.lock().unwrap().push((r0, r1));
        Ok(store(&w[r0 * k..r1 * k]))
    };
    let p = if bf16_weights {
        Precision::Bf16
    } else {
        Precision::F32
    };
    let parts = Linear::from_rows(&rows, n, k, Some(bias.clone()), p, Some(&*backend)).unwrap();
    let whole = Linear::new(store(&w), n, k, Some(bias), p, Some(&*backend)).unwrap();
    assert!(
        parts.backend_name().starts_with("oneDNN"),
        "{}",
        parts.backend_name()
    );
    let pool = ThreadPool::global();
    assert_eq!(
        parts.apply(pool, &x, m).unwrap(),
        whole.apply(pool, &x, m).unwrap()
    );
    let mut asked = asked.into_inner().unwrap();
    // The backend first reads one row to learn the stored format (f16 weights are not oneDNN's);
    // after that probe, the blocks are what is packed.
    if asked.first() == Some(&(0, 1)) {
        asked.remove(0);
    }
    // One block per compute thread (≥ 64 rows each).
    assert_eq!(asked.len(), pool.threads().min(n / 64), "{asked:?}");
    let mut covered = 0;
    for &(a, b) in &asked {
        assert_eq!(
            a, covered,
            "row blocks must tile [0, n) in order: {asked:?}"
        );
        covered = b;
    }
    assert_eq!(covered, n);
}

/// Where `onednn_row_invariant` says so, each row's result is independent of how many rows share
/// the call (batched and single requests then agree bit for bit).
#[test]
fn a_row_gets_the_same_bits_in_any_batch() {
    let Some(d) = dnn() else { return };
    if !qwen3vl::engine::kernels::gemm::onednn_row_invariant() {
        eprintln!(
            "skipping: oneDNN is not row-invariant here ({})",
            d.describe()
        );
        return;
    }
    let (n, k, big) = (192, 320, 40);
    let mut rng = Rng(11);
    let w: Vec<bf16> = rng.vec(n * k).into_iter().map(bf16::from_f32).collect();
    let x = bf16_round(&rng.vec(big * k));
    let w_f32: Vec<f32> = w.iter().map(|b| b.to_f32()).collect();
    let weights = [
        PackedWeight::new(d, WeightData::Bf16(&w), n, k).ok(),
        PackedWeight::new(d, WeightData::F32(&w_f32), n, k).ok(),
    ];
    for p in weights.iter().flatten() {
        let mut all = vec![0f32; big * n];
        p.matmul(&x, big, None, &mut all).unwrap();
        for m in [1, 2, 3, 17] {
            let mut y = vec![0f32; m * n];
            p.matmul(&x[..m * k], m, None, &mut y).unwrap();
            assert_eq!(y, all[..m * n], "M = {m} ({})", p.impl_name(m).unwrap());
        }
    }
}
