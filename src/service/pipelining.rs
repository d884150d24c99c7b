//! No request after `Connection: close`. actix-web decodes every request already in the read
//! buffer and serves them in turn, even after one that asked to close the connection: bytes
//! past a short `Content-Length` on a `Connection: close` request would run as a second
//! request (a request-smuggling shape behind proxies that trust the close). Each connection
//! carries a flag; a request that arrives after the flag was set is not served: once the
//! previous response has had a moment to be written, the socket is shut down, so the client
//! sees that response and then the end of the connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::HttpResponse;
use futures::future::LocalBoxFuture;

use super::disconnect::PeerSocket;

/// Set on a connection once a request on it asked to close.
#[derive(Clone, Default)]
pub struct CloseRequested(Arc<AtomicBool>);

/// How long the refused request waits so that actix-web writes the previous response first.
const FLUSH_GRACE: Duration = Duration::from_millis(50);

/// `App::wrap_fn` middleware.
pub fn guard<S, B>(
    req: ServiceRequest,
    next: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let flag = req.conn_data::<CloseRequested>().cloned();
    if let Some(flag) = &flag {
        if flag.0.load(Ordering::Acquire) {
            let peer = PeerSocket::of(req.request());
            return Box::pin(async move {
                actix_web::rt::time::sleep(FLUSH_GRACE).await;
                if let Some(peer) = peer {
                    peer.shutdown();
                }
                let res = HttpResponse::BadRequest().force_close().finish();
                Ok(req.into_response(res))
            });
        }
        if req.head().connection_type() == ConnectionType::Close {
            flag.0.store(true, Ordering::Release);
        }
    }
    let fut = next.call(req);
    Box::pin(async move { Ok(fut.await?.map_into_boxed_body()) })
}
