//! msModelSlim folders, tensor by tensor: a static W8A8 Linear (deq_scale as fp32, as a plain
//! int64 bit pattern and as the NPU "quant param" encoding), a W8A8_DYNAMIC Linear with a float
//! bias, the legacy description file name, and every unsupported variant failing with a typed
//! error instead of loading wrong numbers.

use std::path::Path;

use qwen3vl::engine::kernels::bf16::Precision;
use qwen3vl::engine::kernels::int8::quantize_row;
use qwen3vl::engine::kernels::runtime::pool::ThreadPool;
use qwen3vl::engine::loader::Loader;
use qwen3vl::engine::quant::QuantDescription;
use qwen3vl::engine::weights::Checkpoint;
use qwen3vl::engine::EngineError;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

const N: usize = 37;
const K: usize = 50;
const M: usize = 5;

fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Tensors(Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl Tensors {
    fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) {
        self.0.push((name.into(), dtype, shape.to_vec(), bytes));
    }
    fn f32(&mut self, name: &str, shape: &[usize], v: &[f32]) {
        self.add(
            name,
            Dtype::F32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
    }
    fn write(&self, dir: &Path, file: &str) {
        let views: Vec<(String, TensorView)> = self
            .0
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        std::fs::write(dir.join(file), safetensors::serialize(views, None).unwrap()).unwrap();
    }
}

/// A quantized weight [N, K] and its per-channel scales.
fn weight() -> (Vec<i8>, Vec<f32>) {
    let w = noise(N * K, 1);
    let mut q = vec![0i8; N * K];
    let s = w
        .chunks_exact(K)
        .zip(q.chunks_exact_mut(K))
        .map(|(a, b)| quantize_row(a, b))
        .collect();
    (q, s)
}

fn folder(tensors: &Tensors, desc: serde_json::Value, desc_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tensors.write(dir.path(), "quant_model_weight_w8a8.safetensors");
    std::fs::write(dir.path().join(desc_name), desc.to_string()).unwrap();
    dir
}

fn run_linear(dir: &Path, bias: bool) -> Result<Vec<f32>, EngineError> {
    let ckpt = Checkpoint::open(dir)?;
    let desc = QuantDescription::load(dir)?;
    let loader = Loader {
        ckpt: &ckpt,
        precision: Precision::F32,
        backend: None,
        quantize_text: false,
        quantize_vision: false,
        quant: desc.as_ref(),
    };
    let lin = loader.linear("layer", N, K, bias)?;
    assert!(
        lin.backend_name().starts_with("int8"),
        "{}",
        lin.backend_name()
    );
    lin.apply(ThreadPool::global(), &noise(M * K, 9), M)
}

/// msModelSlim §2.3: y = (Σ clamp(round(x/s_x + z)) · Wq + quant_bias) · deq.
fn static_reference(q: &[i8], s_x: f32, z: i32, qbias: &[i32], deq: &[f32]) -> Vec<f32> {
    let x = noise(M * K, 9);
    let mut y = vec![0f32; M * N];
    for t in 0..M {
        let xq: Vec<i32> = x[t * K..(t + 1) * K]
            .iter()
            .map(|v| {
                (v * (1.0 / s_x) + z as f32)
                    .round_ties_even()
                    .clamp(-128.0, 127.0) as i32
            })
            .collect();
        for n in 0..N {
            let acc: i32 = (0..K).map(|k| xq[k] * q[n * K + k] as i32).sum();
            y[t * N + n] = (acc + qbias[n]) as f32 * deq[n];
        }
    }
    y
}

fn static_tensors(deq_bytes: (Dtype, Vec<u8>)) -> (Tensors, Vec<i8>, Vec<i32>, Vec<f32>) {
    let (q, s_w) = weight();
    let (s_x, z) = (1.5 / 255.0, 4);
    let deq: Vec<f32> = s_w.iter().map(|s| s * s_x).collect();
    let qbias: Vec<i32> = (0..N as i32).map(|c| c * 13 - 200).collect();
    let mut t = Tensors(Vec::new());
    t.add(
        "layer.weight",
        Dtype::I8,
        &[N, K],
        q.iter().map(|&v| v as u8).collect(),
    );
    t.f32("layer.input_scale", &[1], &[s_x]);
    t.f32("layer.input_offset", &[1], &[z as f32]);
    t.add(
        "layer.quant_bias",
        Dtype::I32,
        &[N],
        qbias.iter().flat_map(|v| v.to_le_bytes()).collect(),
    );
    t.add("layer.deq_scale", deq_bytes.0, &[N], deq_bytes.1);
    // The original float bias: already folded into quant_bias, so it must NOT be added again.
    t.f32("layer.bias", &[N], &[100.0; N]);
    (t, q, qbias, deq)
}

fn tags(scheme: &str) -> serde_json::Value {
    json!({
        "version": "1.0.0", "model_quant_type": scheme, "group_size": 0,
        "metadata": {}, "optional": {},
        "layer.weight": scheme, "layer.input_scale": scheme, "layer.input_offset": scheme,
        "layer.quant_bias": scheme, "layer.deq_scale": scheme, "layer.bias": "FLOAT",
        "layer.weight_scale": scheme, "layer.weight_offset": scheme,
    })
}

fn assert_close(got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "index {i}: {g} vs {w}"
        );
    }
}

