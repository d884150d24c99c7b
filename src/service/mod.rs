//! The HTTP service: MindIE Service's wire formats (and so vLLM's, OpenAI's and TGI's) over
//! the [`Pipeline`].
//!
//! * [`Settings`] (flags, a settings file, MindIE `config.json`) → [`ServiceConfig`] → [`Server`].
//! * Inside (crate-private): `routes` (one file per endpoint family), `stream` and `sse`
//!   (framing), `generation` (a request's events as chunks, with timeouts and metrics),
//!   `limits` (`maxLinkNum`), `metrics` (Prometheus), `tls`, `shutdown`.
//!
//! ```no_run
//! # fn demo() -> anyhow::Result<()> {
//! use qwen3vl::service::{Server, Settings};
//! let config = Settings { model_dir: Some("/models/Qwen3-VL-2B-Instruct".into()), ..Default::default() }
//!     .finish()
//!     .map_err(anyhow::Error::msg)?;
//! let server = Server::start(config, true)?;
//! println!("listening on {}", server.local_addr());
//! server.wait()?;
//! # Ok(()) }
//! ```

internal! {
    mod access_log;
    mod disconnect;
    mod errors;
    mod generation;
    mod limits;
    mod metrics;
    mod mindie_config;
    mod openapi;
    mod params;
    mod pipelining;
    mod routes;
    mod shutdown;
    mod sse;
    mod state;
    mod stream;
    mod tls;
}

pub mod config;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

pub use config::ServiceConfig;
pub use errors::ApiError;
pub use settings::Settings;
pub use state::AppState;

use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::prompt::Tokenizer;

/// A running server.
pub struct Server {
    addrs: Vec<SocketAddr>,
    handle: ServerHandle,
    state: Arc<AppState>,
    thread: JoinHandle<std::io::Result<()>>,
}

/// The pipeline a configuration describes, not yet built. `qwen3vl bench --in-process` starts
/// its pipeline from here too, so that it runs with exactly the server's settings.
pub fn pipeline_builder(config: &ServiceConfig) -> PipelineBuilder {
    let mut b = Pipeline::builder()
        .model(&config.model_dir)
        .load_options(config.load)
        .schedule(config.schedule.clone())
        .kv_cache(config.kv_cache)
        .media_limits(config.media.clone())
        .media_defaults(config.media_defaults.clone())
        .media_caps(config.media_caps)
        .escape_user_special_tokens(config.escape_user_special_tokens)
        .media_workers(config.media_workers)
        .speculative(config.speculative.clone());
    if let Some(t) = &config.tokenizer {
        b = b.tokenizer(t);
    }
    if let Some(bs) = config.block_size {
        b = b.block_size(bs);
    }
    b
}

/// Build the pipeline a configuration describes (loads the model).
pub fn build_pipeline(config: &ServiceConfig) -> anyhow::Result<Pipeline> {
    Ok(pipeline_builder(config)
        .on_progress(|m| tracing::info!("{m}"))
        .build()?)
}

/// The tokenizer the pipeline uses: `--tokenizer` or the model folder's.
fn load_tokenizer(config: &ServiceConfig) -> anyhow::Result<Option<Tokenizer>> {
    let path = config
        .tokenizer
        .clone()
        .unwrap_or_else(|| config.model_dir.join("tokenizer.json"));
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Tokenizer::from_file(&path)?))
}

/// Caps malloc's arenas (`kernels::runtime::malloc`), which keeps RSS flat under load. It takes
/// effect only while the process has opened few arenas: `qwen3vl serve` calls it before its
/// first thread, `Server::start` again for embedders, before the pipeline's threads (too late
/// where other threads already allocate; `MALLOC_ARENA_MAX=1` in the environment always works).
pub(crate) fn limit_malloc_arenas() {
    if let Some(n) = crate::engine::kernels::runtime::malloc::limit_server_arenas() {
        tracing::debug!(arenas = n, "malloc arenas capped");
    }
}

impl Server {
    /// Load the model, then listen. With `handle_signals`, SIGTERM / SIGINT stop it gracefully.
    pub fn start(config: ServiceConfig, handle_signals: bool) -> anyhow::Result<Server> {
        limit_malloc_arenas();
        let pipeline = build_pipeline(&config)?;
        Self::with_pipeline(config, pipeline, handle_signals)
    }

    /// Listen with an already built pipeline.
    pub fn with_pipeline(
        config: ServiceConfig,
        pipeline: Pipeline,
        handle_signals: bool,
    ) -> anyhow::Result<Server> {
        let tokenizer = load_tokenizer(&config)?.map(Arc::new);
        if tokenizer.is_none() {
            tracing::warn!(
                "no tokenizer.json (model folder or --tokenizer): text endpoints will answer 424"
            );
        }
        let tls = match &config.tls {
            Some((cert, key)) => Some(tls::server_config(cert, key).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let mut listeners = vec![(config.host.clone(), config.port)];
        listeners.extend(config.extra_listeners.iter().cloned());
        let (workers, grace) = (config.http_workers, config.shutdown_timeout);
        let state = Arc::new(AppState::new(Arc::new(pipeline), tokenizer, config));
        let (tx, rx) = std::sync::mpsc::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("qwen3vl-http".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let data = web::Data::from(st.clone());
                    let mut server = HttpServer::new(move || {
                        App::new()
                            .wrap_fn(pipelining::guard)
                            .wrap_fn(access_log::span)
                            .app_data(data.clone())
                            .configure(routes::configure)
                            .default_service(web::to(routes::not_found))
                    })
                    .on_connect(disconnect::on_connect)
                    .workers(workers)
                    .shutdown_timeout((grace + shutdown::ENDING_MARGIN).as_secs())
                    .disable_signals();
                    for (host, port) in &listeners {
                        let addr = (host.as_str(), *port);
                        let bound = match &tls {
                            Some(cfg) => server.bind_rustls_0_23(addr, cfg.clone()),
                            None => server.bind(addr),
                        };
                        server = match bound {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = tx.send(Err(anyhow::anyhow!("binding {host}:{port}: {e}")));
                                return Ok(());
                            }
                        };
                    }
                    let addrs = server.addrs();
                    let running = server.run();
                    let handle = running.handle();
                    if handle_signals {
                        actix_web::rt::spawn(shutdown::on_signal(st.clone(), handle.clone()));
                    }
                    let _ = tx.send(Ok((addrs, handle)));
                    running.await
                })
            })
            .context("starting the HTTP thread")?;
        let (addrs, handle) = rx
            .recv()
            .context("the HTTP thread exited during start-up")??;
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        for a in &addrs {
            tracing::info!(
                "serving `{}` on {scheme}://{a}",
                state.config.served_model_name
            );
        }
        Ok(Server {
            addrs,
            handle,
            state,
            thread,
        })
    }

    /// The business listener's address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stop gracefully (as SIGTERM does) and wait for the server to exit.
    pub fn stop(self) -> std::io::Result<()> {
        let (state, handle) = (self.state.clone(), self.handle.clone());
        futures::executor::block_on(shutdown::stop(&state, &handle));
        self.wait()
    }

    /// Wait until the server exits (after a signal or [`Server::stop`]).
    pub fn wait(self) -> std::io::Result<()> {
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::other("the HTTP thread panicked")),
        }
    }
}
