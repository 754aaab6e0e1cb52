//! Directory integrity against the real control plane: a node owns the uids it registered and the
//! pod networks bound to it at join, so a compromised node can neither overwrite nor delete
//! another node's workload, nor claim a victim pod's address under an identity it may run.

use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::tls::CertSlot;
use ferrule_proto::v1::{
    self, config_client::ConfigClient, resource::Kind, watch_request,
    workloads_client::WorkloadsClient,
};
use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::metrics::series_value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const SHOP: &str = "spiffe://example.org/ns/shop/sa/*";

fn workload(uid: &str, sa: &str, ip: &str) -> v1::RegisterWorkloadRequest {
    v1::RegisterWorkloadRequest {
        workload: Some(v1::Workload {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: "shop".into(),
            service_account: sa.into(),
            ips: vec![ip.into()],
            ..Default::default()
        }),
    }
}

/// The directory as an agent receives it (a fresh watch's snapshot): (uid, node, ips).
async fn directory(
    cp: &ControlPlaneFixture,
    node: Arc<CertSlot>,
) -> Vec<(String, String, Vec<String>)> {
    let (requests, rx) = mpsc::channel(1);
    let subscribe = v1::Subscribe::default();
    requests
        .send(v1::WatchRequest {
            kind: Some(watch_request::Kind::Subscribe(subscribe)),
        })
        .await
        .unwrap();
    let mut updates = ConfigClient::new(cp.channel(Some(node)))
        .watch(ReceiverStream::new(rx))
        .await
        .expect("watch opens")
        .into_inner();
    let snapshot = tokio::time::timeout(Duration::from_secs(5), updates.message())
        .await
        .expect("a snapshot within 5 s")
        .expect("stream open")
        .expect("a snapshot");
    let mut rows: Vec<_> = snapshot
        .upserts
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Workload(w)) => Some((w.uid, w.node, w.ips)),
            _ => None,
        })
        .collect();
    rows.sort();
    rows
}

fn refused_claims(metrics: &str, node: &str, reason: &str) -> f64 {
    let series =
        format!("ferrule_workload_claims_refused_total{{node=\"{node}\",reason=\"{reason}\"}}");
    series_value(metrics, &series)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_can_claim_only_its_own_uids_and_pod_addresses() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let victim = cp
        .join_node_with_pods("n1", &[SHOP], &["10.244.1.0/24"])
        .await;
    let attacker = cp
        .join_node_with_pods("n2", &[SHOP], &["10.244.2.0/24"])
        .await;
    let mut on_victim = WorkloadsClient::new(cp.channel(Some(victim.clone())));
    let mut on_attacker = WorkloadsClient::new(cp.channel(Some(attacker)));
    on_victim
        .register(workload("db-1", "db", "10.244.1.10"))
        .await
        .expect("the victim registers its pod");

    // Overwrite the victim's workload (same uid), from inside and outside its own network.
    for ip in ["10.244.2.10", "10.244.1.10"] {
        let e = on_attacker
            .register(workload("db-1", "web", ip))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    let e = on_attacker
        .register(workload("db-1", "web", "10.244.2.10"))
        .await
        .unwrap_err();
    assert!(e.message().contains("registered by node n1"), "{e:?}");
    // Claim the victim pod's address under a fresh uid and an identity it may run.
    let e = on_attacker
        .register(workload("fake", "db", "10.244.1.10"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message()
            .contains("ip 10.244.1.10 is outside node n2's pod CIDRs (10.244.2.0/24)"),
        "{e:?}"
    );
    // Delete it.
    let e = on_attacker
        .unregister(v1::UnregisterWorkloadRequest { uid: "db-1".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        directory(&cp, victim.clone()).await,
        [("db-1".into(), "n1".into(), vec!["10.244.1.10".into()])],
        "the victim's entry is untouched"
    );

    let metrics = cp.metrics();
    assert_eq!(
        refused_claims(&metrics, "n2", "uid_taken"),
        2.0,
        "{metrics}"
    );
    assert_eq!(refused_claims(&metrics, "n2", "outside_pod_cidr"), 2.0);

    // The node's own pod gone without an Unregister and its address reused: the new pod wins.
    on_victim
        .register(workload("db-2", "db", "10.244.1.10"))
        .await
        .expect("a node may replace its own stale workload");
    assert_eq!(
        directory(&cp, victim.clone()).await,
        [("db-2".into(), "n1".into(), vec!["10.244.1.10".into()])]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_networks_are_bound_at_join_shown_in_node_list_and_never_overlap() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let n1 = cp
        .join_node_with_pods("n1", &[SHOP], &["10.244.1.0/24", "fd00:10:244:1::/64"])
        .await;

    let out = cp.ferrule(&[
        "node",
        "token",
        "create",
        "--node",
        "n3",
        "--pod-cidr",
        "10.244.0.0/16",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pod CIDR 10.244.0.0/16 overlaps 10.244.1.0/24 of node n1"),
        "{stderr}"
    );
    let out = cp.ferrule(&[
        "node",
        "token",
        "create",
        "--node",
        "n3",
        "--pod-cidr",
        "0.0.0.0/0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wider than /8"));

    let list = String::from_utf8(cp.ferrule(&["node", "list"]).stdout).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with("n1 ") && l.contains("10.244.1.0/24,fd00:10:244:1::/64")),
        "{list}"
    );

    // A node joined without a pod network registers nothing.
    let bare = cp.join_node("n4", &[SHOP]).await;
    let e = WorkloadsClient::new(cp.channel(Some(bare)))
        .register(workload("w", "web", "10.244.4.10"))
        .await
        .unwrap_err();
    assert!(e.message().contains("has no pod CIDR"), "{e:?}");
    // IPv6 addresses inside the node's network register like IPv4 ones.
    WorkloadsClient::new(cp.channel(Some(n1)))
        .register(workload("v6", "web", "fd00:10:244:1::10"))
        .await
        .expect("an address of the node's IPv6 pod network");
}
