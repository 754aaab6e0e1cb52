//! The `Config.Watch` client: subscribe from the applied version, apply each update atomically,
//! ACK or NACK it, and reconnect with backoff, resuming from where it stopped.

use std::time::Duration;

use ferrule_identity::{SharedBundle, TrustDomain};
use ferrule_proto::v1::{self, config_client::ConfigClient, watch_request::Kind};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::MeshConfig;
use crate::control::status_reason;
use crate::telemetry::{Telemetry, UpdateKind, UpdateResult};
use std::sync::Arc;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Between half and one and a half times `delay`: when a control-plane replica dies, its agents
/// spread their reconnects over the survivors instead of arriving at the same instant.
fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..1.5))
}
/// How often failed handshakes are reported to the control plane (for `ferrule explain`).
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl MeshConfig {
    /// Follows the control plane for as long as the task runs. Each applied version also
    /// updates `bundle` (roots and revocations), which every handshake of this agent verifies
    /// against.
    /// `agent` is what the agent reports about itself (versions, draining), sent on every
    /// change.
    pub fn spawn_watch(
        &self,
        channel: Channel,
        trust_domain: TrustDomain,
        bundle: SharedBundle,
        telemetry: Arc<Telemetry>,
        mut agent: watch::Receiver<v1::AgentInfo>,
    ) -> tokio::task::JoinHandle<()> {
        let config = self.clone();
        tokio::spawn(async move {
            let mut delay = FIRST_RETRY;
            loop {
                let result = config
                    .watch_once(
                        channel.clone(),
                        &trust_domain,
                        &bundle,
                        &telemetry,
                        &mut agent,
                    )
                    .await;
                config.update_stats(|s| s.connected = false);
                telemetry.config_connected(false);
                match result {
                    Ok(()) => {
                        tracing::info!("config watch ended by the control plane; reconnecting");
                        delay = FIRST_RETRY;
                    }
                    Err(status) => tracing::warn!(
                        error = %status_reason(&status),
                        version = config.version(),
                        retry_in_ms = delay.as_millis() as u64,
                        "config watch failed; enforcing the last applied version"
                    ),
                }
                tokio::time::sleep(jittered(delay)).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        })
    }

    async fn watch_once(
        &self,
        channel: Channel,
        td: &TrustDomain,
        bundle: &SharedBundle,
        telemetry: &Telemetry,
        agent: &mut watch::Receiver<v1::AgentInfo>,
    ) -> Result<(), tonic::Status> {
        let (tx, rx) = mpsc::channel(8);
        let current = self.current();
        let subscribe = v1::Subscribe {
            epoch: current.epoch.clone(),
            version: current.version,
        };
        let _ = tx.send(request(Kind::Subscribe(subscribe))).await;
        let info = agent.borrow_and_update().clone();
        let _ = tx.send(request(Kind::Agent(info))).await;
        let mut updates = ConfigClient::new(channel)
            .watch(ReceiverStream::new(rx))
            .await?
            .into_inner();
        self.update_stats(|s| s.connected = true);
        telemetry.config_connected(true);
        tracing::info!(epoch = %current.epoch, version = current.version, "config watch connected");
        let mut last_nack = None;
        let mut report = tokio::time::interval(REPORT_EVERY);
        loop {
            let update = tokio::select! {
                update = updates.message() => match update? {
                    Some(update) => update,
                    None => break,
                },
                Ok(()) = agent.changed() => {
                    let info = agent.borrow_and_update().clone();
                    if tx.send(request(Kind::Agent(info))).await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = report.tick() => {
                    let failures = telemetry.failures.take();
                    if !failures.is_empty() {
                        let report = Kind::Failures(v1::HandshakeFailures { failures });
                        if tx.send(request(report)).await.is_err() {
                            break;
                        }
                    }
                    continue;
                }
            };
            let Some(answer) = self.answer(&update, td, bundle, &mut last_nack) else {
                continue;
            };
            let kind = match update.snapshot {
                true => UpdateKind::Snapshot,
                false => UpdateKind::Delta,
            };
            let result = match answer.kind {
                Some(Kind::Ack(_)) => UpdateResult::Ack,
                _ => UpdateResult::Nack,
            };
            telemetry.config_update(result, kind, update.version);
            if tx.send(answer).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Applies one update; returns the ACK or NACK to send, or nothing for an update built on a
    /// version this agent refused (the control plane rewinds on our NACK and sends a new one).
    fn answer(
        &self,
        update: &v1::ConfigUpdate,
        td: &TrustDomain,
        bundle: &SharedBundle,
        last_nack: &mut Option<u64>,
    ) -> Option<v1::WatchRequest> {
        let current = self.current();
        if !update.snapshot && last_nack.is_some_and(|n| update.base_version == n) {
            return None;
        }
        match current.apply(update, td) {
            Ok(next) => {
                if let Some(pushed) = next.bundle()
                    && current.bundle().map(|b| b.roots()) != Some(pushed.roots())
                {
                    bundle.set(pushed.clone());
                    tracing::info!(roots = pushed.roots().len(), "trust bundle updated");
                }
                bundle.set_revocations(next.revocations().clone());
                tracing::info!(
                    version = update.version,
                    snapshot = update.snapshot,
                    upserts = update.upserts.len(),
                    removals = update.removals.len(),
                    "config applied"
                );
                self.install(next, update.snapshot);
                *last_nack = None;
                Some(request(Kind::Ack(v1::Ack {
                    version: update.version,
                })))
            }
            Err(reason) => {
                tracing::warn!(version = update.version, %reason, "config update refused; keeping version {}", current.version);
                self.update_stats(|s| {
                    s.nacks += 1;
                    s.last_nack = Some(reason.clone());
                });
                *last_nack = Some(update.version);
                Some(request(Kind::Nack(v1::Nack {
                    version: update.version,
                    reason,
                })))
            }
        }
    }
}

fn request(kind: Kind) -> v1::WatchRequest {
    v1::WatchRequest { kind: Some(kind) }
}

#[cfg(test)]
mod jitter_tests {
    use super::*;

    #[test]
    fn reconnect_delays_spread_around_the_backoff() {
        let delays: Vec<Duration> = (0..200).map(|_| jittered(FIRST_RETRY)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= FIRST_RETRY / 2 && *d < FIRST_RETRY * 3 / 2)
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "the delays differ from agent to agent"
        );
    }
}
