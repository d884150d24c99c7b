//! `qwen3vl make-checkpoint`: a random-weight checkpoint with a released model's real config.

use std::path::PathBuf;

use crate::tools::random_checkpoint::{write_random_checkpoint, Arch};
use anyhow::{anyhow, Context, Result};

#[derive(clap::Args, Debug)]
pub struct MakeCheckpointArgs {
    /// tiny, 2b, 4b, 8b, 32b or 30b-a3b.
    #[arg(long)]
    pub arch: String,
    /// Override the number of text decoder layers (e.g. a layer-reduced MoE that fits in RAM).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write tokenizer.json (copied from this file), tokenizer_config.json, the chat template
    /// and the processor configs, so the checkpoint can take chat messages.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: &MakeCheckpointArgs) -> Result<()> {
    let arch = Arch::parse(&args.arch).ok_or_else(|| {
        anyhow!(
            "unknown --arch `{}` (tiny, 2b, 4b, 8b, 32b, 30b-a3b)",
            args.arch
        )
    })?;
    let t = std::time::Instant::now();
    let files = write_random_checkpoint(arch, args.layers, &args.out, args.seed)?;
    if let Some(tok) = &args.tokenizer {
        crate::prompt::write_default_processor_files(&args.out, tok).with_context(|| {
            format!(
                "writing tokenizer and processor files from {}",
                tok.display()
            )
        })?;
    }
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "wrote {} ({} file(s), {:.2} GB) in {:.1}s",
        args.out.display(),
        files.len(),
        bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
