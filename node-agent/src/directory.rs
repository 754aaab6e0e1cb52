//! The agent's copy of the workload directory (destination IP → identity and node), kept current
//! by watching the control plane. Lookups are on the connection path, so they read a snapshot
//! behind an `Arc` and never wait on the network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ferrule_identity::SpiffeId;
use ferrule_proto::v1::{self, workloads_client::WorkloadsClient};
use tokio::sync::watch;
use tonic::transport::Channel;

/// A mesh workload reachable at some IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub uid: String,
    pub id: SpiffeId,
    pub node: String,
}

#[derive(Debug, Default)]
struct Snapshot {
    version: u64,
    by_ip: HashMap<IpAddr, Destination>,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    current: Arc<RwLock<Arc<Snapshot>>>,
    versions: Arc<watch::Sender<u64>>,
}

impl Directory {
    pub fn lookup(&self, ip: IpAddr) -> Option<Destination> {
        self.snapshot().by_ip.get(&ip).cloned()
    }

    pub fn version(&self) -> u64 {
        self.snapshot().version
    }

    /// Completes once the directory has reached `version` or later.
    pub async fn wait_for_version(&self, version: u64) {
        let mut rx = self.versions.subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the directory with `update`; entries that do not parse are skipped and logged.
    pub fn apply(&self, update: v1::Directory) {
        let mut by_ip = HashMap::new();
        for w in update.workloads {
            let Ok(id) = SpiffeId::parse(&w.spiffe_id) else {
                tracing::warn!(uid = %w.uid, id = %w.spiffe_id, "directory entry with a bad SPIFFE ID");
                continue;
            };
            for ip in w.ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                let destination = Destination {
                    uid: w.uid.clone(),
                    id: id.clone(),
                    node: w.node.clone(),
                };
                by_ip.insert(ip, destination);
            }
        }
        let version = update.version;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Snapshot { version, by_ip });
        self.versions.send_replace(version);
        tracing::debug!(version, "directory updated");
    }

    /// Follows the control plane's directory for as long as the task runs, reconnecting with
    /// backoff; the last directory stays in force while disconnected.
    pub fn spawn_watch(&self, channel: Channel) -> tokio::task::JoinHandle<()> {
        let directory = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            loop {
                match directory.watch_once(channel.clone()).await {
                    Ok(()) => delay = Duration::from_millis(200),
                    Err(status) => {
                        tracing::warn!(error = %crate::control::status_reason(&status), retry_in_ms = delay.as_millis() as u64, "directory watch failed; keeping the last directory");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })
    }

    async fn watch_once(&self, channel: Channel) -> Result<(), tonic::Status> {
        let mut stream = WorkloadsClient::new(channel)
            .watch_directory(v1::WatchDirectoryRequest {})
            .await?
            .into_inner();
        while let Some(update) = stream.message().await? {
            self.apply(update);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_ip_of_a_workload_and_skips_bad_entries() {
        let directory = Directory::default();
        directory.apply(v1::Directory {
            version: 7,
            workloads: vec![
                v1::Workload {
                    uid: "a".into(),
                    ips: vec!["10.0.0.1".into(), "fd00::1".into()],
                    node: "n1".into(),
                    spiffe_id: "spiffe://example.org/ns/x/sa/y".into(),
                    ..Default::default()
                },
                v1::Workload {
                    uid: "b".into(),
                    ips: vec!["10.0.0.2".into()],
                    spiffe_id: "not an id".into(),
                    ..Default::default()
                },
            ],
        });
        assert_eq!(directory.version(), 7);
        let hit = directory.lookup("fd00::1".parse().unwrap()).unwrap();
        assert_eq!((hit.uid.as_str(), hit.node.as_str()), ("a", "n1"));
        assert!(directory.lookup("10.0.0.1".parse().unwrap()).is_some());
        assert!(directory.lookup("10.0.0.2".parse().unwrap()).is_none());
    }
}
