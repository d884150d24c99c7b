//! W8A8 int8 linear: the VNNI tiles, the AVX2 tiles and the portable path agree bit for bit, all
//! equal the msModelSlim inference formulas computed independently here, and quantization error
//! stays small — for odd shapes (M = 1, 3, 7, 11, 16, 17; K not a multiple of 4, N not a multiple
//! of 16).

use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::int8::onednn::{self, Int8Engine};
use qwen3vl::engine::kernels::int8::vnni;
use qwen3vl::engine::kernels::int8::{quantize_row, Int8Linear, Int8Weight};
use qwen3vl::engine::kernels::linear::{Linear, WeightStore};
use qwen3vl::engine::kernels::runtime::plan::{active, Int8Gemm, KernelPlan};
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::kernels::runtime::simd::Level;

fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

// M = 7..=16 take the one-pass tall tiles on VNNI (7 with a single k group, 16 with the most
// rows, 11 with N across several strips and a partial panel).
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 64, 16),
    (1, 70, 33),
    (3, 131, 100),
    (17, 64, 200),
    (6, 257, 64),
    (7, 1, 5),
    (11, 150, 300),
    (16, 2050, 70),
    (16, 8, 16),
    (40, 96, 129),
    // AMX: three row tiles (a 2×2 block and a 1×2 one), K = 64·3 + 4 (a partial reduction tile
    // read into the slack), five panels (a partial strip).
    (35, 196, 80),
    (2, 4096, 64),
];

fn quantized_weight(n: usize, k: usize, seed: u32) -> (Vec<f32>, Vec<i8>, Vec<f32>) {
    let w = noise(n * k, seed);
    let mut q = vec![0i8; n * k];
    let s: Vec<f32> = w
        .chunks_exact(k)
        .zip(q.chunks_exact_mut(k))
        .map(|(wr, qr)| quantize_row(wr, qr))
        .collect();
    (w, q, s)
}

/// Independent implementation of msModelSlim W8A8_DYNAMIC (spec §3.2).
fn reference_dynamic(x: &[f32], q: &[i8], s_w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for t in 0..m {
        let row = &x[t * k..(t + 1) * k];
        let s_t = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        let xq: Vec<i32> = row
            .iter()
            .map(|v| {
                if s_t == 0.0 {
                    0
                } else {
                    (v / s_t).round_ties_even() as i32
                }
            })
            .collect();
        for c in 0..n {
            let acc: i32 = (0..k).map(|i| xq[i] * q[c * k + i] as i32).sum();
            y[t * n + c] = acc as f32 * (s_t * s_w[c]);
        }
    }
    y
}

/// Independent implementation of msModelSlim W8A8 static (spec §2.3).
#[allow(clippy::too_many_arguments)]
fn reference_static(
    x: &[f32],
    q: &[i8],
    s_x: f32,
    z_x: i32,
    deq: &[f32],
    qbias: &[i32],
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for t in 0..m {
        let xq: Vec<i32> = x[t * k..(t + 1) * k]
            .iter()
            .map(|v| {
                (v * (1.0 / s_x) + z_x as f32)
                    .round_ties_even()
                    .clamp(-128.0, 127.0) as i32
            })
            .collect();
        for c in 0..n {
            let acc: i32 = (0..k).map(|i| xq[i] * q[c * k + i] as i32).sum();
            y[t * n + c] = (acc + qbias[c]) as f32 * deq[c];
        }
    }
    y
}

