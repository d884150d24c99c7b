//! The element-wise kernels against their plain formulas, at every dispatch level.

use super::*;

/// Rows normalised side by side give each row exactly what it gets alone, for every block
/// remainder and both precisions.
#[test]
fn rms_norm_rows_equal_one_row_at_a_time() {
    let mut seed = 3u32;
    let mut next = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
    };
    for dim in [1usize, 64, 128, 2048] {
        let w: Vec<f32> = (0..dim).map(|_| next() * 2.0).collect();
        for rows in [1usize, 7, 8, 9, 17, 24] {
            let x: Vec<f32> = (0..rows * dim).map(|_| next() * 9.0).collect();
            for p in [Precision::Bf16, Precision::F32, Precision::F16] {
                let mut one = x.clone();
                for row in one.chunks_exact_mut(dim) {
                    rms_norm_row(row, &w, 1e-6, p);
                }
                let mut many = x.clone();
                rms_norm_rows(&mut many, dim, &w, 1e-6, p);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&many), bits(&one), "dim {dim}, {rows} rows, {p:?}");
                let mut pooled = x.clone();
                rms_norm(ThreadPool::global(), &mut pooled, dim, &w, 1e-6, p);
                assert_eq!(
                    bits(&pooled),
                    bits(&one),
                    "pool, dim {dim}, {rows} rows, {p:?}"
                );
            }
        }
    }
}

/// Small calls stay on the caller, large ones split; both hand each row to `f` exactly once,
/// with the matching rows of every buffer.
#[test]
fn par_row_blocks_covers_every_row_once() {
    let pool = ThreadPool::global();
    for rows in [1usize, 7, 40_000] {
        let (wa, wb) = (3usize, 2usize);
        let mut a = vec![0f32; rows * wa];
        let mut b = vec![0f32; rows * wb + 5];
        par_row_blocks(
            pool,
            rows,
            [&mut a[..], &mut b[..]],
            [wa, wb],
            &|r0, r1, [a, b]: [&mut [f32]; 2]| {
                assert_eq!((a.len(), b.len()), ((r1 - r0) * wa, (r1 - r0) * wb));
                for (i, r) in (r0..r1).enumerate() {
                    a[i * wa..(i + 1) * wa]
                        .iter_mut()
                        .for_each(|x| *x += r as f32);
                    b[i * wb..(i + 1) * wb].iter_mut().for_each(|x| *x += 1.0);
                }
            },
        );
        for r in 0..rows {
            assert!(a[r * wa..(r + 1) * wa].iter().all(|&x| x == r as f32));
        }
        assert!(b[..rows * wb].iter().all(|&x| x == 1.0));
        assert!(b[rows * wb..].iter().all(|&x| x == 0.0));
    }
}

/// The vectorised rotate-half equals the textbook loop (d < half takes −v[d + half], the rest
/// v[d − half]) bit for bit, for both roundings and precisions, at every dispatch level.
#[test]
fn rotate_half_equals_the_plain_loop() {
    use crate::engine::kernels::runtime::plan::{active, KernelPlan};
    use crate::engine::kernels::runtime::simd::Level;
    let hd = 128;
    let v: Vec<f32> = (0..hd)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173)
        .collect();
    let cos: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.05).cos()).collect();
    let sin: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.05).sin()).collect();
    for p in [Precision::F32, Precision::Bf16, Precision::F16] {
        for each_op in [false, true] {
            let half = hd / 2;
            let want: Vec<f32> = (0..hd)
                .map(|d| {
                    let rot = if d < half { -v[d + half] } else { v[d - half] };
                    if each_op {
                        p.round(p.round(v[d] * cos[d]) + p.round(rot * sin[d]))
                    } else {
                        p.round(v[d] * cos[d] + rot * sin[d])
                    }
                })
                .collect();
            for level in [None, Some(Level::Avx2), Some(Level::Base)] {
                let plan = level.map_or_else(active, KernelPlan::at_level);
                let mut got = v.clone();
                plan.run(|| rotate_half(&mut got, &cos, &sin, p, each_op));
                assert_eq!(got, want, "{p:?}, each_op {each_op}, level {level:?}");
            }
        }
    }
}

/// The lane-parallel f64 moments equal the plain sequential f64 formula (to the f32 they are
/// cast to), at every dispatch level; the fused add + norm equals add then in-place norm.
#[test]
fn layer_norm_variants_equal_the_plain_formula() {
    use crate::engine::kernels::runtime::plan::{active, KernelPlan};
    use crate::engine::kernels::runtime::simd::Level;
    let pool = ThreadPool::global();
    let dim = 1000; // not a multiple of the 16 lanes
    let rows = 37;
    let x: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 7919 % 1009) as f32 - 504.0) * 0.0131 + 3.0)
        .collect();
    let y: Vec<f32> = (0..rows * dim)
        .map(|i| ((i * 104_729 % 997) as f32 - 498.0) * 0.0077)
        .collect();
    let w: Vec<f32> = (0..dim).map(|i| 0.5 + (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..dim).map(|i| (i % 7) as f32 * 0.01 - 0.03).collect();
    for p in [Precision::F32, Precision::Bf16, Precision::F16] {
        let want: Vec<f32> = x
            .chunks_exact(dim)
            .flat_map(|row| {
                let n = dim as f64;
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                let rstd = 1.0 / (var as f32 + 1e-6).sqrt();
                let shift = -(mean as f32) * rstd;
                row.iter()
                    .zip(&w)
                    .zip(&b)
                    .map(move |((v, wi), bi)| p.round(v.mul_add(rstd, shift).mul_add(*wi, *bi)))
                    .collect::<Vec<_>>()
            })
            .collect();
        for level in [None, Some(Level::Avx2), Some(Level::Base)] {
            let plan = level.map_or_else(active, KernelPlan::at_level);
            let (inplace, into, (xa, ya), (xb, yb)) = plan.run(|| {
                let mut inplace = x.clone();
                layer_norm(pool, &mut inplace, dim, &w, &b, 1e-6, p);
                let mut into = vec![0f32; x.len()];
                layer_norm_into(pool, &x, &mut into, dim, &w, &b, 1e-6, p);
                let (mut xa, mut ya) = (y.clone(), x.clone());
                add_layer_norm(pool, &mut xa, &mut ya, dim, &w, &b, 1e-6, p);
                let mut xb = y.clone();
                add_inplace(&mut xb, &x, p);
                let mut yb = xb.clone();
                layer_norm(pool, &mut yb, dim, &w, &b, 1e-6, p);
                (inplace, into, (xa, ya), (xb, yb))
            });
            assert_eq!(inplace, want, "{p:?} {level:?}: in place");
            assert_eq!(into, want, "{p:?} {level:?}: into");
            assert_eq!((xa, ya), (xb, yb), "{p:?} {level:?}: add + norm");
        }
    }
}
