//! The HTTP/1.1 side: accept loop on an already-bound listener, one task per connection, whole
//! request bodies in, JSON or a chunked watch stream out.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::double::{Inner, stopped};
use crate::routes::{self, Reply};
use crate::status::{Reason, Status};
use crate::watch;

/// The API server's default request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

type Body = UnsyncBoxBody<Bytes, Infallible>;

pub(crate) fn spawn(inner: Arc<Inner>, listener: TcpListener) -> io::Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut shutdown = inner.shutdown.subscribe();
    let generation = *shutdown.borrow();
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = stopped(&mut shutdown, generation) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        let inner = inner.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |request| answer(inner.clone(), request));
                            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await {
                                tracing::debug!(error = %e, "kube double connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kube double accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    });
    Ok(address)
}

async fn answer(
    inner: Arc<Inner>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let status = Status::new(Reason::BadRequest, format!("reading the request body: {e}"));
            return Ok(json(status.code(), &status.to_json()));
        }
    };
    let reply = routes::handle(&inner, &parts, &body);
    Ok(match reply {
        Reply::Json(code, value) => json(code, &value),
        Reply::Text(code, text) => respond(
            code,
            "text/plain",
            Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync(),
        ),
        Reply::Watch(request) => {
            let events =
                ReceiverStream::new(watch::start(inner, request)).map(|line| Ok(Frame::data(line)));
            respond(
                200,
                "application/json",
                StreamBody::new(events).boxed_unsync(),
            )
        }
    })
}

fn json(code: u16, value: &serde_json::Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    respond(
        code,
        "application/json",
        Full::new(Bytes::from(bytes)).boxed_unsync(),
    )
}

fn respond(code: u16, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