/// The best tiles this CPU has and the portable path; on the way, the AVX-512 VNNI tiles (where
/// the best are AMX-INT8) and the AVX2 tiles (where the CPU has AVX2) must give the best tiles'
/// bits too.
fn both_paths(f: impl Fn() -> Vec<f32>) -> (Vec<f32>, Vec<f32>) {
    let best = active();
    let fast = best.run(&f);
    if best.int8_gemm == Int8Gemm::Amx {
        let vnni = KernelPlan {
            int8_gemm: Int8Gemm::Vnni,
            ..best
        };
        let vnni = vnni.run(&f);
        assert_eq!(vnni, fast, "VNNI tiles differ from the AMX tiles");
    }
    let avx2 = KernelPlan::at_level(Level::Avx2);
    assert!(avx2.int8_gemm <= Int8Gemm::Avx2);
    let avx2 = avx2.run(&f);
    let base = KernelPlan::at_level(Level::Base);
    assert_eq!(base.int8_gemm, Int8Gemm::Portable);
    let portable = base.run(&f);
    assert_eq!(avx2, fast, "AVX2 tiles differ from the best tiles");
    (fast, portable)
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: index {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn int8_paths_are_bit_identical_and_match_the_formulas() {
    let pool = ThreadPool::global();
    eprintln!("VNNI available: {}", vnni::available());
    for (si, &(m, k, n)) in SHAPES.iter().enumerate() {
        let seed = si as u32 * 10;
        let (_, q, s_w) = quantized_weight(n, k, seed + 1);
        let mut x = noise(m * k, seed + 2);
        // One all-zero row: its dynamic scale is 0 and its output must be exactly the bias.
        if m > 2 {
            x[k..2 * k].fill(0.0);
        }
        let bias = noise(n, seed + 3);

        let dynamic = Int8Linear::dynamic(
            Int8Weight::pack(&q, n, k).unwrap(),
            s_w.clone(),
            Some(bias.clone()),
        )
        .unwrap();
        let run = |l: &Int8Linear| {
            let mut y = vec![f32::NAN; m * n];
            l.forward(pool, &x, m, &mut y).unwrap();
            y
        };
        let (fast, portable) = both_paths(|| run(&dynamic));
        assert_eq!(fast, portable, "dynamic {m}×{k}×{n}: VNNI ≠ portable");
        let mut want = reference_dynamic(&x, &q, &s_w, m, n, k);
        for (r, row) in want.chunks_exact_mut(n).enumerate() {
            row.iter_mut().zip(&bias).for_each(|(v, b)| *v += b);
            if m > 2 && r == 1 {
                assert_eq!(&fast[n..2 * n], &bias[..], "all-zero row gives the bias");
            }
        }
        assert_close(&fast, &want, 1e-5, &format!("dynamic {m}×{k}×{n}"));

        let (s_x, z_x) = (2.0 / 255.0, -3);
        let deq: Vec<f32> = s_w.iter().map(|s| s * s_x).collect();
        let qbias: Vec<i32> = (0..n as i32).map(|c| c * 37 % 500 - 250).collect();
        let stat = Int8Linear::static_per_tensor(
            Int8Weight::pack(&q, n, k).unwrap(),
            s_x,
            z_x,
            deq.clone(),
            qbias.clone(),
        )
        .unwrap();
        let (fast, portable) = both_paths(|| run(&stat));
        assert_eq!(fast, portable, "static {m}×{k}×{n}: VNNI ≠ portable");
        let want = reference_static(&x, &q, s_x, z_x, &deq, &qbias, m, n, k);
        assert_close(&fast, &want, 1e-5, &format!("static {m}×{k}×{n}"));
    }
}

#[test]
fn quantized_linear_is_close_to_the_float_linear() {
    let pool = ThreadPool::global();
    for &(m, k, n) in &SHAPES {
        if k < 32 {
            continue; // too few terms for a meaningful relative error
        }
        let w = noise(n * k, 7);
        let x = noise(m * k, 8);
        let float = Linear::new(
            WeightStore::F32(w.clone()),
            n,
            k,
            None,
            Precision::F32,
            None,
        )
        .unwrap();
        let q = Linear::quantized(pool, &WeightStore::F32(w), n, k, None, Precision::F32).unwrap();
        let want = float.apply(pool, &x, m).unwrap();
        let got = q.apply(pool, &x, m).unwrap();
        let err: f32 = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum();
        let norm: f32 = want.iter().map(|w| w * w).sum();
        let rel = (err / norm).sqrt();
        assert!(rel < 0.02, "{m}×{k}×{n}: relative L2 error {rel}");
        assert!(q.backend_name().starts_with("int8"));
    }
}

#[test]
fn packing_round_trips_and_rejects_bad_shapes() {
    let (_, q, _) = quantized_weight(37, 23, 5);
    let p = Int8Weight::pack(&q, 37, 23).unwrap();
    assert_eq!(p.unpack().unwrap(), q);
    assert!(Int8Weight::pack(&q, 36, 23).is_err());
    assert!(Int8Linear::dynamic(p, vec![1.0; 3], None).is_err());
    let p = Int8Weight::pack(&q, 37, 23).unwrap();
    assert!(Int8Linear::static_per_tensor(p, 0.0, 0, vec![1.0; 37], vec![0; 37]).is_err());
    let mut bad = noise(23, 1);
    bad[3] = f32::INFINITY;
    let err = Linear::quantized(
        ThreadPool::global(),
        &WeightStore::F32(bad),
        1,
        23,
        None,
        Precision::F32,
    );
    assert!(err.is_err(), "non-finite weights are rejected");
}

/// The AMX-INT8 tier: oneDNN's int8 matmul holds the weight and yields the same int32 sums, so
/// every output bit equals the panels'. This CPU may lack AMX; oneDNN then runs its VNNI kernels
/// through the same code path (the only part AMX changes is inside oneDNN).
#[test]
fn onednn_int8_engine_equals_the_panels() {
    if !onednn::exact_here() {
        eprintln!("oneDNN with exact int8 (AMX or AVX512-VNNI) unavailable: skipped");
        return;
    }
    let pool = ThreadPool::global();
    let mut used = 0;
    for (si, &(m, k, n)) in SHAPES
        .iter()
        .chain(&[(33, 300, 200), (128, 512, 640)])
        .enumerate()
    {
        let seed = si as u32 * 10 + 5;
        let (_, q, s_w) = quantized_weight(n, k, seed + 1);
        let x = noise(m * k, seed + 2);
        let bias = noise(n, seed + 3);
        let layer = |engine| {
            let w = Int8Weight::pack_with(&q, n, k, engine).unwrap();
            Int8Linear::dynamic(w, s_w.clone(), Some(bias.clone())).unwrap()
        };
        let (panels, dnn) = (layer(Int8Engine::Panels), layer(Int8Engine::OneDnn));
        assert_eq!(panels.weight().engine(), Int8Engine::Panels);
        if dnn.weight().engine() != Int8Engine::OneDnn {
            // oneDNN offers only a reference kernel for this shape: the panels keep it.
            continue;
        }
        used += 1;
        assert!(dnn.describe().contains("oneDNN"), "{}", dnn.describe());
        assert_eq!(dnn.weight().unpack().unwrap(), q, "{m}×{k}×{n}: unpack");
        let run = |l: &Int8Linear| {
            let mut y = vec![f32::NAN; m * n];
            l.forward(pool, &x, m, &mut y).unwrap();
            y
        };
        assert_eq!(run(&dnn), run(&panels), "{m}×{k}×{n}: oneDNN ≠ panels");
        // Shared input (q/k/v style): both engines in one group.
        let mut a = vec![0f32; m * n];
        let mut b = vec![0f32; m * n];
        Int8Linear::forward_group(pool, &[&dnn, &panels], &x, m, &mut [&mut a, &mut b]).unwrap();
        assert_eq!(a, b, "{m}×{k}×{n}: grouped oneDNN ≠ panels");
    }
    assert!(used >= 2, "oneDNN took only {used} of the shapes");
}

#[test]
fn extreme_codes_are_exact_on_every_path() {
    // Weights at -128/127 against activation codes at -128/127 (u8 0/255): the largest products,
    // where a saturating i16 instruction (`vpmaddubsw`) would go wrong.
    let pool = ThreadPool::global();
    for &(m, k, n) in &[(1usize, 260usize, 40usize), (5, 1024, 16), (9, 36, 70)] {
        let q: Vec<i8> = (0..n * k)
            .map(|i| if (i / 3 + i / k) % 2 == 0 { -128 } else { 127 })
            .collect();
        let x: Vec<f32> = (0..m * k)
            .map(|i| if (i / 2) % 3 == 0 { -10.0 } else { 10.0 })
            .collect();
        let (s_x, z_x) = (1.0 / 64.0, 0);
        let deq = vec![1e-4f32; n];
        let qbias = vec![0i32; n];
        let stat = Int8Linear::static_per_tensor(
            Int8Weight::pack(&q, n, k).unwrap(),
            s_x,
            z_x,
            deq.clone(),
            qbias.clone(),
        )
        .unwrap();
        let run = || {
            let mut y = vec![f32::NAN; m * n];
            stat.forward(pool, &x, m, &mut y).unwrap();
            y
        };
        let (fast, portable) = both_paths(run);
        assert_eq!(fast, portable, "{m}×{k}×{n}: fast tiles ≠ portable");
        let want = reference_static(&x, &q, s_x, z_x, &deq, &qbias, m, n, k);
        assert_close(&fast, &want, 1e-6, &format!("extreme {m}×{k}×{n}"));
    }
}
