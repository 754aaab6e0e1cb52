//! What every control-plane service shares: the issuing CA, the store and the issuance settings.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrule_identity::ca::{IssuedSvid, IssuingCa, SvidRequest};
use ferrule_identity::{SharedBundle, SpiffeId, TrustDomain};
use ferrule_proto::v1;
use tonic::Status;

use crate::agents::AgentSessions;
use crate::config::CertificateConfig;
use crate::mesh_config::MeshConfig;
use crate::store::{CertificateRecord, Store, StoreError, UnixSeconds};

#[derive(Debug)]
pub struct ControlPlane {
    pub trust_domain: TrustDomain,
    pub ca: IssuingCa,
    pub store: Arc<dyn Store>,
    pub certificates: CertificateConfig,
    pub max_join_token_ttl: Duration,
    /// The configuration every agent watches: directory, policies, revocations, bundle.
    pub config: MeshConfig,
    pub agents: Arc<AgentSessions>,
    /// The bundle this control plane verifies callers with, revocations included.
    pub verify_bundle: SharedBundle,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where node attestation, entitlements, workload claims and policies come from.
    pub sources: crate::sources::Sources,
    /// Failed handshakes reported by agents, for `ferrule explain`.
    pub handshakes: crate::handshakes::HandshakeLog,
    /// Per-node call quotas and `Node.Join` rate limits.
    pub quotas: crate::limits::Quotas,
    /// Callers' open connections, closed when their certificate is revoked.
    pub connections: Arc<crate::connections::Connections>,
    /// Turns true when the server starts shutting down, so long-lived streams end and the
    /// graceful shutdown does not wait on them forever.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl ControlPlane {
    pub fn bundle_proto(&self) -> v1::TrustBundle {
        let bundle = self.ca.bundle();
        v1::TrustBundle {
            trust_domain: bundle.trust_domain().to_string(),
            roots: bundle.roots().iter().map(|r| r.to_vec()).collect(),
        }
    }

    /// Signs an SVID for `id` and records it in the inventory before handing it out, so every
    /// certificate in the wild is listed (and can later be revoked). Runs to its end even if the
    /// caller goes away: a certificate recorded but not checked against a concurrent revocation
    /// could escape it.
    pub async fn issue(
        self: &Arc<Self>,
        id: &SpiffeId,
        public_key_spki: &[u8],
        ttl: Duration,
        node: &str,
    ) -> Result<IssuedSvid, Status> {
        let (cp, id, node) = (self.clone(), id.clone(), node.to_owned());
        let public_key_spki = public_key_spki.to_vec();
        uncancellable(async move { cp.issue_recorded(&id, &public_key_spki, ttl, &node).await })
            .await
    }

    async fn issue_recorded(
        &self,
        id: &SpiffeId,
        public_key_spki: &[u8],
        ttl: Duration,
        node: &str,
    ) -> Result<IssuedSvid, Status> {
        let svid = self
            .ca
            .issue(&SvidRequest {
                id,
                public_key_spki,
                ttl,
                dns_names: &[],
                ip_addresses: &[],
            })
            .map_err(|e| {
                tracing::error!(%id, error = %e, "issuing certificate failed");
                Status::internal(format!("issuing certificate failed: {e}"))
            })?;
        let record = CertificateRecord {
            serial: svid.serial.clone(),
            spiffe_id: id.to_string(),
            node: node.to_owned(),
            not_before: unix(svid.not_before),
            not_after: unix(svid.not_after),
        };
        self.store
            .record_certificate(record.clone())
            .await
            .map_err(store_status)?;
        let node_id = SpiffeId::node(&self.trust_domain, node)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(revoked) =
            crate::revocations::revoked_while_issuing(self, &record, node_id.as_str()).await?
        {
            return Err(Status::permission_denied(format!(
                "{revoked} was revoked while its certificate was being issued"
            )));
        }
        tracing::info!(%id, node, serial = %svid.serial, "issued certificate");
        Ok(svid)
    }
}

/// Runs `work` to its end even if the caller is dropped: tonic drops a handler whose client reset
/// the stream or whose connection was cut, and issuance and revocation must not stop half-way.
pub async fn uncancellable<T: Send + 'static>(
    work: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(work)
        .await
        .map_err(|e| Status::internal(format!("the control plane's task failed: {e}")))?
}

pub fn svid_proto(svid: &IssuedSvid) -> v1::Svid {
    v1::Svid {
        leaf: svid.leaf.to_vec(),
        chain: svid.chain.iter().map(|c| c.to_vec()).collect(),
        serial: svid.serial.clone(),
        not_before: unix(svid.not_before) as i64,
        not_after: unix(svid.not_after) as i64,
    }
}

pub fn unix(t: SystemTime) -> UnixSeconds {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn now() -> UnixSeconds {
    unix(SystemTime::now())
}

/// Milliseconds since the epoch, for timestamps agents and the CLI compare with their clocks.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store failure");
    Status::unavailable(format!("control-plane store: {e}"))
}
