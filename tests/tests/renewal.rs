//! The agent keeps serving its valid certificate while the control plane is down and renews once
//! it is back. Runs the control plane in process with a 4-second workload lifetime (below the
//! 5-minute floor that the config file enforces) so that renewal happens within the test.

use std::sync::Arc;
use std::time::Duration;

use ferrule_control_plane::app::{self, Running};
use ferrule_control_plane::config::{Config, MapEnv};
use ferrule_control_plane::store::{EmbeddedStore, Store};
use ferrule_identity::SpiffeId;
use ferrule_node_agent::identity::RenewalPolicy;
use ferrule_tests::ControlPlaneFixture;
use tokio::sync::oneshot;

const WORKLOAD: &str = "spiffe://example.org/ns/shop/sa/web";

async fn start(config: &Config) -> (Running, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .expect("bind");
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&config.store_path()).expect("store"));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = app::serve(config, listener, store, async {
        let _ = stopped.await;
    })
    .await
    .expect("control plane starts");
    (running, stop)
}

async fn stop(running: Running, stop: oneshot::Sender<()>) {
    let _ = stop.send(());
    running.server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_serves_its_certificate_through_an_outage_and_renews_after() {
    let fixture = ControlPlaneFixture::new("example.org");
    let mut config = Config::load(&fixture.config_path, &MapEnv::default()).unwrap();
    config.certificates.workload_ttl = Duration::from_secs(4);
    let (running, stopper) = start(&config).await;

    let token = {
        let mut admin = fixture.admin();
        admin
            .create_join_token(ferrule_proto::v1::CreateJoinTokenRequest {
                node: "n1".into(),
                allow: vec!["spiffe://example.org/ns/shop/sa/*".into()],
                ttl_seconds: 600,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .token
    };
    let work = tempfile::tempdir().unwrap();
    let agent_config = ferrule_node_agent::config::Config::load(
        &fixture.agent_config(work.path(), "n1"),
        &MapEnv::default(),
    )
    .unwrap();
    let policy = RenewalPolicy {
        backoff_initial: Duration::from_millis(200),
        backoff_max: Duration::from_millis(500),
        ..RenewalPolicy::default()
    };
    let agent = ferrule_node_agent::app::start(&agent_config, Some(&token), policy)
        .await
        .expect("agent joins");
    let id = SpiffeId::parse(WORKLOAD).unwrap();
    let first = agent
        .identities
        .certificate(&id, Duration::from_secs(10))
        .await
        .expect("workload certificate");

    // Outage: the control plane is gone past the renewal point (40-50% of 4 s).
    stop(running, stopper).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = agent
        .identities
        .certificate(&id, Duration::from_millis(100))
        .await
        .expect("still served during the outage");
    assert_eq!(during.serial, first.serial, "the valid certificate is kept");

    // Back, with the same store: the agent renews within its backoff.
    let (running, stopper) = start(&config).await;
    let mut updates = agent.identities.watch(&id);
    let renewed = tokio::time::timeout(
        Duration::from_secs(5),
        updates.wait_for(|c| c.as_ref().is_some_and(|c| c.serial != first.serial)),
    )
    .await
    .expect("renewed after the control plane came back")
    .unwrap()
    .clone()
    .unwrap();
    assert!(renewed.not_after > first.not_after);
    stop(running, stopper).await;
}
