//! The workload directory: nodes register the pods they run (only identities they are entitled
//! to), every agent watches it, and it survives a control-plane restart.

use std::time::Duration;

use ferrule_proto::v1::{self, workloads_client::WorkloadsClient};
use ferrule_tests::ControlPlaneFixture;
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

async fn next(stream: &mut tonic::Streaming<v1::Directory>) -> v1::Directory {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a directory update within 5 s")
        .expect("stream open")
        .expect("a directory")
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_register_entitled_workloads_and_agents_watch_the_directory() {
    let mut cp = ControlPlaneFixture::new("example.org");
    cp.start();
    let n1 = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/*"])
        .await;
    let n2 = cp
        .join_node("n2", &["spiffe://example.org/ns/bank/*"])
        .await;
    let mut on_n1 = WorkloadsClient::new(cp.channel(Some(n1)));
    let mut on_n2 = WorkloadsClient::new(cp.channel(Some(n2)));

    let mut watch = on_n2
        .watch_directory(v1::WatchDirectoryRequest {})
        .await
        .unwrap()
        .into_inner();
    let empty = next(&mut watch).await;
    assert!(empty.workloads.is_empty());

    let registered = on_n1
        .register(workload("uid-1", "shop", "web", "10.244.1.10"))
        .await
        .expect("entitled workload registers")
        .into_inner();
    assert_eq!(registered.spiffe_id, "spiffe://example.org/ns/shop/sa/web");
    let update = next(&mut watch).await;
    assert_eq!(update.version, registered.version);
    assert!(update.version > empty.version);
    let w = &update.workloads[0];
    assert_eq!((w.node.as_str(), w.ips[0].as_str()), ("n1", "10.244.1.10"));

    // Refusals: identity outside the allowance, malformed input, another node's pod.
    let err = on_n1
        .register(workload("uid-2", "bank", "vault", "10.244.1.11"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = on_n1
        .register(workload("uid-3", "shop", "web", "not-an-ip"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = on_n1
        .register(workload("bad uid", "shop", "web", "10.244.1.12"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = on_n2
        .unregister(v1::UnregisterWorkloadRequest {
            uid: "uid-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Survives a restart.
    cp.stop();
    cp.start();
    let n1_again = cp
        .join_node("n1b", &["spiffe://example.org/ns/shop/*"])
        .await;
    let mut watch = WorkloadsClient::new(cp.channel(Some(n1_again)))
        .watch_directory(v1::WatchDirectoryRequest {})
        .await
        .unwrap()
        .into_inner();
    let after_restart = next(&mut watch).await;
    assert_eq!(after_restart.workloads.len(), 1, "{after_restart:?}");

    // The owning node removes it; watchers see it go.
    let n1 = cp
        .join_node("n1", &["spiffe://example.org/ns/shop/*"])
        .await;
    let removed = WorkloadsClient::new(cp.channel(Some(n1)))
        .unregister(v1::UnregisterWorkloadRequest {
            uid: "uid-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.existed);
    let update = next(&mut watch).await;
    assert!(update.workloads.is_empty(), "{update:?}");
}
