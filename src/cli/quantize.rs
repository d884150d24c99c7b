//! `qwen3vl quantize`: save a float checkpoint as W8A8 (msModelSlim W8A8_DYNAMIC layout), so
//! quantization is paid once instead of on every `--quantize w8a8` load.

use std::path::PathBuf;
use std::time::Instant;

use crate::tools::quantize_checkpoint::quantize_checkpoint;
use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Float checkpoint folder (config.json + safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Output folder (quant_model_description.json + quant_model_weights*.safetensors + the
    /// config, tokenizer and processor files).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let t = Instant::now();
    let r = quantize_checkpoint(&args.model, &args.out)
        .with_context(|| format!("quantizing {}", args.model.display()))?;
    println!(
        "wrote {} ({} int8 linears, {} float tensors, {:.2} GB) in {:.1}s",
        args.out.display(),
        r.quantized_linears,
        r.float_tensors,
        r.bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
