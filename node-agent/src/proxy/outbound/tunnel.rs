//! One pooled HBONE connection: its stream accounting and opening a `CONNECT` stream on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use rustls::sign::CertifiedKey;
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
    max_streams: usize,
    pub(super) state: Arc<State>,
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
        max_streams: usize,
    ) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            address,
            sender,
            cert,
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
