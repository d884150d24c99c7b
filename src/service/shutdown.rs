//! Graceful shutdown on SIGTERM / SIGINT: flag the state (new requests get 503, readiness
//! fails), refuse queued requests, stop accepting connections, and let in-flight requests
//! finish until the deadline (`ServiceConfig::shutdown_timeout`), after which actix-web
//! drops their connections — which cancels their generations and frees their KV blocks.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::dev::ServerHandle;

use super::state::AppState;

/// Begin a graceful stop (also what a signal triggers).
pub async fn stop(state: &AppState, handle: &ServerHandle) {
    state.stopping.store(true, Ordering::Release);
    state.links.close();
    handle.stop(true).await;
}

/// Wait for SIGTERM or SIGINT, then stop gracefully.
pub async fn on_signal(state: Arc<AppState>, handle: ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("warning: cannot install signal handlers; stop the server with its handle");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    eprintln!(
        "{name}: stopping — no new requests, in-flight ones get up to {}s",
        state.config.shutdown_timeout.as_secs()
    );
    stop(&state, &handle).await;
}
