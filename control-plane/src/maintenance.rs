//! Store maintenance, a singleton job: revocations of expired certificates leave the pushed
//! configuration (and the CRL); expired certificate records stay listed a week (for `ferrule
//! certs` and audits), then go; used and expired join tokens go a day after expiry. With the embedded store this process runs it;
//! with etcd, only the elected replica does, through a store handle fenced by its leadership,
//! and it stops as soon as that leadership is lost.

use std::sync::Arc;
use std::time::Duration;

use crate::state::ControlPlane;
use crate::store::etcd::ReplicaRecord;
use crate::store::{EtcdStore, Store};

const EVERY: Duration = Duration::from_secs(3600);
/// Inventory records are kept this long past expiry, for audits.
const KEEP_EXPIRED: u64 = 7 * 24 * 3600;
/// The leader's lease: another replica takes over at most this long after the leader dies.
pub const LEADER_LEASE: Duration = Duration::from_secs(10);
const JOB: &str = "maintenance";

pub async fn run(cp: Arc<ControlPlane>, candidate: String) {
    match cp.store.as_etcd() {
        None => {
            cp.metrics.leading(true);
            maintain(&cp, cp.store.as_ref()).await;
        }
        Some(etcd) => lead(&cp, etcd, &candidate).await,
    }
}

/// Campaigns, runs the job while leading, and campaigns again after losing.
async fn lead(cp: &ControlPlane, etcd: &EtcdStore, candidate: &str) {
    loop {
        let mut leadership = match etcd.campaign(JOB, candidate, LEADER_LEASE).await {
            Ok(leadership) => leadership,
            Err(error) => {
                tracing::warn!(%error, "campaigning for the singleton jobs failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        cp.metrics.leading(true);
        tracing::info!(
            candidate,
            fence = leadership.fence.create_revision,
            "this replica now leads the singleton jobs"
        );
        let fenced = etcd.fenced(leadership.fence.clone());
        tokio::select! {
            () = maintain(cp, &fenced) => {}
            () = leadership.lost() => {
                tracing::warn!(candidate, "lost the leadership of the singleton jobs; stopped them");
            }
        }
        cp.metrics.leading(false);
    }
}

async fn maintain(cp: &ControlPlane, store: &dyn Store) {
    loop {
        once(cp, store).await;
        tokio::time::sleep(EVERY).await;
    }
}

/// One round; failures are logged and retried next round.
pub async fn once(cp: &ControlPlane, store: &dyn Store) {
    let now = crate::state::now();
    let expired = crate::revocations::expired(cp, now);
    if !expired.is_empty() {
        match cp.config.apply(store, expired).await {
            Ok(_) => crate::revocations::refresh(cp),
            Err(error) => {
                tracing::warn!(%error, "dropping revocations of expired certificates failed");
            }
        }
    }
    if let Err(error) = store
        .prune_certificates(now.saturating_sub(KEEP_EXPIRED))
        .await
    {
        tracing::warn!(%error, "pruning expired certificate records failed");
    }
    if let Err(error) = store.prune_tokens(now).await {
        tracing::warn!(%error, "pruning join tokens failed");
    }
}

/// How often a replica renews its heartbeat (well inside its lease).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// Keeps this replica's record in a shared store fresh, for `ferrule status` on any replica.
pub async fn heartbeat(cp: Arc<ControlPlane>, address: String) {
    let Some(etcd) = cp.store.as_etcd() else {
        return;
    };
    loop {
        let record = ReplicaRecord {
            address: address.clone(),
            version: cp.config.version(),
            agents: cp.agents.list().iter().filter(|a| a.connected).count() as u32,
            leader: cp.metrics.is_leader(),
        };
        if let Err(error) = etcd.heartbeat(&record).await {
            tracing::debug!(%error, "replica heartbeat failed");
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}
