//! The small HTTP/1.1 servers of the Ferrule binaries (metrics, the pods' peer-identity
//! endpoint, the agent's enrollment API): an already-bound listener, one task per connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

pub type Reply = Response<Full<Bytes>>;

/// A client that sends no complete request head within this long is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of file descriptors, say) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Where connections come from: TCP for metrics and the peer endpoint, a Unix socket for the
/// enrollment API.
pub trait Listener: Send + Sync {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept_stream(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept_stream(&self) -> io::Result<TcpStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept_stream(&self) -> io::Result<UnixStream> {
        self.accept().await.map(|(stream, _)| stream)
    }
}

/// Answers every request on `listener` with `respond`, computed in memory, until `shutdown`
/// completes; `what` names the server in logs.
pub async fn serve<F>(
    listener: TcpListener,
    what: &'static str,
    respond: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&Request<Incoming>) -> Reply + Send + Sync + 'static,
{
    let respond = move |req: Request<Incoming>| std::future::ready(respond(&req));
    serve_async(listener, what, respond, shutdown).await;
}

/// [`serve`] for answers that take the whole request (a body to read) and may wait.
pub async fn serve_async<L, F, A>(
    listener: L,
    what: &'static str,
    respond: F,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    F: Fn(Request<Incoming>) -> A + Send + Sync + 'static,
    A: Future<Output = Reply> + Send + 'static,
{
    let respond = Arc::new(respond);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept_stream() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, server = what, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let respond = respond.clone();
        tokio::spawn(serve_connection(stream, what, move |req| respond(req)));
    }
}

/// Answers the requests of one accepted connection with `respond` until the client closes it.
pub async fn serve_connection<S, F, A>(stream: S, what: &'static str, respond: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> A + Send + Sync + 'static,
    A: Future<Output = Reply> + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let reply = respond(req);
        async move { Ok::<_, Infallible>(reply.await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, server = what, "connection ended");
    }
}
