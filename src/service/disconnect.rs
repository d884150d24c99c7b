//! Noticing a client that hung up while its request is still being prepared or generated
//! without streaming. A stream notices by itself (writing a frame fails and actix-web drops
//! the body, which cancels the generation); before the first byte is written actix-web does
//! not tell the handler, so each plain-TCP connection keeps a duplicate of its socket and the
//! handler peeks at it now and then: end-of-file or an error means the client is gone, and
//! dropping the generation cancels it (its KV blocks are freed at the engine's next step).

use std::any::Any;
use std::future::Future;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use actix_web::HttpRequest;
use socket2::{SockRef, Socket};

use super::errors::ApiError;

/// How often a waiting handler checks its connection.
const POLL: Duration = Duration::from_millis(200);

/// A duplicate of the connection's socket (same open file, so non-blocking like tokio's).
#[derive(Clone)]
pub struct PeerSocket(Arc<Socket>);

/// `HttpServer::on_connect` hook: remember the socket of plain-TCP connections (TLS ones are
/// not inspected: peeking would see encrypted records, not the end of the stream).
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
        if let Ok(dup) = SockRef::from(tcp).try_clone() {
            ext.insert(PeerSocket(Arc::new(dup)));
        }
    }
    ext.insert(super::pipelining::CloseRequested::default());
}

impl PeerSocket {
    pub fn of(req: &HttpRequest) -> Option<PeerSocket> {
        req.conn_data::<PeerSocket>().cloned()
    }

    /// The client closed or reset the connection. Bytes waiting (a pipelined request) are not
    /// consumed: `peek` leaves them for actix-web.
    pub fn closed(&self) -> bool {
        let mut buf = [MaybeUninit::<u8>::uninit(); 1];
        match self.0.peek(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => false,
            Err(_) => true,
        }
    }

    /// End the connection both ways (data already handed to the kernel is still delivered).
    pub fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }

    async fn wait_closed(&self) {
        while !self.closed() {
            actix_web::rt::time::sleep(POLL).await;
        }
    }
}

/// Run `work` unless the client hangs up first; then `work` is dropped (which cancels a
/// generation) and an error is returned that nobody will read.
pub async fn unless_hung_up<T>(
    peer: Option<PeerSocket>,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let Some(peer) = peer else {
        return work.await;
    };
    tokio::select! {
        r = work => r,
        _ = peer.wait_closed() => Err(ApiError::incomplete("the client closed the connection")),
    }
}
