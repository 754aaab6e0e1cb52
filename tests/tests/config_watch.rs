//! `Config.Watch` against the real control plane: the directory of workloads nodes register
//! (only identities they are entitled to), versioned deltas after a snapshot, ACK/NACK, and a
//! resume after a control-plane restart that sends only what changed.

use std::time::Duration;

use ferrule_proto::v1::{self, resource::Kind, watch_request, workloads_client::WorkloadsClient};
use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::watch_client::Watch;
use tonic::Code;

fn workload(uid: &str, ns: &str, sa: &str, ip: &str) -> v1::RegisterWorkloadRequest {
    v1::RegisterWorkloadRequest {
        workload: Some(v1::Workload {
            uid: uid.into(),
            name: format!("pod-{uid}"),
            namespace: ns.into(),
            service_account: sa.into(),
            ips: vec![ip.into()],
            ..Default::default()
        }),
    }
}

fn workloads(update: &v1::ConfigUpdate) -> Vec<&v1::Workload> {
    update
        .upserts
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Workload(w)) => Some(w),
            _ => None,
        })
        .collect()
}

async fn status(cp: &ControlPlaneFixture) -> v1::StatusResponse {
    cp.admin()
        .status(v1::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_get_a_snapshot_then_deltas_and_the_control_plane_tracks_their_versions() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let n1 = cp
        .join_node_with_pods(
            "n1",
            &["spiffe://example.org/ns/shop/sa/*"],
            &["10.244.1.0/24"],
        )
        .await;
    let n2 = cp
        .join_node_with_pods(
            "n2",
            &["spiffe://example.org/ns/bank/sa/*"],
            &["10.244.2.0/24"],
        )
        .await;
    let mut on_n1 = WorkloadsClient::new(cp.channel(Some(n1.clone())));
    let mut on_n2 = WorkloadsClient::new(cp.channel(Some(n2.clone())));

    let mut watch = Watch::open(cp.channel(Some(n2.clone())), "", 0).await;
    let first = watch.next().await;
    assert!(first.snapshot, "a new agent gets a snapshot: {first:?}");
    assert!(
        first
            .upserts
            .iter()
            .any(|r| matches!(r.kind, Some(Kind::Bundle(_)))),
        "the snapshot carries the trust bundle"
    );
    watch.ack(first.version).await;

    let registered = on_n1
        .register(workload("uid-1", "shop", "web", "10.244.1.10"))
        .await
        .expect("entitled workload registers")
        .into_inner();
    assert_eq!(registered.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    let delta = watch.next().await;
    assert!(!delta.snapshot);
    assert_eq!(
        (delta.base_version, delta.version),
        (first.version, registered.version)
    );
    let w = workloads(&delta);
    assert_eq!(w.len(), 1, "only the change: {delta:?}");
    assert_eq!(
        (w[0].node.as_str(), w[0].ips[0].as_str()),
        ("n1", "10.244.1.10")
    );
    watch.ack(delta.version).await;

    // Refusals: identity outside the allowance, malformed input, another node's pod.
    let refusals = [
        on_n1
            .register(workload("uid-2", "bank", "vault", "10.244.1.11"))
            .await,
        on_n1
            .register(workload("uid-3", "shop", "web", "not-an-ip"))
            .await,
        on_n1
            .register(workload("bad uid", "shop", "web", "10.244.1.12"))
            .await,
    ];
    let codes: Vec<Code> = refusals
        .iter()
        .map(|r| r.as_ref().unwrap_err().code())
        .collect();
    assert_eq!(
        codes,
        [
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::InvalidArgument
        ]
    );
    let err = on_n2
        .unregister(v1::UnregisterWorkloadRequest {
            uid: "uid-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The control plane knows the version each agent applied.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let agents = status(&cp).await.agents;
    let n2_status = agents.iter().find(|a| a.node == "n2").expect("n2 listed");
    assert!(n2_status.connected);
    assert_eq!(n2_status.applied_version, registered.version);
    assert_eq!((n2_status.snapshots_sent, n2_status.deltas_sent), (1, 1));
    let metrics = cp.metrics();
    for series in [
        format!("ferrule_config_version {}", registered.version),
        "ferrule_agent_connected{node=\"n2\"} 1".to_owned(),
        format!(
            "ferrule_agent_applied_version{{node=\"n2\"}} {}",
            registered.version
        ),
        "ferrule_agent_push_lag{node=\"n2\"} 0".to_owned(),
    ] {
        assert!(metrics.contains(&series), "missing {series} in:\n{metrics}");
    }
    let out = cp.ferrule(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let row = |node: &str| {
        table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or("")
            .to_owned()
    };
    assert!(row("n2 ").contains("connected"), "{table}");
    assert!(row("n1 ").contains("never connected"), "{table}");
    assert!(
        table.contains(&format!("configuration version {}", registered.version)),
        "{table}"
    );
    let out = cp.ferrule(&["-o", "json", "status"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    let n2_row = nodes.iter().find(|n| n["node"] == "n2").unwrap();
    assert_eq!(
        (n2_row["agent"].as_str(), n2_row["lag"].as_u64()),
        (Some("connected"), Some(0)),
        "{json}"
    );

    // A NACK keeps the agent on its version: the control plane shows the refusal, and the next
    // change is sent as a delta from the last version the agent applied.
    on_n1
        .register(workload("uid-4", "shop", "web", "10.244.1.13"))
        .await
        .unwrap();
    let refused = watch.next().await;
    watch
        .answer(watch_request::Kind::Nack(v1::Nack {
            version: refused.version,
            reason: "test refusal".into(),
        }))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n2_status = status(&cp)
        .await
        .agents
        .into_iter()
        .find(|a| a.node == "n2")
        .unwrap();
    assert_eq!(
        (n2_status.nacked_version, n2_status.nack_reason.as_str()),
        (refused.version, "test refusal")
    );
    on_n1
        .register(workload("uid-5", "shop", "web", "10.244.1.14"))
        .await
        .unwrap();
    let retry = watch.next().await;
    assert_eq!(retry.base_version, delta.version, "rewound to the last ACK");
    assert_eq!(
        workloads(&retry).len(),
        2,
        "both changes since then: {retry:?}"
    );
    watch.ack(retry.version).await;
    drop(watch);

    // After a restart, an agent resumes from its version with only what changed since.
    let epoch = retry.epoch.clone();
    cp.stop();
    cp.start();
    let n1 = cp
        .join_node("n1b", &["spiffe://example.org/ns/shop/sa/*"])
        .await;
    let removed = WorkloadsClient::new(cp.channel(Some(n1)))
        .unregister(v1::UnregisterWorkloadRequest {
            uid: "uid-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        removed.code(),
        Code::PermissionDenied,
        "uid-1 belongs to n1"
    );
    let n1 = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/sa/*"])
        .await;
    WorkloadsClient::new(cp.channel(Some(n1)))
        .unregister(v1::UnregisterWorkloadRequest {
            uid: "uid-1".into(),
        })
        .await
        .unwrap();
    let mut resumed = Watch::open(cp.channel(Some(n2.clone())), &epoch, retry.version).await;
    let update = resumed.next().await;
    assert!(!update.snapshot, "resumed, not re-downloaded: {update:?}");
    assert_eq!(update.base_version, retry.version);
    let removals: Vec<&str> = update.removals.iter().map(|r| r.key.as_str()).collect();
    assert!(removals.contains(&"uid-1"), "{update:?}");
    assert!(
        workloads(&update).is_empty(),
        "nothing else changed: {update:?}"
    );

    // An agent of another epoch (another control plane's store) gets a snapshot.
    let mut foreign = Watch::open(cp.channel(Some(n2)), "other-epoch", retry.version).await;
    let snapshot = foreign.next().await;
    assert!(snapshot.snapshot);
    assert_eq!(workloads(&snapshot).len(), 2, "uid-4 and uid-5 remain");
}
