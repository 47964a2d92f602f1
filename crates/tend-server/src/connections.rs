//! The connection loop: hyper's HTTP/1.1 server under bounds that hold
//! before any request is authenticated (issue 8). `axum::serve` has no
//! header timeout and no connection cap, so the daemon accepts and serves
//! connections itself:
//!
//! - at most [`Limits::max_connections`] are open at once; one more is
//!   answered `503` with a JSON error and closed at once (the answer and
//!   the drain of what the client sent are bounded to one second, and at
//!   most [`REFUSING_AT_ONCE`] are being refused at a time, so a flood
//!   costs a bounded number of descriptors);
//! - each must send its request headers within [`Limits::header_timeout`]
//!   (hyper's `header_read_timeout`; the clock starts when the connection
//!   is accepted or when its previous response was sent, so idle and
//!   half-open connections, and headers trickled a byte at a time, are all
//!   closed by it);
//! - bodies are bounded in size and time by [`crate::guard`].
//!
//! At shutdown the loop stops accepting, asks every connection to finish
//! its request in flight (long-lived responses end when the state is
//! stopped), and returns once all are closed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::Limits;

/// Connections being answered 503 at one time; beyond that they are
/// closed without an answer.
pub const REFUSING_AT_ONCE: usize = 64;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for
/// the open connections to close.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let (stop, stopped) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let conn = connection(http.clone(), stream, app.clone(), slot, stopped.clone());
                tokio::spawn(conn);
            }
            Err(_) => {
                if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        limit = limits.max_connections,
                        "connection limit reached; refusing new connections with 503"
                    );
                    warned = Some(Instant::now());
                }
                refuse(stream, &refusing);
            }
        }
    }
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Serves one connection, holding its slot until it is closed.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    app: Router,
    _slot: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut conn = std::pin::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        _ = stopped.wait_for(|s| *s) => true,
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// A failed accept: a connection reset before it was accepted is the
/// peer's business; anything else (out of descriptors) is logged and
/// retried after a pause, not in a hot loop.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a connection over the limit with a 503 and closes it.
fn refuse(stream: TcpStream, refusing: &Arc<Semaphore>) {
    // Past the bound of refusals in flight, dropping closes it at once.
    let Ok(permit) = refusing.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(Duration::from_secs(1), busy(stream)).await;
    });
}

/// Writes the 503, ends the write side, and reads what the client sent
/// until it closes, so that closing does not reset the connection before
/// the client has read the answer.
async fn busy(stream: TcpStream) -> std::io::Result<()> {
    let body = r#"{"error":"the daemon has as many connections open as it allows (TEND_MAX_CONNECTIONS); retry shortly"}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sent = 0;
    while sent < reply.len() {
        stream.writable().await?;
        match stream.try_write(&reply.as_bytes()[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let std = stream.into_std()?;
    std.shutdown(std::net::Shutdown::Write)?;
    let stream = TcpStream::from_std(std)?;
    let mut sink = [0u8; 4096];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}
