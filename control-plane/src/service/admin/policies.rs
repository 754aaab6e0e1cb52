//! Admin calls on authorization policies and `Explain`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use ferrule_identity::SpiffeId;
use ferrule_policy::{Policy, PolicySet, Request as PolicyRequest, Workload};
use ferrule_proto::v1;
use tonic::Status;

use crate::revocations;
use crate::state::ControlPlane;
use crate::store::ResourceKind;

/// A policy as the config store holds it: its key and canonical JSON.
pub fn policy_resource(policy: &Policy) -> v1::Resource {
    v1::Resource {
        key: policy.key().to_string(),
        kind: Some(v1::resource::Kind::Policy(v1::PolicyDocument {
            json: policy.to_json(),
        })),
    }
}

/// The stored policies, parsed. A stored policy always parsed when it was applied; one that no
/// longer does (written by a newer version) is skipped with a warning rather than failing calls.
pub fn stored(cp: &ControlPlane) -> Vec<Policy> {
    cp.config
        .list(ResourceKind::Policy)
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(v1::resource::Kind::Policy(doc)) => match Policy::from_json(&doc.json) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    tracing::warn!(key = %r.key, error = %e, "stored policy does not parse");
                    None
                }
            },
            _ => None,
        })
        .collect()
}

/// Validates every document, then hands them all to the mode's policy store in one call;
/// nothing is written if any is invalid or if two share a key.
pub async fn apply(
    cp: &ControlPlane,
    request: v1::ApplyPoliciesRequest,
) -> Result<v1::ApplyPoliciesResponse, Status> {
    if request.policies.is_empty() {
        return Err(Status::invalid_argument("no policies to apply"));
    }
    let mut parsed = BTreeMap::new();
    for (i, doc) in request.policies.iter().enumerate() {
        let policy = Policy::from_json(&doc.json).map_err(|e| {
            Status::invalid_argument(format!(
                "policy {} of {}: {e}",
                i + 1,
                request.policies.len()
            ))
        })?;
        let key = policy.key().to_string();
        if parsed.insert(key.clone(), policy).is_some() {
            return Err(Status::invalid_argument(format!(
                "policy {key} appears twice in one request"
            )));
        }
    }
    let store = cp.sources.policies.clone();
    store.apply(cp, parsed.into_values().collect()).await
}

pub fn list(cp: &ControlPlane) -> v1::ListPoliciesResponse {
    let policies = cp
        .config
        .list(ResourceKind::Policy)
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(v1::resource::Kind::Policy(doc)) => Some(doc),
            _ => None,
        })
        .collect();
    v1::ListPoliciesResponse {
        policies,
        version: cp.config.version(),
    }
}

/// Deletes the named policies; unknown names are an error and nothing is deleted.
pub async fn delete(
    cp: &ControlPlane,
    keys: Vec<String>,
) -> Result<v1::DeletePoliciesResponse, Status> {
    if keys.is_empty() {
        return Err(Status::invalid_argument("name the policies to delete"));
    }
    let store = cp.sources.policies.clone();
    store.delete(cp, keys).await
}

/// A workload named by `namespace/name`, uid, or one of its IPs.
pub fn find_workload(cp: &ControlPlane, name: &str) -> Option<v1::Workload> {
    let ip = name.parse::<IpAddr>().ok();
    crate::service::workloads::workloads(cp).find(|w| {
        w.uid == name
            || format!("{}/{}", w.namespace, w.name) == name
            || ip.is_some_and(|ip| w.ips.iter().any(|i| i.parse() == Ok(ip)))
    })
}

/// Splits `ip:port` (or `[v6]:port`); a bare name keeps the port given separately.
fn destination_and_port(destination: &str, port: u32) -> Result<(String, u16), Status> {
    if let Ok(addr) = destination.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Some((name, p)) = destination.rsplit_once(':')
        && let Ok(p) = p.parse::<u16>()
    {
        return Ok((name.to_owned(), p));
    }
    let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        Status::invalid_argument(format!(
            "destination {destination:?} needs a port: <pod or IP>:<port>"
        ))
    })?;
    Ok((destination.to_owned(), port))
}

pub fn explain(
    cp: &ControlPlane,
    request: v1::ExplainRequest,
) -> Result<v1::ExplainResponse, Status> {
    let source_workload = find_workload(cp, &request.source);
    let source = match (SpiffeId::parse(&request.source), &source_workload) {
        (Ok(id), _) => id,
        (Err(_), Some(workload)) => SpiffeId::parse(&workload.spiffe_id)
            .map_err(|e| Status::internal(format!("stored workload identity: {e}")))?,
        (Err(_), None) => {
            return Err(Status::not_found(format!(
                "source {:?} is neither a SPIFFE ID nor a known workload (namespace/name, uid or IP)",
                request.source
            )));
        }
    };
    let (name, port) = destination_and_port(&request.destination, request.port)?;
    let destination = find_workload(cp, &name).ok_or_else(|| {
        Status::not_found(format!(
            "destination {name:?} is not a mesh workload (namespace/name, uid or IP); traffic to it is not authorized by Ferrule"
        ))
    })?;
    let destination_id = SpiffeId::parse(&destination.spiffe_id)
        .map_err(|e| Status::internal(format!("stored workload identity: {e}")))?;
    let policies = PolicySet::new(stored(cp));
    let decision = policies.evaluate(&PolicyRequest {
        source: &source,
        destination: Workload {
            spiffe_id: &destination_id,
            namespace: &destination.namespace,
            service_account: &destination.service_account,
            labels: &destination.labels,
        },
        port,
    });
    let source_ips = source_workload
        .as_ref()
        .map_or(Vec::new(), |w| w.ips.clone());
    let handshake_failures = cp.handshakes.between(
        (source.as_str(), &source_ips),
        (&destination.spiffe_id, &destination.ips),
    );
    let revoked = match revocations::identity_revoked(cp, source.as_str()) {
        true => format!("{source} is revoked: its handshakes fail before any policy is evaluated"),
        false => String::new(),
    };
    Ok(v1::ExplainResponse {
        source_id: source.to_string(),
        destination: Some(destination),
        port: port.into(),
        verdict: decision.verdict.as_str().to_owned(),
        rule: decision.cause.rule_label(),
        explanation: decision.to_string(),
        revoked,
        handshake_failures,
    })
}
