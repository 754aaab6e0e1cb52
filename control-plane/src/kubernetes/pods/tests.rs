use super::*;
use crate::kubernetes::testing::{annotated, in_phase, labels, pod};

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn namespaces(pairs: &[(&str, &str)]) -> HashMap<String, BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|(ns, mode)| (ns.to_string(), labels(mode)))
        .collect()
}

#[test]
fn the_snapshot_indexes_every_pod_and_directs_the_meshed_ones() {
    let pods = [
        pod("shop", "web-1", "web", "n1", &["10.0.0.5"]),
        pod("shop", "web-2", "web", "n2", &[]),
        annotated(
            pod("bank", "vault-1", "vault", "n2", &["10.0.1.7"]),
            "strict",
        ),
        pod("bank", "teller-1", "teller", "n2", &["10.0.1.8"]),
        in_phase(pod("shop", "old-1", "web", "n3", &["10.0.0.9"]), "Failed"),
    ];
    let snapshot = PodSnapshot::build(pods.iter(), &namespaces(&[("shop", "strict")]), &td());
    assert_eq!(snapshot.pods.len(), 5);
    assert_eq!(
        snapshot.pods["web-1-uid"],
        PodFacts {
            namespace: "shop".into(),
            name: "web-1".into(),
            service_account: "web".into(),
            node: Some("n1".into()),
            spiffe_id: Some("spiffe://example.org/ns/shop/sa/web".into()),
            finished: false,
        }
    );
    assert!(snapshot.pods["web-1-uid"].runs_on("n1"));
    assert!(!snapshot.pods["web-1-uid"].runs_on("n2"));
    assert!(!snapshot.pods["old-1-uid"].runs_on("n3"), "finished");
    let directed: Vec<&str> = snapshot.workloads.keys().map(String::as_str).collect();
    assert_eq!(
        directed,
        ["vault-1-uid", "web-1-uid"],
        "web-2 has no IP yet, teller-1's namespace is not enrolled, old-1 has finished"
    );
    assert!(snapshot.runs("n2", "spiffe://example.org/ns/shop/sa/web"));
    assert!(snapshot.runs("n2", "spiffe://example.org/ns/bank/sa/teller"));
    assert!(!snapshot.runs("n3", "spiffe://example.org/ns/shop/sa/web"));
}

#[test]
fn relabelling_a_namespace_moves_its_pods_in_and_out_of_the_directory() {
    let pods = [
        pod("bank", "teller-1", "teller", "n2", &["10.0.1.8"]),
        pod("bank", "teller-2", "teller", "n1", &["10.0.0.8"]),
    ];
    let off = PodSnapshot::build(pods.iter(), &namespaces(&[]), &td());
    assert!(off.workloads.is_empty());
    let on = PodSnapshot::build(pods.iter(), &namespaces(&[("bank", "enabled")]), &td());
    assert_eq!(on.workloads.len(), 2);
    // Entitlement does not depend on the label.
    assert_eq!(off.running, on.running);
}

#[tokio::test]
async fn the_index_is_empty_until_the_first_snapshot_and_announces_replacements() {
    let index = PodIndex::default();
    assert!(index.snapshot().is_none());
    let mut updates = index.subscribe();
    let first = Arc::new(PodSnapshot::default());
    assert!(index.replace(first.clone()).is_none());
    updates.changed().await.unwrap();
    assert_eq!(index.replace(Arc::new(PodSnapshot::default())), Some(first));
}
