//! The HTTP side of the peer-identity endpoint.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use ferrule_config::http::{Reply, ServeLimits};

use super::{NotFound, PeerDirectory};
use crate::lifecycle::Drain;

/// Serves the pod's peer-identity endpoint until the agent drains (its successor serves it),
/// within `limits` (the pod's own: each pod has its listener).
pub async fn serve(
    listener: TcpListener,
    peers: Arc<PeerDirectory>,
    drain: Drain,
    limits: ServeLimits,
) {
    let answer = move |req: Request<Incoming>| std::future::ready(answer(&peers, &req));
    drain.accepting().await;
    let draining = async move { drain.draining().await };
    ferrule_config::http::serve_limited(listener, "peer endpoint", answer, draining, limits).await;
}

fn answer(peers: &PeerDirectory, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET || req.uri().path() != "/v1/peer" {
        return error(
            StatusCode::NOT_FOUND,
            "GET /v1/peer?local=IP:PORT[&remote=IP:PORT]".into(),
        );
    }
    let (local, remote) = match query(req.uri().query().unwrap_or("")) {
        Ok(addrs) => addrs,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match peers.find(local, remote) {
        Ok(info) => json(StatusCode::OK, &info),
        Err(NotFound::None) => error(
            StatusCode::NOT_FOUND,
            format!("no mesh connection of this pod has local address {local} (and that remote)"),
        ),
        Err(NotFound::Ambiguous(n)) => error(
            StatusCode::BAD_REQUEST,
            format!("{n} connections have local address {local}: add remote=IP:PORT"),
        ),
    }
}

fn query(text: &str) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    let mut local = None;
    let mut remote = None;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "local" => &mut local,
            "remote" => &mut remote,
            other => return Err(format!("unknown parameter {other:?}; use local and remote")),
        };
        let value = value
            .replace("%3A", ":")
            .replace("%5B", "[")
            .replace("%5D", "]");
        let addr = value
            .parse::<SocketAddr>()
            .map_err(|_| format!("{key}={value:?} is not IP:PORT"))?;
        *slot = Some(addr);
    }
    Ok((local.ok_or("local=IP:PORT is required")?, remote))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("constant"),
    );
    response
}

fn error(status: StatusCode, message: String) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_addresses() {
        let (local, remote) = query("local=127.0.0.1:4000&remote=10.0.0.1%3A80").unwrap();
        assert_eq!(local.port(), 4000);
        assert_eq!(remote.unwrap().port(), 80);
        assert!(query("remote=10.0.0.1:80").unwrap_err().contains("local"));
        assert!(query("local=nope").unwrap_err().contains("IP:PORT"));
        assert!(
            query("local=1.2.3.4:5&x=1")
                .unwrap_err()
                .contains("unknown")
        );
    }
}
