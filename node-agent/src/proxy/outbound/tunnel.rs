//! One pooled HBONE connection: its stream accounting and opening a `CONNECT` stream on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrule_identity::TrustBundle;
use ferrule_identity::verify::Usage;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::proxy::{HboneStream, OutboundError, StreamSlot};

/// What the connection's driver task shares with the pool.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) active: Arc<AtomicUsize>,
    /// Streams ever opened; unchanged between two idle checks means no new use.
    pub(super) opened: AtomicU64,
    pub(super) closed: AtomicBool,
    pub(super) close: Notify,
}

#[derive(Debug)]
pub(super) struct Tunnel {
    id: u64,
    address: SocketAddr,
    sender: SendRequest<Bytes>,
    /// The source certificate this connection authenticated with: after a renewal, new
    /// streams go to a new connection and this one idles out.
    cert: Arc<CertifiedKey>,
    /// Both ends' credentials, checked again when revocations or the trust bundle change.
    pub(super) credentials: Credentials,
    max_streams: usize,
    pub(super) state: Arc<State>,
}

/// What a connection was authenticated with.
#[derive(Debug, Clone, Default)]
pub(super) struct Credentials {
    pub(super) source_serial: String,
    /// The destination's chain as it presented it (leaf first).
    pub(super) peer_chain: Vec<CertificateDer<'static>>,
}

impl Credentials {
    /// Why the connection may no longer be used under `bundle` (its revocations included):
    /// our certificate or the peer's was revoked, or the peer's no longer chains to a root.
    pub(super) fn untrusted(&self, bundle: &TrustBundle, now: SystemTime) -> Option<String> {
        if bundle.revocations().serial_revoked(&self.source_serial) {
            return Some(format!("our certificate {} is revoked", self.source_serial));
        }
        let verified = bundle.verify(&self.peer_chain, now, Usage::Server);
        verified
            .err()
            .map(|e| format!("the destination's certificate: {e}"))
    }
}

pub(super) enum Open {
    Stream(HboneStream),
    /// The connection failed before the request went out: safe to try another.
    NotSent(h2::Error),
    Failed(OutboundError),
}

impl Tunnel {
    pub(super) fn new(
        address: SocketAddr,
        sender: SendRequest<Bytes>,
        cert: Arc<CertifiedKey>,
        credentials: Credentials,
        max_streams: usize,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            address,
            sender,
            cert,
            credentials,
            max_streams,
            state: Arc::default(),
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }

    /// Ends the connection now; its streams fail.
    pub(super) fn close(&self) {
        self.state.closed.store(true, Ordering::Release);
        self.state.close.notify_one();
    }

    /// Claims a stream slot if the connection is alive, made with `cert` and below both our
    /// limit and the peer's `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub(super) fn try_reserve(&self, cert: &Arc<CertifiedKey>) -> Option<StreamSlot> {
        if self.is_closed() || !Arc::ptr_eq(&self.cert, cert) {
            return None;
        }
        let limit = self.max_streams.min(self.sender.current_max_send_streams());
        let active = &self.state.active;
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.state.opened.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot(active.clone()))
    }

    pub(super) async fn open(
        &self,
        authority: SocketAddr,
        slot: StreamSlot,
        (deadline, budget): (Instant, Duration),
    ) -> Open {
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri(authority.to_string())
            .body(())
            .expect("a socket address is a valid authority");
        let address = self.address;
        let timed_out = || {
            Open::Failed(OutboundError::Timeout {
                address,
                after: budget,
            })
        };
        let sending = async {
            let mut sender = self.sender.clone().ready().await?;
            sender.send_request(request, false)
        };
        // Waiting for a stream slot the peer grants counts against the same budget.
        let (response, send) = match tokio::time::timeout_at(deadline, sending).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(e)) => {
                self.state.closed.store(true, Ordering::Release);
                return Open::NotSent(e);
            }
            Err(_) => return timed_out(),
        };
        let response = match tokio::time::timeout_at(deadline, response).await {
            Ok(Ok(response)) => response,
            // The peer is going away (an agent handing over to its successor): it did not
            // process this stream, so another connection may carry it.
            Ok(Err(source)) if never_processed(&source) => {
                self.state.closed.store(true, Ordering::Release);
                return Open::NotSent(source);
            }
            Ok(Err(source)) => return Open::Failed(OutboundError::Http2 { address, source }),
            Err(_) => return timed_out(),
        };
        if response.status() != StatusCode::OK {
            let status = response.status();
            return Open::Failed(OutboundError::Status {
                address,
                authority,
                status,
            });
        }
        Open::Stream(HboneStream::new(send, response.into_body(), Some(slot)))
    }
}

/// A stream the server refused unprocessed (RFC 9113 §8.7: REFUSED_STREAM, or above the last
/// stream id of its GOAWAY), which is safe to retry.
fn never_processed(error: &h2::Error) -> bool {
    error.reason() == Some(h2::Reason::REFUSED_STREAM) || error.is_go_away()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferrule_identity::testing::TestCa;
    use ferrule_identity::{RevocationList, SpiffeId};

    use super::*;

    fn credentials(ca: &TestCa) -> (Credentials, String) {
        let id = SpiffeId::parse("spiffe://example.org/ns/shop/sa/db").unwrap();
        let (peer, _) = ca
            .ca
            .issue_with_new_key(&id, Duration::from_secs(3600), &[], &[])
            .unwrap();
        let chain = std::iter::once(peer.leaf.clone())
            .chain(peer.chain.iter().cloned())
            .collect();
        let credentials = Credentials {
            source_serial: "0a".into(),
            peer_chain: chain,
        };
        (credentials, peer.serial)
    }

    #[test]
    fn a_tunnel_is_untrusted_once_either_serial_is_revoked_or_the_root_is_gone() {
        let ca = TestCa::new("example.org");
        let (credentials, peer_serial) = credentials(&ca);
        let bundle = ca.ca.bundle().clone();
        let now = SystemTime::now();
        assert_eq!(credentials.untrusted(&bundle, now), None);

        let ours = RevocationList::new(vec!["0a".to_owned()], vec![]);
        let why = credentials.untrusted(&bundle.clone().with_revocations(Arc::new(ours)), now);
        assert!(why.is_some_and(|w| w.contains("our certificate 0a is revoked")));

        let theirs = RevocationList::new(vec![peer_serial], vec![]);
        let why = credentials.untrusted(&bundle.clone().with_revocations(Arc::new(theirs)), now);
        assert!(
            why.is_some_and(|w| w.contains("revoked")),
            "the destination's serial"
        );

        // A rotation that removed the destination's root.
        let other = TestCa::new("example.org");
        let why = credentials.untrusted(other.ca.bundle(), now);
        assert!(why.is_some_and(|w| w.contains("destination's certificate")));
    }
}
