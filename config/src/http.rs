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

/// A limit of [`serve_limited`] that refused or cut a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpLimit {
    /// `max_connections` were open: the new one was closed unanswered.
    Connections,
    /// No complete request head within `header_read_timeout`.
    HeaderReadTimeout,
}

/// What one client may take from a server; `on_hit` hears each refusal (for a metric).
#[derive(Clone)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub on_hit: Arc<dyn Fn(HttpLimit) + Send + Sync>,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: tokio::sync::Semaphore::MAX_PERMITS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            on_hit: Arc::new(|_| {}),
        }
    }
}
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
    serve_limited(listener, what, respond, shutdown, ServeLimits::default()).await;
}

/// [`serve_async`] within `limits`: a connection beyond `max_connections` is closed at once.
pub async fn serve_limited<L, F, A>(
    listener: L,
    what: &'static str,
    respond: F,
    shutdown: impl Future<Output = ()>,
    limits: ServeLimits,
) where
    L: Listener,
    F: Fn(Request<Incoming>) -> A + Send + Sync + 'static,
    A: Future<Output = Reply> + Send + 'static,
{
    let respond = Arc::new(respond);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                server = what,
                limit = limits.max_connections,
                "connection refused: too many open"
            );
            (limits.on_hit)(HttpLimit::Connections);
            continue;
        };
        let (respond, limits) = (respond.clone(), limits.clone());
        tokio::spawn(async move {
            let respond = move |req| respond(req);
            if serve_within(stream, what, respond, limits.header_read_timeout).await {
                tracing::warn!(server = what, "client sent no request head in time; closed");
                (limits.on_hit)(HttpLimit::HeaderReadTimeout);
            }
            drop(slot);
        });
    }
}

/// Answers the requests of one accepted connection with `respond` until the client closes it.
pub async fn serve_connection<S, F, A>(stream: S, what: &'static str, respond: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> A + Send + Sync + 'static,
    A: Future<Output = Reply> + Send + 'static,
{
    serve_within(stream, what, respond, HEADER_READ_TIMEOUT).await;
}

/// [`serve_connection`]; true if it ended because no request head came within `header_timeout`.
async fn serve_within<S, F, A>(
    stream: S,
    what: &'static str,
    respond: F,
    header_timeout: Duration,
) -> bool
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
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    match served {
        Ok(()) => false,
        Err(e) => {
            tracing::debug!(error = %e, server = what, "connection ended");
            e.is_timeout()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server answering 200 within `limits`, and the limits it reported.
    async fn limited(
        max_connections: usize,
        header_read_timeout: Duration,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<HttpLimit>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        let limits = ServeLimits {
            max_connections,
            header_read_timeout,
            on_hit: Arc::new(move |limit| seen.lock().unwrap().push(limit)),
        };
        let ok = |_| std::future::ready(Response::new(Full::new(Bytes::from_static(b"ok"))));
        tokio::spawn(serve_limited(
            listener,
            "test",
            ok,
            std::future::pending(),
            limits,
        ));
        (addr, hits)
    }

    /// The first bytes the server sends on `stream` after `request`, or what ended it.
    async fn answer(stream: &mut TcpStream, request: &[u8]) -> io::Result<String> {
        stream.write_all(request).await?;
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the server neither answered nor closed")?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_unanswered_until_one_ends() {
        let (addr, hits) = limited(2, Duration::from_secs(10)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            assert!(answer(&mut stream, GET).await.unwrap().contains("200"));
            held.push(stream);
        }
        let mut third = TcpStream::connect(addr).await.unwrap();
        let refused = answer(&mut third, GET).await;
        assert!(
            refused.as_ref().map_or(true, String::is_empty),
            "beyond the cap: {refused:?}"
        );
        assert_eq!(hits.lock().unwrap().clone(), vec![HttpLimit::Connections]);
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = TcpStream::connect(addr).await.unwrap();
        assert!(answer(&mut again, GET).await.unwrap().contains("200"));
    }

    #[tokio::test]
    async fn a_client_that_sends_no_request_head_is_closed_at_the_timeout() {
        let (addr, hits) = limited(10, Duration::from_millis(200)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let cut = answer(&mut slow, b"GET / HTTP/1.1\r\n").await;
        assert!(!cut.as_ref().is_ok_and(|a| a.contains("200")), "{cut:?}");
        assert_eq!(
            hits.lock().unwrap().clone(),
            vec![HttpLimit::HeaderReadTimeout]
        );
    }
}
