//! Every HTTP request runs inside a `request` span (a process-wide sequence id, method, path),
//! so that whatever is logged while serving it — a refusal and its reason, the request line
//! written when a generation ends (see [`crate::logging`]) — names the request.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use tracing::Instrument;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// `App::wrap_fn` middleware.
pub fn span<S, B>(
    req: ServiceRequest,
    next: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let span = tracing::info_span!(
        "request",
        id = NEXT_ID.fetch_add(1, Ordering::Relaxed),
        method = %req.method(),
        path = %req.path(),
    );
    next.call(req).instrument(span).boxed_local()
}
