//! Replica heartbeats: every replica keeps a record of itself under `replicas/` on a short
//! lease, so `Admin.Status` on any replica lists the live ones, and a dead one drops out when
//! its lease expires.

use std::time::Duration;

use etcd_client::{GetOptions, PutOptions};
use serde::{Deserialize, Serialize};

use super::{EtcdStore, backend, decode, encode};
use crate::store::StoreError;

/// A dead replica's record outlives it this long.
pub const HEARTBEAT_LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    pub address: String,
    pub version: u64,
    pub agents: u32,
    pub leader: bool,
}

impl EtcdStore {
    /// Writes this replica's record on a fresh lease of [`HEARTBEAT_LEASE`].
    pub async fn heartbeat(&self, record: &ReplicaRecord) -> Result<(), StoreError> {
        let mut client = self.client();
        let seconds = i64::try_from(HEARTBEAT_LEASE.as_secs()).unwrap_or(10);
        let lease = client
            .lease_grant(seconds, None)
            .await
            .map_err(backend("grant a heartbeat lease"))?
            .id();
        let key = format!("{}replicas/{}", self.keys.prefix(), record.address);
        client
            .put(
                key,
                encode(record)?,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(backend("write this replica's heartbeat"))?;
        Ok(())
    }

    /// The live replicas, and the configuration version the store is at.
    pub async fn replicas(&self) -> Result<(Vec<ReplicaRecord>, u64), StoreError> {
        let prefix = format!("{}replicas/", self.keys.prefix());
        let mut response = self
            .client()
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(backend("list the replicas"))?;
        let replicas = response
            .take_kvs()
            .iter()
            .map(|kv| decode("replicas", kv))
            .collect::<Result<_, _>>()?;
        let version = self
            .get(
                &self.keys.config_version(),
                "read the configuration version",
            )
            .await?
            .map_or(0, |kv| u64::try_from(kv.mod_revision()).unwrap_or(0));
        Ok((replicas, version))
    }
}
