//! `qwen3vl preprocess`: run the Qwen3-VL processor on a messages file and write the tensors.

use std::path::{Path, PathBuf};

use crate::media::{MediaLimits, MediaOverrides};
use crate::prompt::{ChatMessage, Processor, RenderOptions};
use anyhow::Context;

/// Arguments of `qwen3vl preprocess`.
#[derive(Debug, Clone, clap::Args)]
pub struct PreprocessArgs {
    /// Model folder: tokenizer.json, chat template, preprocessor_config.json,
    /// video_preprocessor_config.json (built-in defaults for the missing ones).
    #[arg(long)]
    pub model: PathBuf,
    /// JSON file with an OpenAI-style list of messages (or `{"messages": [...], "tools": [...]}`);
    /// relative media paths resolve against its folder.
    #[arg(long)]
    pub messages: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub output: PathBuf,
    /// Only files under this folder may be read (default: no restriction).
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Refuse http(s):// media.
    #[arg(long)]
    pub no_http: bool,
    /// Do not append the assistant generation prompt.
    #[arg(long)]
    pub no_generation_prompt: bool,
    /// Processor settings (vLLM's `mm_processor_kwargs`), e.g. '{"max_pixels": 200704}'.
    #[arg(long)]
    pub mm_processor_kwargs: Option<String>,
    /// Transparent image areas: white (default), black or drop.
    #[arg(long, value_parser = parse_rgba_background)]
    pub rgba_background: Option<crate::media::RgbaBackground>,
    /// Parity experiments only: transformers 4.57's slow PIL image processor, which ignores the
    /// checkpoint's `size` and resizes into Qwen2-VL's [3136, 1003520] pixels.
    #[arg(long)]
    pub slow_image_processor_parity: bool,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum MessagesFile {
    List(Vec<ChatMessage>),
    Request {
        messages: Vec<ChatMessage>,
        #[serde(default)]
        tools: Option<Vec<serde_json::Value>>,
    },
}

/// Runs the command.
pub fn run(args: &PreprocessArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.messages)
        .with_context(|| format!("reading {}", args.messages.display()))?;
    let (messages, tools) = match serde_json::from_str::<MessagesFile>(&text)
        .with_context(|| format!("parsing {} as chat messages", args.messages.display()))?
    {
        MessagesFile::List(m) => (m, None),
        MessagesFile::Request { messages, tools } => (messages, tools),
    };
    let base = args
        .messages
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let limits = MediaLimits {
        // A local command may read what its user can read, unless told otherwise.
        media_root: Some(
            args.media_root
                .clone()
                .unwrap_or_else(|| PathBuf::from("/")),
        ),
        allow_http: !args.no_http,
        rgba_background: args.rgba_background.unwrap_or_default(),
        ..Default::default()
    };
    let mut processor = Processor::from_model_dir(&args.model, limits)
        .with_context(|| format!("loading processor files from {}", args.model.display()))?
        .with_base_dir(base);
    if args.slow_image_processor_parity {
        processor = processor.with_slow_image_processor_parity(&args.model)?;
    }
    let media = match &args.mm_processor_kwargs {
        None => MediaOverrides::default(),
        Some(text) => {
            let v: serde_json::Value =
                serde_json::from_str(text).context("--mm-processor-kwargs is not JSON")?;
            MediaOverrides::from_json(&v, "--mm-processor-kwargs")?
        }
    };
    let opts = RenderOptions {
        tools,
        add_generation_prompt: !args.no_generation_prompt,
        ..Default::default()
    };
    let out = processor.process_request(&messages, &opts, &media)?;
    out.write_safetensors(&args.output)?;
    eprintln!(
        "wrote {}: {} tokens, {} image(s), {} video(s)",
        args.output.display(),
        out.input_ids.len(),
        out.image_grid_thw.len(),
        out.video_grid_thw.len()
    );
    Ok(())
}

fn parse_rgba_background(s: &str) -> Result<crate::media::RgbaBackground, String> {
    s.parse()
}
