//! Fail closed at start: a pod's inbound side admits nothing before the first configuration
//! version, and says why.

use std::time::Duration;

use ferrule_identity::TrustDomain;
use ferrule_proto::v1;
use prometheus_client::registry::Registry;

use super::*;
use crate::telemetry::AccessLog;

fn app(mesh: &MeshConfig, registry: &mut Registry) -> PodApp {
    PodApp {
        peers: Arc::default(),
        netns: Arc::new(Netns::open("/proc/self/ns/net").expect("our own netns")),
        ips: vec![IpAddr::from([127, 0, 0, 1])],
        pod: Arc::new(PodWorkload {
            id: SpiffeId::parse("spiffe://example.org/ns/shop/sa/web").unwrap(),
            namespace: "shop".into(),
            service_account: "web".into(),
            labels: BTreeMap::new(),
        }),
        mesh: mesh.clone(),
        telemetry: Arc::new(Telemetry::new(registry, AccessLog::Off)),
        drain: Drain::new(Duration::from_secs(1)),
        caps: ConnectionCaps::new(&Limits::default()),
    }
}

fn decisions(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("ferrule_authz_decisions_total{"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn inbound_streams_are_refused_with_config_not_ready_until_the_first_version_is_applied() {
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dst = app_listener.local_addr().unwrap();
    let (mesh, mut registry) = (MeshConfig::default(), Registry::default());
    let app = app(&mesh, &mut registry);
    let peer = Peer {
        id: SpiffeId::parse("spiffe://example.org/ns/web/sa/client").unwrap(),
        serial: "01".into(),
        address: "127.0.0.2:40000".parse().unwrap(),
    };

    let refused = match app.connect(&peer, dst).await {
        Err(refusal) => refusal,
        Ok(_) => panic!("a stream was admitted before any configuration was applied"),
    };
    assert!(
        matches!(refused, InboundRefusal::ConfigNotReady),
        "{refused}"
    );
    assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.reason(), "config_not_ready");
    let counted = decisions(&registry);
    assert!(
        counted.contains(r#"action="deny",policy="config_not_ready"} 1"#),
        "{counted}"
    );

    // The control plane's first snapshot arrives (no policy: allowed).
    let first = v1::ConfigUpdate {
        snapshot: true,
        epoch: "e1".into(),
        version: 1,
        ..Default::default()
    };
    mesh.apply_for_test(&first, &TrustDomain::new("example.org").unwrap());
    let admitted = app
        .connect(&peer, dst)
        .await
        .expect("admitted once the first version is applied");
    assert_eq!(admitted.decision, "allow");
}
