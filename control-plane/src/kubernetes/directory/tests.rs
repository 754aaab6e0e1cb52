use std::collections::HashMap;

use ferrule_identity::TrustDomain;

use super::*;
use crate::kubernetes::testing::{labels, pod};

fn snapshot(pods: &[k8s_openapi::api::core::v1::Pod]) -> PodSnapshot {
    let namespaces = HashMap::from([("shop".to_string(), labels("strict"))]);
    PodSnapshot::build(
        pods.iter(),
        &namespaces,
        &TrustDomain::new("example.org").unwrap(),
    )
}

fn describe(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Put(r) => match &r.kind {
                Some(v1::resource::Kind::Workload(w)) => format!("put {} {:?}", r.key, w.ips),
                other => panic!("unexpected resource {other:?}"),
            },
            Change::Remove(kind, key) => format!("remove {} {key}", kind.as_str()),
        })
        .collect()
}

#[test]
fn the_directory_follows_the_pods_with_minimal_changes() {
    let first = snapshot(&[
        pod("shop", "web-1", "web", "n1", &["10.0.0.5"]),
        pod("shop", "web-2", "web", "n2", &[]),
    ]);
    let empty = HashMap::new();
    assert_eq!(
        describe(&changes(&empty, &first.workloads)),
        ["put web-1-uid [\"10.0.0.5\"]"]
    );
    let directory: HashMap<_, _> = first.workloads.clone().into_iter().collect();
    assert!(
        changes(&directory, &first.workloads).is_empty(),
        "in line: nothing to write"
    );

    // web-2 gets its IP, web-1 is deleted, and a pod the directory holds but the cluster no
    // longer has (it vanished while the watch was relisting) goes too.
    let mut stale = directory.clone();
    let mut ghost = first.workloads["web-1-uid"].clone();
    ghost.uid = "ghost-uid".into();
    stale.insert("ghost-uid".into(), ghost);
    let second = snapshot(&[pod("shop", "web-2", "web", "n2", &["10.0.1.5"])]);
    assert_eq!(
        describe(&changes(&stale, &second.workloads)),
        [
            "put web-2-uid [\"10.0.1.5\"]",
            "remove workload ghost-uid",
            "remove workload web-1-uid",
        ]
    );
}

#[test]
fn an_identity_departs_a_node_when_its_last_pod_there_goes() {
    let before = snapshot(&[
        pod("shop", "web-1", "web", "n1", &["10.0.0.5"]),
        pod("shop", "web-2", "web", "n1", &["10.0.0.6"]),
        pod("shop", "api-1", "api", "n1", &["10.0.0.7"]),
        pod("shop", "web-3", "web", "n2", &["10.0.1.5"]),
    ]);
    let pairs = |s: &PodSnapshot| {
        s.running
            .iter()
            .map(|(n, id)| (n.clone(), id.clone()))
            .collect::<Vec<_>>()
    };
    let before_pairs = pairs(&before);
    let one_web_left = snapshot(&[
        pod("shop", "web-2", "web", "n1", &["10.0.0.6"]),
        pod("shop", "web-3", "web", "n2", &["10.0.1.5"]),
    ]);
    let gone = departed(
        before_pairs.iter().map(|(n, id)| (n.as_str(), id.as_str())),
        &one_web_left,
    );
    assert_eq!(
        gone.into_iter().collect::<Vec<_>>(),
        [(
            "n1".to_string(),
            "spiffe://example.org/ns/shop/sa/api".to_string()
        )],
        "web still runs on n1 (web-2); api's only pod left"
    );
}
