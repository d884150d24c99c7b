//! Shared helpers for tests that replay the committed Hugging Face fixtures.
#![allow(dead_code)]

pub mod bf16_gemm;

use std::path::PathBuf;

use qwen3vl::engine::tensor_file::TensorFile;
use qwen3vl::engine::{BackendChoice, LoadOptions, MultimodalInput, Precision, Qwen3VlModel};

pub const MODELS: [&str; 3] = ["dense_tied", "dense_untied", "moe"];
pub const CASES: [&str; 5] = ["text", "image1", "image2", "video", "mixed"];

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn load(name: &str, precision: Precision, backend: BackendChoice) -> Qwen3VlModel {
    Qwen3VlModel::load(
        &model_dir(name),
        LoadOptions {
            precision,
            backend,
            ..Default::default()
        },
    )
    .expect("load fixture model")
}

pub struct Case {
    pub input: MultimodalInput,
    pub file: TensorFile,
}

pub fn case(model: &str, case: &str, dtype: &str) -> Case {
    let path = fixtures()
        .join("cases")
        .join(format!("{model}__{case}__{dtype}.safetensors"));
    let file = TensorFile::read(&path).expect("read case file");
    let input = MultimodalInput::from_tensor_file(&file, 1536).expect("case inputs");
    Case { input, file }
}

impl Case {
    pub fn f32(&self, name: &str) -> Vec<f32> {
        match self.file.tensors.get(name) {
            Some(qwen3vl::engine::tensor_file::TensorData::F32(_, v)) => v.clone(),
            _ => panic!("fixture tensor {name} missing"),
        }
    }
    pub fn i64(&self, name: &str) -> Vec<i64> {
        match self.file.tensors.get(name) {
            Some(qwen3vl::engine::tensor_file::TensorData::I64(_, v)) => v.clone(),
            _ => panic!("fixture tensor {name} missing"),
        }
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Fraction of rows whose argmax agrees.
pub fn argmax_agreement(a: &[f32], b: &[f32], vocab: usize) -> f64 {
    let rows = a.len() / vocab;
    let agree = (0..rows)
        .filter(|&r| {
            let ra = &a[r * vocab..(r + 1) * vocab];
            let rb = &b[r * vocab..(r + 1) * vocab];
            qwen3vl::engine::model::argmax(ra) == qwen3vl::engine::model::argmax(rb)
        })
        .count();
    agree as f64 / rows as f64
}

/// Deterministic values in [-1, 1) (xorshift), for kernel tests.
pub fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Naive `x · Wᵀ + b` in f64; also returns Σ|x·w| per output for tolerances.
pub fn reference(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; m * n];
    let mut mag = vec![0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &w[j * k..(j + 1) * k];
            let (mut s, mut a) = (
                b.map_or(0.0, |b| b[j] as f64),
                b.map_or(0.0, |b| (b[j] as f64).abs()),
            );
            for (&xv, &wv) in xr.iter().zip(wr) {
                let p = xv as f64 * wv as f64;
                s += p;
                a += p.abs();
            }
            y[i * n + j] = s;
            mag[i * n + j] = a;
        }
    }
    (y, mag)
}

/// A backend whose matmuls compute every row independently of the others (oneDNN's AVX-512
/// kernels, our AMX tiles or the FMA kernel over bf16 panels), so results do not depend on how
/// many rows a call has; `None` where only the portable GEMM (or oneDNN's AVX2 GEMM) is left.
pub fn row_invariant_backend(precision: Precision) -> Option<BackendChoice> {
    if qwen3vl::engine::kernels::gemm::onednn_row_invariant() {
        Some(BackendChoice::OneDnn)
    } else if precision == Precision::Bf16 && qwen3vl::engine::kernels::gemm::amx::available() {
        Some(BackendChoice::Amx)
    } else if precision == Precision::Bf16 && qwen3vl::engine::kernels::gemm::bf16_fma::available()
    {
        Some(BackendChoice::Fma)
    } else {
        None
    }
}

/// A pipeline on a fixture model: `batch` sequences per step, a 512-token window, 16-token
/// blocks, a 512-block cache (tests adjust the rest on the returned builder).
pub fn fixture_pipeline(
    model: &str,
    precision: Precision,
    batch: usize,
    backend: BackendChoice,
) -> qwen3vl::pipeline::PipelineBuilder {
    use qwen3vl::pipeline::{KvCacheSize, Pipeline, ScheduleConfig};
    Pipeline::builder()
        .model(model_dir(model))
        .load_options(LoadOptions {
            precision,
            backend,
            ..Default::default()
        })
        .schedule(ScheduleConfig {
            max_batch_size: batch,
            max_prefill_batch_size: batch,
            max_prefill_tokens: 4096,
            max_seq_len: 512,
            max_input_token_len: 480,
            max_iter_times: 64,
            ..Default::default()
        })
        .block_size(16)
        .kv_cache(KvCacheSize::Blocks(512))
}
