//! `qwen3vl forward`: one full-prompt forward pass (+ optional greedy continuation through the
//! KV-cache decode path), reading and writing safetensors files.

use std::path::PathBuf;

use crate::engine::tensor_file::{TensorFile, TensorWriter};
use crate::engine::{ModelArgs, MultimodalInput, Qwen3VlModel};
use anyhow::{Context, Result};

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
    /// Greedily generate N tokens through the KV-cache decode path.
    #[arg(long)]
    pub generate: Option<usize>,
    #[command(flatten)]
    pub model_args: ModelArgs,
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    // No plan on stderr here: an input error is the one line a failed `forward` writes there.
    args.model_args.install()?;
    let model = Qwen3VlModel::load(&args.model, args.model_args.load_options())
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
