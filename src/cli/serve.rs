//! `qwen3vl serve`: the HTTP server. Its flags are the library's [`Settings`]; a settings file
//! (`--settings`, the same keys in JSON) and MindIE's `config.json` (`--config`) fill what the
//! flags leave unset, in that order. Without either it serves plain HTTP on 127.0.0.1:1025.

use std::path::PathBuf;

use crate::service::{Server, Settings};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// MindIE Service `config.json` (ServerConfig / BackendConfig / ModelDeployConfig /
    /// ScheduleConfig); settings without meaning on a CPU are accepted and reported once.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Settings file: a JSON object whose keys are these flags' names in snake_case
    /// (`{"port": 8080, "max_batch_size": 16}`); flags win over it, it wins over --config.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    #[command(flatten)]
    pub flags: Settings,
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let mindie = match &args.config {
        Some(path) => {
            let (s, note) = Settings::from_mindie_file(path).map_err(anyhow::Error::msg)?;
            if let Some(n) = note {
                tracing::warn!("{n}");
            }
            s
        }
        None => Settings::default(),
    };
    let file = match &args.settings {
        Some(path) => Settings::from_file(path).map_err(anyhow::Error::msg)?,
        None => Settings::default(),
    };
    let mut flags = args.flags.clone();
    // A certificate on the command line means HTTPS, whatever a file's httpsEnabled says.
    if flags.tls_cert.is_some() {
        flags.https = Some(true);
    }
    let settings = flags.over(file).over(mindie);
    settings.model.install()?;
    if let Ok(json) = serde_json::to_string(&settings) {
        tracing::debug!(settings = %json, "effective settings");
    }
    let config = settings.finish().map_err(anyhow::Error::msg)?;
    let server = Server::start(config, true)?;
    server.wait()?;
    tracing::info!("stopped");
    Ok(())
}
