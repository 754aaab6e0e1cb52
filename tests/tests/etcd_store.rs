//! The etcd store against a real etcd (Debian's etcd-server): the same contract as the embedded
//! store, plus what only a shared store has to get right: two replicas racing for one join
//! token, and configuration versions that are etcd revisions, comparable across replicas.

use std::sync::Arc;
use std::time::Duration;

use ferrule_control_plane::store::config::{ConfigChange, ResourceKind};
use ferrule_control_plane::store::{
    CertificateRecord, EtcdOptions, EtcdStore, JoinToken, NodeRecord, Store, StoreError, TokenError,
};
use ferrule_tests::etcd::EtcdCluster;

const SECRET: [u8; 32] = [7; 32];

fn options(cluster: &EtcdCluster) -> EtcdOptions {
    EtcdOptions {
        endpoints: cluster.endpoints(),
        prefix: "/ferrule-test/".to_owned(),
        tls: None,
        request_timeout: Duration::from_secs(5),
    }
}

async fn connect(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(&options(cluster))
        .await
        .unwrap_or_else(|e| panic!("connecting to etcd: {e}\n{}", cluster.logs()))
}

fn token(id: &str, expires_at: u64) -> JoinToken {
    JoinToken {
        id: id.to_owned(),
        secret_sha256: SECRET,
        node: format!("node-of-{id}"),
        allow: vec!["spiffe://td/ns/a/sa/*".to_owned()],
        pod_cidrs: vec![],
        created_at: 100,
        expires_at,
    }
}

fn node(name: &str) -> NodeRecord {
    NodeRecord {
        name: name.to_owned(),
        spiffe_id: format!("spiffe://td/node/{name}"),
        allow: vec!["spiffe://td/ns/a/sa/*".to_owned()],
        pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        joined_at: 100,
    }
}

fn cert(serial: &str, node: &str, not_after: u64) -> CertificateRecord {
    CertificateRecord {
        serial: serial.to_owned(),
        spiffe_id: "spiffe://td/ns/a/sa/web".to_owned(),
        node: node.to_owned(),
        not_before: 0,
        not_after,
    }
}

fn put(kind: ResourceKind, key: &str, value: &[u8]) -> ConfigChange {
    ConfigChange {
        kind,
        key: key.to_owned(),
        value: Some(value.to_vec()),
    }
}

