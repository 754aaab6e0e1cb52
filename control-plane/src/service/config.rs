//! `Config.Watch`: one stream per agent carrying the mesh configuration as versioned updates.
//!
//! Each stream follows the version channel of [`MeshConfig`] and sends the delta from the last
//! version it sent (optimistically pipelined: the agent applies in order). A NACK rewinds to the
//! last ACKed version and waits for a version newer than the refused one, so a bad update is not
//! resent in a loop while good ones still reach the agent as soon as they exist.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferrule_proto::v1::{self, config_server::Config, watch_request::Kind};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::agents::Session;
use crate::auth::require_node;
use crate::limits::NodeCall;
use crate::state::ControlPlane;

/// How long a new stream may take to say where it resumes from.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Updates queued towards one agent; a slow agent holds up only its own stream.
const QUEUE: usize = 4;

#[derive(Debug, Clone)]
pub struct ConfigService(pub Arc<ControlPlane>);

type UpdateStream = Pin<Box<dyn Stream<Item = Result<v1::ConfigUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl Config for ConfigService {
    type WatchStream = UpdateStream;

    async fn watch(
        &self,
        request: Request<Streaming<v1::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let node = require_node(&request)?;
        let mut incoming = request.into_inner();
        let subscribe = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, incoming.message()).await {
            Ok(Ok(Some(v1::WatchRequest {
                kind: Some(Kind::Subscribe(subscribe)),
            }))) => subscribe,
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no subscribe message in time")),
            Ok(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a watch must be a subscribe",
                ));
            }
        };
        let cp = self.0.clone();
        let applied = match subscribe.epoch == cp.config.epoch() {
            true => subscribe.version,
            false => 0,
        };
        tracing::info!(%node, epoch = %subscribe.epoch, version = subscribe.version, "config watch started");
        let session = cp.agents.connect(&node, applied);
        let (tx, rx) = mpsc::channel(QUEUE);
        let stream = AgentStream {
            cp,
            node,
            session,
            incoming,
            tx,
            agent_epoch: subscribe.epoch,
            acked: subscribe.version,
            sent: None,
            refused: None,
        };
        tokio::spawn(stream.run());
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The state of one agent's stream.
struct AgentStream {
    cp: Arc<ControlPlane>,
    node: String,
    session: Session,
    incoming: Streaming<v1::WatchRequest>,
    tx: mpsc::Sender<Result<v1::ConfigUpdate, Status>>,
    /// The epoch of the agent's applied version; ours once it has ACKed anything we sent.
    agent_epoch: String,
    acked: u64,
    /// The last version sent and not yet answered.
    sent: Option<u64>,
    /// The last NACKed version: nothing is sent until the configuration moves past it.
    refused: Option<u64>,
}

impl AgentStream {
    async fn run(mut self) {
        let mut versions = self.cp.config.subscribe();
        let mut closing = self.cp.closing.clone();
        loop {
            let current = *versions.borrow_and_update();
            if let Err(()) = self.send_if_behind(current).await {
                break;
            }
            tokio::select! {
                changed = versions.changed() => if changed.is_err() { break },
                message = self.incoming.message() => match message {
                    Ok(Some(message)) => self.answer(message),
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(node = %self.node, error = %status, "config watch ended");
                        break;
                    }
                },
                _ = closing.wait_for(|closing| *closing) => break,
            }
        }
        tracing::info!(node = %self.node, acked = self.acked, "config watch closed");
    }

    async fn send_if_behind(&mut self, current: u64) -> Result<(), ()> {
        let ours = self.cp.config.epoch();
        // Once an update is on its way, the agent will hold our epoch when it reads the next.
        let (epoch, base) = match self.sent {
            Some(sent) => (ours.as_str(), sent),
            None => (self.agent_epoch.as_str(), self.acked),
        };
        let behind = epoch != ours || current > base;
        if !behind || self.refused.is_some_and(|refused| current <= refused) {
            return Ok(());
        }
        let update = self.cp.config.update_since(epoch, base);
        self.session.sent(update.snapshot);
        self.sent = Some(update.version);
        self.tx.send(Ok(update)).await.map_err(|_| ())
    }

    /// Keeps a report within the node's quota and the log's bounds; the rest is counted.
    fn record_failures(&self, failures: Vec<v1::HandshakeFailure>) {
        let (cp, node) = (&self.cp, self.node.as_str());
        if cp
            .quotas
            .node_call(&cp.metrics, node, NodeCall::HandshakeReport)
            .is_err()
        {
            return;
        }
        let trimmed = cp.handshakes.add(node, failures);
        for (reason, count) in [
            ("too_many_failures", trimmed.over_count),
            ("field_too_long", trimmed.field_too_long),
            ("detail_cut", trimmed.detail_cut),
        ] {
            if count > 0 {
                cp.metrics.report_trimmed(node, reason, count);
                tracing::info!(node, reason, count, "handshake failure report trimmed");
            }
        }
        cp.metrics.handshake_log_evicted(trimmed.evicted);
    }

    fn answer(&mut self, message: v1::WatchRequest) {
        match message.kind {
            Some(Kind::Ack(ack)) => {
                self.agent_epoch = self.cp.config.epoch();
                self.acked = ack.version;
                if self.sent == Some(ack.version) {
                    self.sent = None;
                }
                self.session.acked(ack.version);
                tracing::debug!(node = %self.node, version = ack.version, "config applied");
            }
            Some(Kind::Nack(nack)) => {
                tracing::warn!(node = %self.node, version = nack.version, reason = %nack.reason, "agent refused a configuration update");
                self.session.nacked(nack.version, &nack.reason);
                self.refused = Some(nack.version);
                self.sent = None;
            }
            Some(Kind::Failures(report)) => self.record_failures(report.failures),
            Some(Kind::Agent(info)) => {
                tracing::info!(node = %self.node, version = %info.version, program_version = info.program_version, draining = info.draining, predecessor = %info.predecessor_version, "agent reported its state");
                self.session.reported(info);
            }
            Some(Kind::Subscribe(_)) | None => {
                tracing::warn!(node = %self.node, "unexpected message on a config watch; ignored");
            }
        }
    }
}
