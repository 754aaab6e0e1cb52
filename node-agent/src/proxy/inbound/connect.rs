//! One `CONNECT` stream: check the request, ask the target, answer, relay.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use tracing::{debug, info, warn};

use super::resets::PeerResets;
use super::{Admitted, Finished, InboundRefusal, InboundTarget, Peer};
use crate::proxy::{HboneStream, relay_until};

/// The same budget a client gives the whole stream setup (`PoolConfig::connect_timeout`).
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: Arc<Peer>,
    target: Arc<dyn InboundTarget>,
    resets: Arc<PeerResets>,
) {
    let (parts, recv) = request.into_parts();
    let dst = match connect_destination(&parts.method, &parts.uri) {
        Ok(dst) => dst,
        Err(refusal) => return refuse(&mut respond, &peer, &parts.uri.to_string(), &refusal),
    };
    let admitted = tokio::select! {
        admitted = connect_within(target.as_ref(), &peer, dst) => match admitted {
            Ok(admitted) => admitted,
            Err(refusal) => return refuse(&mut respond, &peer, &dst.to_string(), &refusal),
        },
        // A client that gave up (its own setup budget ran out) resets the stream: stop
        // connecting for it rather than hold a half-made connection to the app.
        reset = poll_fn(|cx| respond.poll_reset(cx)) => {
            resets.record();
            return debug!(peer = %peer.id, %dst, reset = ?reset.ok(), "peer reset the CONNECT before it was answered");
        }
    };
    let Admitted {
        tcp,
        decision,
        rule,
        until,
        keep: _keep,
    } = admitted;
    let _ = tcp.set_nodelay(true);
    let send = match respond.send_response(response(StatusCode::OK), false) {
        Ok(send) => send,
        Err(e) => {
            resets.record();
            return debug!(peer = %peer.id, %dst, error = %e, "peer gone before the CONNECT answer");
        }
    };
    let started = Instant::now();
    let (relayed, cut) = relay_until(HboneStream::new(send, recv, None), tcp, until).await;
    let duration = started.elapsed();
    if reset_before_sending(&relayed) {
        resets.record();
    }
    debug!(
        direction = "inbound",
        peer = %peer.id,
        %dst,
        %decision,
        bytes_received = relayed.tunnel_to_tcp,
        bytes_sent = relayed.tcp_to_tunnel,
        duration_ms = duration.as_millis() as u64,
        error = relayed.result.as_ref().err().map(tracing::field::display),
        "HBONE connection closed"
    );
    if let Some(cut) = &cut {
        info!(peer = %peer.id, %dst, reason = %cut, "live connection cut: no longer allowed");
    }
    target.finished(
        &peer,
        &Finished {
            destination: dst,
            decision: &decision,
            rule: &rule,
            relayed: &relayed,
            cut: cut.as_ref(),
            duration,
        },
    );
}

/// A stream that ended in a reset before the peer sent a byte: what HTTP/2 rapid reset makes
/// of every stream the agent managed to answer first.
fn reset_before_sending(relayed: &crate::proxy::Relayed) -> bool {
    relayed.tunnel_to_tcp == 0
        && relayed
            .result
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Asks `target` within [`APP_CONNECT_TIMEOUT`]: an app that does not accept is unreachable.
async fn connect_within(
    target: &dyn InboundTarget,
    peer: &Peer,
    dst: SocketAddr,
) -> Result<Admitted, InboundRefusal> {
    tokio::time::timeout(APP_CONNECT_TIMEOUT, target.connect(peer, dst))
        .await
        .unwrap_or_else(|_| {
            let timed_out = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{dst} did not accept within {APP_CONNECT_TIMEOUT:?}"),
            );
            Err(InboundRefusal::Unreachable(timed_out))
        })
}

/// The original destination from `:authority`; HBONE carries `ip:port`, never a host name.
/// Public for the fuzz targets (`fuzz/`): it reads what any peer with a certificate sends.
pub fn connect_destination(method: &Method, uri: &http::Uri) -> Result<SocketAddr, InboundRefusal> {
    if method != Method::CONNECT {
        return Err(InboundRefusal::BadRequest(format!(
            "method {method}, expected CONNECT"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| InboundRefusal::BadRequest("no :authority".into()))?;
    authority
        .as_str()
        .parse()
        .map_err(|_| InboundRefusal::BadRequest(format!(":authority {authority} is not ip:port")))
}

fn refuse(respond: &mut SendResponse<Bytes>, peer: &Peer, dst: &str, refusal: &InboundRefusal) {
    let status = refusal.status();
    warn!(peer = %peer.id, %dst, reason = refusal.reason(), status = status.as_u16(), error = %refusal, "HBONE CONNECT refused");
    let _ = respond.send_response(response(status), true);
}

fn response(status: StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_must_be_a_socket_address() {
        let connect = |uri: &str| connect_destination(&Method::CONNECT, &uri.parse().unwrap());
        assert_eq!(
            connect("10.0.0.7:8080").unwrap(),
            "10.0.0.7:8080".parse().unwrap()
        );
        assert_eq!(
            connect("[fd00::7]:443").unwrap(),
            "[fd00::7]:443".parse().unwrap()
        );
        for bad in ["svc.ns.svc.cluster.local:80", "10.0.0.7"] {
            let refusal = connect(bad).map(|a| a.to_string()).expect_err(bad);
            assert_eq!(
                refusal.status(),
                StatusCode::BAD_REQUEST,
                "{bad}: {refusal}"
            );
        }
        let get = connect_destination(&Method::GET, &"10.0.0.7:80".parse().unwrap()).unwrap_err();
        assert_eq!(get.status(), StatusCode::BAD_REQUEST, "{get}");
    }
}