fn remove(kind: ResourceKind, key: &str) -> ConfigChange {
    ConfigChange {
        kind,
        key: key.to_owned(),
        value: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn join_tokens_are_created_once_consumed_once_and_pruned() {
    let cluster = EtcdCluster::start(1);
    let store = connect(&cluster).await;
    store.create_token(token("t", 1000)).await.unwrap();
    let again = store.create_token(token("t", 2000)).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    store.verify_token("t", &SECRET, 10).await.unwrap();
    let wrong = store.consume_token("t", &[8; 32], 10).await;
    assert!(matches!(wrong, Err(TokenError::Unknown)), "{wrong:?}");
    assert_eq!(
        store.consume_token("t", &SECRET, 10).await.unwrap(),
        token("t", 1000)
    );
    let replay = store.consume_token("t", &SECRET, 5000).await;
    assert!(matches!(replay, Err(TokenError::Used)), "{replay:?}");
    let verify = store.verify_token("t", &SECRET, 11).await;
    assert!(matches!(verify, Err(TokenError::Used)), "{verify:?}");
    store.create_token(token("late", 50)).await.unwrap();
    let expired = store.consume_token("late", &SECRET, 50).await;
    assert!(matches!(expired, Err(TokenError::Expired)), "{expired:?}");
    // Retained a day past expiry, then pruned.
    assert_eq!(store.prune_tokens(1000).await.unwrap(), 0);
    assert_eq!(store.prune_tokens(1000 + 86_400).await.unwrap(), 2);
    let gone = store.consume_token("t", &SECRET, 10).await;
    assert!(matches!(gone, Err(TokenError::Unknown)), "{gone:?}");
}

/// Two replicas (two clients of the cluster) present the same token at the same instant:
/// exactly one join succeeds, every time.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_racing_for_one_token_consume_it_exactly_once() {
    let cluster = EtcdCluster::start(3);
    let (a, b) = (
        Arc::new(connect(&cluster).await),
        Arc::new(connect(&cluster).await),
    );
    for i in 0..100 {
        let id = format!("race-{i}");
        a.create_token(token(&id, 1000)).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let race = |store: Arc<EtcdStore>| {
            let (id, barrier) = (id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.consume_token(&id, &SECRET, 10).await
            })
        };
        let (first, second) = (race(a.clone()), race(b.clone()));
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let joined = outcomes.iter().filter(|o| o.is_ok()).count();
        let used = outcomes
            .iter()
            .filter(|o| matches!(o, Err(TokenError::Used)))
            .count();
        assert_eq!((joined, used), (1, 1), "try {i}: {outcomes:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_and_the_certificate_inventory_round_trip() {
    let cluster = EtcdCluster::start(1);
    let store = connect(&cluster).await;
    store.put_node(node("n2")).await.unwrap();
    store.put_node(node("n1")).await.unwrap();
    assert_eq!(store.get_node("n1").await.unwrap(), Some(node("n1")));
    let names: Vec<String> = store
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["n1", "n2"]);
    assert!(store.delete_node("n2").await.unwrap());
    assert!(!store.delete_node("n2").await.unwrap());

    for record in [
        cert("0b", "n1", 900),
        cert("0a", "n1", 900),
        cert("0c", "n2", 100),
    ] {
        store.record_certificate(record).await.unwrap();
    }
    let serials = |records: Vec<CertificateRecord>| -> Vec<String> {
        records.into_iter().map(|r| r.serial).collect()
    };
    assert_eq!(
        serials(store.list_certificates(None).await.unwrap()),
        ["0c", "0a", "0b"],
        "by expiry, then serial"
    );
    assert_eq!(
        serials(store.list_certificates(Some("n1")).await.unwrap()),
        ["0a", "0b"]
    );
    assert_eq!(store.prune_certificates(500).await.unwrap(), 1);
    assert_eq!(store.get_certificate("0c").await.unwrap(), None);
    assert_eq!(
        store.get_certificate("0a").await.unwrap(),
        Some(cert("0a", "n1", 900))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_versions_are_etcd_revisions_shared_by_replicas() {
    let cluster = EtcdCluster::start(1);
    let (a, b) = (connect(&cluster).await, connect(&cluster).await);
    let first = a
        .apply_config(vec![
            put(ResourceKind::Policy, "p1", b"one"),
            put(ResourceKind::Workload, "w1", b"w"),
        ])
        .await
        .unwrap();
    assert!(first > 0);
    // Rewriting the same values, or removing what is absent, changes nothing.
    let same = b
        .apply_config(vec![
            put(ResourceKind::Policy, "p1", b"one"),
            remove(ResourceKind::Policy, "absent"),
        ])
        .await
        .unwrap();
    assert_eq!(same, first, "a no-op keeps the version");
    let second = b
        .apply_config(vec![remove(ResourceKind::Policy, "p1")])
        .await
        .unwrap();
    assert!(second > first);

    let log = a.load_config().await.unwrap();
    assert_eq!(log.version, second, "both replicas see one version line");
    assert_eq!(log.epoch, b.load_config().await.unwrap().epoch);
    assert!(!log.epoch.is_empty());
    let record = |key: &str| log.records.iter().find(|r| r.key == key).cloned().unwrap();
    assert_eq!(record("w1").version, first);
    assert_eq!(record("w1").value.as_deref(), Some(&b"w"[..]));
    assert_eq!(
        record("p1").version,
        second,
        "a tombstone keeps its removal version"
    );
    assert_eq!(record("p1").value, None);

    // Compaction forgets the tombstone and raises the mark first.
    assert_eq!(a.compact_config(second).await.unwrap(), 1);
    let log = b.load_config().await.unwrap();
    assert_eq!(log.compacted, second);
    assert!(log.records.iter().all(|r| r.key != "p1"));
    assert_eq!(log.version, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_a_clear_error_not_a_hang() {
    let cluster = EtcdCluster::start(1);
    let store = connect(&cluster).await;
    let mut cluster = cluster;
    cluster.kill_all();
    let started = std::time::Instant::now();
    let error = store.get_node("n1").await.expect_err("etcd is down");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed after {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("store failed to read a node"),
        "{error}"
    );
}

/// A lease alone is not a lock: a leader that lost its leadership (here it resigned; a paused
/// process is the same to etcd) and writes late is refused by the fence, while the new
/// leader's writes go through.
#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leaders_writes_are_refused_by_the_fence() {
    let cluster = EtcdCluster::start(1);
    let (a, b) = (connect(&cluster).await, connect(&cluster).await);
    let ttl = Duration::from_secs(5);
    let first = a.campaign("jobs", "a", ttl).await.expect("a is elected");
    let first_fence = first.fence.clone();
    let stale = a.fenced(first_fence.clone());
    stale.put_node(node("n1")).await.expect("the leader writes");

    let second = tokio::spawn(async move { b.campaign("jobs", "b", ttl).await.map(|l| (b, l)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "b waits while a leads");
    first.resign().await;
    let (b, leadership) = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("b is elected once a resigned")
        .unwrap()
        .expect("campaign");
    assert_ne!(leadership.fence, first_fence);

    let refused = stale.put_node(node("n2")).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    b.record_certificate(cert("0a", "n1", 1)).await.unwrap();
    let refused = stale.prune_certificates(u64::MAX).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(b.get_node("n2").await.unwrap(), None, "nothing was written");
    b.fenced(leadership.fence.clone())
        .put_node(node("n2"))
        .await
        .expect("the new leader writes");
}

fn workload(uid: &str) -> ferrule_proto::v1::Resource {
    ferrule_control_plane::service::workloads::workload_resource(ferrule_proto::v1::Workload {
        uid: uid.into(),
        name: format!("pod-{uid}"),
        namespace: "shop".into(),
        service_account: "web".into(),
        ips: vec!["10.244.1.10".into()],
        ..Default::default()
    })
}

/// A replica whose watch fell behind etcd's history compaction (etcd#8668) reloads the
/// configuration read at one revision and follows on from there: it ends up exactly where the
/// writer is, with nothing skipped or replayed.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_behind_a_history_compaction_reloads_and_follows_on() {
    use ferrule_control_plane::mesh_config::{Change, MeshConfig};
    let cluster = EtcdCluster::start(1);
    let writer: Arc<dyn Store> = Arc::new(connect(&cluster).await);
    let lagging: Arc<dyn Store> = Arc::new(connect(&cluster).await);
    let behind = MeshConfig::load(lagging.as_ref()).await.unwrap();
    let ahead = MeshConfig::load(writer.as_ref()).await.unwrap();
    let _ahead_following = ahead.follow(writer.clone()).unwrap();

    let timeout = Duration::from_secs(10);
    for uid in ["a", "b", "c"] {
        let put = vec![Change::Put(workload(uid))];
        ahead.apply(writer.as_ref(), put).await.unwrap();
    }
    let removal = vec![Change::Remove(ResourceKind::Workload, "b".into())];
    let latest = ahead.apply(writer.as_ref(), removal).await.unwrap();
    cluster.compact_history();

    let _following = behind.follow(lagging.clone()).unwrap();
    assert!(
        behind.caught_up(latest, timeout).await,
        "the lagging replica reached version {latest}: it is at {}",
        behind.version()
    );
    let keys = |config: &MeshConfig| -> Vec<String> {
        config
            .list(ResourceKind::Workload)
            .into_iter()
            .map(|r| r.key)
            .collect()
    };
    assert_eq!(keys(&behind), ["a", "c"]);
    assert_eq!(behind.version(), ahead.version());
    let epoch = ahead.epoch();
    assert_eq!(
        behind.update_since(&epoch, 0),
        ahead.update_since(&epoch, 0),
        "both replicas give an agent the same snapshot"
    );

    // And it follows on from the reload: a later write arrives through its watch.
    let later = ahead
        .apply(writer.as_ref(), vec![Change::Put(workload("d"))])
        .await
        .unwrap();
    assert!(behind.caught_up(later, timeout).await);
    assert_eq!(keys(&behind), ["a", "c", "d"]);
}