#[test]
fn static_w8a8_with_each_deq_scale_encoding() {
    let (_, s_w) = weight();
    let deq: Vec<f32> = s_w.iter().map(|s| s * (1.5 / 255.0)).collect();
    let f32_bytes = deq.iter().flat_map(|v| v.to_le_bytes()).collect();
    let plain: Vec<u8> = deq
        .iter()
        .flat_map(|v| (v.to_bits() as i32 as i64).to_le_bytes())
        .collect();
    // npu_trans_quant_param: mantissa truncated to 19 bits, flag bit 46 set.
    let npu: Vec<u8> = deq
        .iter()
        .flat_map(|v| (((v.to_bits() & 0xFFFF_E000) as i64) | (1 << 46)).to_le_bytes())
        .collect();
    for (label, dtype, bytes, truncate) in [
        ("fp32", Dtype::F32, f32_bytes, false),
        ("int64", Dtype::I64, plain, false),
        ("npu quant param", Dtype::I64, npu, true),
    ] {
        let (t, q, qbias, mut want_deq) = static_tensors((dtype, bytes));
        if truncate {
            want_deq
                .iter_mut()
                .for_each(|v| *v = f32::from_bits(v.to_bits() & 0xFFFF_E000));
        }
        // Legacy description name (MindIE's fallback).
        let dir = folder(&t, tags("W8A8"), "quant_model_description_w8a8.json");
        let got = run_linear(dir.path(), true).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_close(
            &got,
            &static_reference(&q, 1.5 / 255.0, 4, &qbias, &want_deq),
        );
    }
}

#[test]
fn dynamic_w8a8_adds_the_float_bias_after_dequantization() {
    let (q, s_w) = weight();
    let bias = noise(N, 3);
    let mut t = Tensors(Vec::new());
    t.add(
        "layer.weight",
        Dtype::I8,
        &[N, K],
        q.iter().map(|&v| v as u8).collect(),
    );
    t.f32("layer.weight_scale", &[N, 1], &s_w);
    t.f32("layer.weight_offset", &[N, 1], &[0.0; N]);
    t.f32("layer.bias", &[N], &bias);
    let dir = folder(&t, tags("W8A8_DYNAMIC"), "quant_model_description.json");
    let got = run_linear(dir.path(), true).unwrap();
    let x = noise(M * K, 9);
    for r in 0..M {
        let row = &x[r * K..(r + 1) * K];
        let s_t = row.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
        for n in 0..N {
            let acc: i32 = (0..K)
                .map(|k| (row[k] / s_t).round_ties_even() as i32 * q[n * K + k] as i32)
                .sum();
            let want = acc as f32 * (s_t * s_w[n]) + bias[n];
            let g = got[r * N + n];
            assert!(
                (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{g} vs {want}"
            );
        }
    }

    // Asymmetric weights (non-zero weight_offset) are refused rather than mis-computed.
    let mut t2 = Tensors(Vec::new());
    t2.add(
        "layer.weight",
        Dtype::I8,
        &[N, K],
        q.iter().map(|&v| v as u8).collect(),
    );
    t2.f32("layer.weight_scale", &[N, 1], &s_w);
    t2.f32("layer.weight_offset", &[N, 1], &[1.0; N]);
    let dir = folder(&t2, tags("W8A8_DYNAMIC"), "quant_model_description.json");
    let err = run_linear(dir.path(), false).unwrap_err();
    assert!(matches!(err, EngineError::Quantization { .. }), "{err}");
}

#[test]
fn unsupported_quantized_folders_fail_with_typed_errors() {
    let (t, _, _, _) = static_tensors((Dtype::F32, vec![0u8; 4 * N]));
    // An unsupported scheme for this Linear.
    let mut d = tags("W8A8");
    d["layer.weight"] = json!("W4A8_DYNAMIC");
    let dir = folder(&t, d, "quant_model_description.json");
    let err = run_linear(dir.path(), false).unwrap_err();
    assert!(
        matches!(&err, EngineError::Quantization { msg, .. } if msg.contains("W4A8_DYNAMIC")),
        "{err}"
    );
    // Online rotations would need run-time Hadamard transforms.
    let mut d = tags("W8A8");
    d["metadata"] = json!({"quarot": {"max_tp_size": 1, "heads_rotation": {"layers": [0]}}});
    let dir = folder(&t, d, "quant_model_description.json");
    let err = QuantDescription::load(dir.path())
        .err()
        .expect("online QuaRot is refused");
    assert!(matches!(err, EngineError::Quantization { .. }), "{err}");
    // An int8 weight tagged FLOAT is not silently read as numbers.
    let mut d = tags("W8A8");
    d["layer.weight"] = json!("FLOAT");
    let dir = folder(&t, d, "quant_model_description.json");
    let err = run_linear(dir.path(), false).unwrap_err();
    assert!(matches!(err, EngineError::Dtype { .. }), "{err}");
}
