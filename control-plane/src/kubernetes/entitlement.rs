//! Entitlements from Pod objects: a node may obtain `spiffe://<td>/ns/<ns>/sa/<sa>` only while
//! a Pod of that namespace and service account is scheduled on it and has not finished.

use std::sync::Arc;

use ferrule_identity::SpiffeId;

use super::pods::PodIndex;
use crate::sources::{Entitlements, SourceError};
use crate::store::NodeRecord;

#[derive(Debug, Clone)]
pub struct PodEntitlements(pub Arc<PodIndex>);

impl Entitlements for PodEntitlements {
    fn workload(&self, node: &NodeRecord, id: &SpiffeId) -> Result<bool, SourceError> {
        let snapshot = self
            .0
            .snapshot()
            .ok_or(SourceError::NotSynced("the cluster's pods"))?;
        Ok(snapshot.runs(&node.name, id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use ferrule_identity::TrustDomain;

    use super::*;
    use crate::auth::entitled;
    use crate::kubernetes::pods::PodSnapshot;
    use crate::kubernetes::testing::{in_phase, pod};

    fn node(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            spiffe_id: format!("spiffe://example.org/node/{name}"),
            // Patterns play no part in Kubernetes mode, however broad.
            allow: vec!["spiffe://example.org/*".into()],
            pod_cidrs: vec![],
            joined_at: 0,
        }
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn a_node_may_sign_only_service_accounts_of_pods_running_on_it() {
        let index = Arc::new(PodIndex::default());
        let source = PodEntitlements(index.clone());
        let web = id("spiffe://example.org/ns/shop/sa/web");
        let refused = entitled(&source, &node("n1"), &web).unwrap_err();
        assert!(
            matches!(refused, SourceError::NotSynced(_)),
            "before the first list nothing is decided: {refused}"
        );

        let td = TrustDomain::new("example.org").unwrap();
        let pods = [
            pod("shop", "web-1", "web", "n1", &["10.0.0.5"]),
            // Unmeshed and IP-less pods entitle too: scheduling is what counts.
            pod("shop", "api-1", "api", "n1", &[]),
            pod("shop", "db-1", "db", "n2", &["10.0.1.5"]),
            in_phase(pod("shop", "job-1", "batch", "n1", &[]), "Succeeded"),
        ];
        let snapshot = PodSnapshot::build(pods.iter(), &HashMap::<_, BTreeMap<_, _>>::new(), &td);
        index.replace(Arc::new(snapshot));
        let may = |n: &str, s: &str| entitled(&source, &node(n), &id(s)).unwrap();
        assert!(may("n1", "spiffe://example.org/ns/shop/sa/web"));
        assert!(may("n1", "spiffe://example.org/ns/shop/sa/api"));
        assert!(
            !may("n1", "spiffe://example.org/ns/shop/sa/db"),
            "db runs on n2"
        );
        assert!(may("n2", "spiffe://example.org/ns/shop/sa/db"));
        assert!(
            !may("n1", "spiffe://example.org/ns/shop/sa/batch"),
            "finished"
        );
        assert!(
            !may("n1", "spiffe://example.org/ns/bank/sa/web"),
            "other namespace"
        );
        assert!(
            may("n1", "spiffe://example.org/node/n1"),
            "own node identity"
        );
        assert!(!may("n1", "spiffe://example.org/node/n2"));
        assert!(!may("n1", "spiffe://example.org/ferrule/control-plane"));
        assert!(!may("n1", "spiffe://example.org/ferrule/admin/ops"));
        assert!(!may("n1", "spiffe://example.org/custom/thing"));

        // The last web pod leaves n1: no more web certificates there.
        let snapshot = PodSnapshot::build(pods[1..].iter(), &HashMap::new(), &td);
        index.replace(Arc::new(snapshot));
        assert!(!may("n1", "spiffe://example.org/ns/shop/sa/web"));
    }
}
