//! Graceful shutdown on SIGTERM / SIGINT: flag the state (new requests get 503, readiness
//! fails), refuse queued requests, stop accepting connections, and let in-flight requests
//! finish until the deadline (`ServiceConfig::shutdown_timeout`). At the deadline every
//! generation still running is ended by the state's `cutoff`: a non-streaming client gets a
//! 503 naming the shutdown, a stream gets an error frame (then `[DONE]` on the OpenAI routes),
//! and the generation is cancelled, freeing its KV blocks. actix-web itself waits
//! [`ENDING_MARGIN`] longer before dropping connections, so those endings reach the clients.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;

use super::state::AppState;

/// Time between the shutdown deadline (when in-flight generations are ended) and actix-web
/// dropping whatever connection is still open: enough to write the final frames.
pub const ENDING_MARGIN: Duration = Duration::from_secs(2);

/// Begin a graceful stop (also what a signal triggers).
pub async fn stop(state: &Arc<AppState>, handle: &ServerHandle) {
    if !state.stopping.swap(true, Ordering::AcqRel) {
        state.links.close();
        // A plain thread: `Server::stop` calls this from outside any async runtime.
        let (st, grace) = (state.clone(), state.config.shutdown_timeout);
        let timer = std::thread::Builder::new()
            .name("qwen3vl-shutdown-deadline".into())
            .spawn(move || {
                std::thread::sleep(grace);
                st.cutoff.send_replace(true);
            });
        if timer.is_err() {
            // No thread to wait with: end in-flight generations now rather than never.
            state.cutoff.send_replace(true);
        }
    }
    handle.stop(true).await;
}

/// Wait for SIGTERM or SIGINT, then stop gracefully.
pub async fn on_signal(state: Arc<AppState>, handle: ServerHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server with its handle");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        "{name}: stopping — no new requests, in-flight ones get up to {}s",
        state.config.shutdown_timeout.as_secs()
    );
    stop(&state, &handle).await;
}
