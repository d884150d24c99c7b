//! Operator logs through `tracing`: human-readable text or one JSON object per line, filtered
//! by `RUST_LOG` (default `info`). The library only emits events; the binary (or an embedding
//! application) installs the subscriber, here with [`init`].
//!
//! What an operator gets at `info`: start-up and shutdown lines, one line per inference
//! request when it ends (target `qwen3vl::request`: HTTP request id, method, path, status,
//! prompt / visual / cached / generated tokens, media, vision, queue, TTFT and end-to-end
//! milliseconds, finish reason), and a warning for every refused request with the reason.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format `{s}` (text or json)")),
        }
    }
}

/// Installs the process-wide subscriber on stderr (a no-op if one is already installed).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
