//! Starting the agent: authenticate the control plane with the configured bundle, join with the
//! token, then keep the node identity (and every workload identity asked for) renewed.

use std::path::Path;
use std::sync::Arc;

use ferrule_identity::tls::CertSlot;
use ferrule_identity::{SharedBundle, SpiffeId, TrustBundle};
use tokio::sync::watch;

use crate::config::Config;
use crate::control::{self, ControlPlaneAuthority, JoinError};
use crate::identity::{IdentityManager, RenewalPolicy, WorkloadCert};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("trust bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("a join token is required to join the mesh (--join-token or FERRULE_JOIN_TOKEN)")]
    NoJoinToken,
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("the join token is for {got}, but this agent is configured as node {expected:?}")]
    WrongNode { expected: String, got: SpiffeId },
}

/// A joined agent.
pub struct Agent {
    pub node_id: SpiffeId,
    pub identities: IdentityManager,
}

fn load_bundle(config: &Config) -> Result<TrustBundle, AgentError> {
    let bad = |reason: String| AgentError::Bundle {
        path: config.bundle.display().to_string(),
        reason,
    };
    let pem = std::fs::read(&config.bundle).map_err(|e| bad(e.to_string()))?;
    TrustBundle::from_pem(config.trust_domain.clone(), &pem).map_err(|e| bad(e.to_string()))
}

pub async fn start(
    config: &Config,
    join_token: Option<&str>,
    policy: RenewalPolicy,
) -> Result<Agent, AgentError> {
    let bundle = SharedBundle::new(load_bundle(config)?);
    let token = join_token.ok_or(AgentError::NoJoinToken)?;
    let (node_id, node_cert) = control::join(config.control_plane, &bundle, token).await?;
    if let Some(expected) = &config.node_name
        && SpiffeId::node(&config.trust_domain, expected).ok().as_ref() != Some(&node_id)
    {
        return Err(AgentError::WrongNode {
            expected: expected.clone(),
            got: node_id,
        });
    }
    tracing::info!(
        id = %node_id, serial = %node_cert.serial,
        expires_in_s = control::seconds_until(node_cert.not_after),
        "joined the mesh"
    );
    let node_slot = Arc::new(CertSlot::new(node_cert.certified.clone()));
    let authority = ControlPlaneAuthority::new(config.control_plane, &bundle, node_slot.clone());
    let identities = IdentityManager::new(Arc::new(authority), bundle, policy);
    let updates = identities.adopt(node_cert);
    tokio::spawn(follow_node_cert(
        updates,
        node_slot,
        config.data_dir.clone(),
    ));
    Ok(Agent {
        node_id,
        identities,
    })
}

/// Presents each renewed node certificate to the control plane and records the public chain.
async fn follow_node_cert(
    mut updates: watch::Receiver<Option<Arc<WorkloadCert>>>,
    slot: Arc<CertSlot>,
    data_dir: Option<std::path::PathBuf>,
) {
    loop {
        let current = updates.borrow_and_update().clone();
        if let Some(cert) = current {
            slot.set(cert.certified.clone());
            if let Some(dir) = &data_dir {
                write_public_chain(dir, &cert);
            }
        }
        if updates.changed().await.is_err() {
            return;
        }
    }
}

/// Certificates only: the key never leaves memory.
fn write_public_chain(dir: &Path, cert: &WorkloadCert) {
    let pem = ferrule_identity::pem_encode_certs(&cert.certified.cert);
    let path = dir.join("node-cert.pem");
    let tmp = dir.join(".node-cert.pem.tmp");
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, pem))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not write the node certificate");
    }
}
