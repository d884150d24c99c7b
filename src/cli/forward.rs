//! `qwen3vl forward`: one full-prompt forward pass (+ optional greedy continuation through the
//! KV-cache decode path), reading and writing safetensors files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use qwen3vl::engine::tensor_file::{TensorFile, TensorWriter};
use qwen3vl::engine::{
    BackendChoice, LoadOptions, MultimodalInput, Precision, Quantization, Qwen3VlModel,
};

use super::kernel_args::KernelArgs;

#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// Checkpoint folder (config.json + safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Input tensors: input_ids I64 [seq]; optional pixel_values F32 [Np,1536] + image_grid_thw
    /// I64 [n,3]; optional pixel_values_videos + video_grid_thw.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Output file: logits F32 [seq, vocab], position_ids I64 [3, seq] (+ generated I64 [N]).
    #[arg(long)]
    pub output: PathBuf,
    /// Compute precision: bf16 (default), f16 (PyTorch float16 numerics) or f32.
    #[arg(long, default_value = "bf16", value_parser = parse_precision)]
    pub dtype: Precision,
    /// Greedily generate N tokens through the KV-cache decode path.
    #[arg(long)]
    pub generate: Option<usize>,
    /// GEMM backend: auto, portable, onednn, fma, dot or amx.
    #[arg(long, default_value = "auto", value_parser = parse_backend)]
    pub backend: BackendChoice,
    /// Quantize on load: none or w8a8 (int8 text decoder, per-token int8 activations).
    #[arg(long, default_value = "none", value_parser = parse_quantization)]
    pub quantize: Quantization,
    #[command(flatten)]
    pub kernels: KernelArgs,
}

pub fn parse_precision(s: &str) -> Result<Precision, String> {
    Precision::parse(s).ok_or_else(|| format!("unknown dtype `{s}` (expected f32, bf16 or f16)"))
}

pub fn parse_quantization(s: &str) -> Result<Quantization, String> {
    match s {
        "none" => Ok(Quantization::None),
        "w8a8" => Ok(Quantization::W8A8),
        "w8a8-vision" => Ok(Quantization::W8A8Vision),
        _ => Err(format!(
            "unknown quantization `{s}` (none, w8a8, w8a8-vision)"
        )),
    }
}

pub fn parse_backend(s: &str) -> Result<BackendChoice, String> {
    match s {
        "auto" => Ok(BackendChoice::Auto),
        "portable" => Ok(BackendChoice::Portable),
        "onednn" => Ok(BackendChoice::OneDnn),
        "fma" => Ok(BackendChoice::Fma),
        "amx" => Ok(BackendChoice::Amx),
        "dot" => Ok(BackendChoice::Dot),
        _ => Err(format!(
            "unknown backend `{s}` (auto, portable, onednn, fma, dot, amx)"
        )),
    }
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    // No plan on stderr here: an input error is the one line a failed `forward` writes there.
    args.kernels.install()?;
    let backend = args.backend;
    let model = Qwen3VlModel::load(
        &args.model,
        LoadOptions {
            precision: args.dtype,
            backend,
            quantization: args.quantize,
        },
    )
    .with_context(|| format!("loading model from {}", args.model.display()))?;
    let file = TensorFile::read(&args.inputs)?;
    let input = MultimodalInput::from_tensor_file(&file, model.config.patch_dim())?;
    let (out, generated) = model.generate_greedy(&input, args.generate.unwrap_or(0))?;
    let seq = input.input_ids.len();
    let mut w = TensorWriter::default();
    w.f32("logits", &[seq, model.vocab_size()], &out.logits);
    w.i64("position_ids", &[3, seq], &out.positions.streams.concat());
    if let Some(n) = args.generate {
        let g: Vec<i64> = generated.iter().map(|&t| t as i64).collect();
        w.i64("generated", &[n], &g);
    }
    w.write(&args.output)?;
    Ok(())
}
