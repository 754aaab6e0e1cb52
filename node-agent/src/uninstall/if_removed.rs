//! `--if-removed`: the manifests' preStop hook runs on every stop of the agent's pod, but only
//! a removal of Ferrule may uninstall; an upgrade or a restart must leave capture in place (the
//! next agent adopts it). Like istio-cni, the agent tells them apart by its own DaemonSet.
//!
//! Removal: the DaemonSet is gone or being deleted, its namespace is being deleted, or the API
//! refuses the agent (401/403): `kubectl delete -f` removes the agent's ServiceAccount and RBAC
//! together with the DaemonSet, so by the time the pods stop their credentials are often gone.
//! Anything else (the API unreachable, a server error) is retried briefly, then undecided:
//! capture stays, since wrongly uninstalling during an upgrade would let strict pods accept
//! plaintext until the new agent catches up, while a missed removal can be finished by hand.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

/// How long API errors are retried before giving up undecided.
pub const RETRY_FOR: Duration = Duration::from_secs(10);
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// What the API says about the agent's DaemonSet, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ferrule is being removed: uninstall.
    Removed(String),
    /// An upgrade or restart: leave everything in place.
    Stays(String),
    /// The API could not say; leave everything in place.
    Undecided(String),
}

/// Reads DaemonSet `namespace/name` (and the namespace) until the answer is clear or
/// `retry_for` has passed.
pub async fn decide(client: &Client, namespace: &str, name: &str, retry_for: Duration) -> Decision {
    let deadline = Instant::now() + retry_for;
    loop {
        match decide_once(client, namespace, name).await {
            Ok(decision) => return decision,
            Err(e) if Instant::now() >= deadline => {
                return Decision::Undecided(format!("reading DaemonSet {namespace}/{name}: {e}"));
            }
            Err(_) => tokio::time::sleep(RETRY_EVERY).await,
        }
    }
}

async fn decide_once(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Decision, kube::Error> {
    let what = format!("DaemonSet {namespace}/{name}");
    let daemon_set = match Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(found) => found,
        Err(kube::Error::Api(status)) if matches!(status.code, 401 | 403) => {
            return Ok(Decision::Removed(format!(
                "the API refuses the agent ({} {}): its ServiceAccount or RBAC is being \
                 removed with {what}",
                status.code, status.reason
            )));
        }
        Err(e) => return Err(e),
    };
    let Some(daemon_set) = daemon_set else {
        return Ok(Decision::Removed(format!("{what} is gone")));
    };
    if daemon_set.metadata.deletion_timestamp.is_some() {
        return Ok(Decision::Removed(format!("{what} is being deleted")));
    }
    // The namespace controller may delete the pods before the DaemonSet.
    let namespace_deleting = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .ok()
        .flatten()
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some());
    Ok(match namespace_deleting {
        true => Decision::Removed(format!("namespace {namespace} is being deleted")),
        false => Decision::Stays(format!("{what} still exists: an upgrade or a restart")),
    })
}

#[cfg(test)]
mod tests;
