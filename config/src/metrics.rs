//! `GET /metrics` in the Prometheus text format, for every Ferrule binary: a plain HTTP/1.1
//! server on an already-bound listener (loopback by default: metrics name identities).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `registry` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let respond = move |req: &Request<Incoming>| respond(&registry, req);
    crate::http::serve(listener, "metrics", respond, shutdown).await;
}

fn respond(registry: &Registry, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert("content-type", CONTENT_TYPE.parse().expect("constant"));
            response
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[tokio::test]
    async fn serves_the_registry_and_nothing_else() {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        registry.register("ferrule_test_events", "events", counter.clone());
        counter.inc();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(registry), std::future::pending()));
        let get = |path: &'static str| {
            let url = format!("http://{addr}{path}");
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["-sS", "-w", "\n%{http_code}", &url])
                    .output()
                    .unwrap()
            })
        };
        let out = get("/metrics").await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("ferrule_test_events_total 1"), "{text}");
        assert!(text.trim_end().ends_with("200"), "{text}");
        let out = get("/other").await.unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("404"));
        server.abort();
    }
}
