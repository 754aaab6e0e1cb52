use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;

use super::*;

const SECRET: [u8; 32] = [7; 32];

fn open(path: &Path) -> EmbeddedStore {
    EmbeddedStore::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn token(id: &str, expires_at: UnixSeconds) -> JoinToken {
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

fn cert(serial: &str, node: &str, not_after: UnixSeconds) -> CertificateRecord {
    CertificateRecord {
        serial: serial.to_owned(),
        spiffe_id: "spiffe://td/ns/a/sa/web".to_owned(),
        node: node.to_owned(),
        not_before: 0,
        not_after,
    }
}

fn serials(records: &[CertificateRecord]) -> Vec<&str> {
    records.iter().map(|r| r.serial.as_str()).collect()
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/store.redb");
    {
        let store = open(&path);
        store.create_token(token("used", 1000)).await.unwrap();
        store.create_token(token("fresh", 1000)).await.unwrap();
        store.consume_token("used", &SECRET, 500).await.unwrap();
        store.put_node(node("n1")).await.unwrap();
        store
            .record_certificate(cert("01", "n1", 900))
            .await
            .unwrap();
    }
    let store = open(&path);
    assert_eq!(store.get_node("n1").await.unwrap(), Some(node("n1")));
    assert_eq!(
        store.list_certificates(None).await.unwrap(),
        vec![cert("01", "n1", 900)]
    );
    assert_eq!(
        store.get_certificate("01").await.unwrap(),
        Some(cert("01", "n1", 900))
    );
    assert_eq!(store.get_certificate("02").await.unwrap(), None);
    let reused = store.consume_token("used", &SECRET, 501).await;
    assert!(
        matches!(reused, Err(TokenError::Used)),
        "reopened used token: {reused:?}"
    );
    let fresh = store.consume_token("fresh", &SECRET, 501).await.unwrap();
    assert_eq!(fresh, token("fresh", 1000));
}

#[tokio::test]
async fn token_is_consumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.create_token(token("t", 1000)).await.unwrap();
    assert_eq!(
        store.consume_token("t", &SECRET, 10).await.unwrap(),
        token("t", 1000)
    );
    let second = store.consume_token("t", &SECRET, 11).await;
    assert!(
        matches!(second, Err(TokenError::Used)),
        "second use: {second:?}"
    );
    // Used outranks Expired: a replay after expiry is still reported as a replay.
    let late = store.consume_token("t", &SECRET, 5000).await;
    assert!(
        matches!(late, Err(TokenError::Used)),
        "replay after expiry: {late:?}"
    );
}

#[tokio::test]
async fn wrong_secret_or_id_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.create_token(token("t", 1000)).await.unwrap();
    let wrong = store.consume_token("t", &[8; 32], 10).await;
    assert!(
        matches!(wrong, Err(TokenError::Unknown)),
        "wrong secret: {wrong:?}"
    );
    let missing = store.consume_token("nope", &SECRET, 10).await;
    assert!(
        matches!(missing, Err(TokenError::Unknown)),
        "unknown id: {missing:?}"
    );
    // The failed attempt must not have spent the token.
    store.consume_token("t", &SECRET, 10).await.unwrap();
    // Without the secret, a caller cannot even learn that the token was used.
    let probe = store.consume_token("t", &[8; 32], 10).await;
    assert!(
        matches!(probe, Err(TokenError::Unknown)),
        "wrong secret on used token: {probe:?}"
    );
}

#[tokio::test]
async fn expired_token_is_refused_from_its_expiry_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.create_token(token("t", 1000)).await.unwrap();
    let at_expiry = store.consume_token("t", &SECRET, 1000).await;
    assert!(
        matches!(at_expiry, Err(TokenError::Expired)),
        "now == expires_at: {at_expiry:?}"
    );
    // A refused attempt leaves the token usable while it is still valid.
    store.consume_token("t", &SECRET, 999).await.unwrap();
}

#[tokio::test]
async fn creating_an_existing_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.create_token(token("t", 1000)).await.unwrap();
    store.consume_token("t", &SECRET, 10).await.unwrap();
    let again = store.create_token(token("t", 2000)).await;
    assert!(
        matches!(&again, Err(StoreError::AlreadyExists { key, .. }) if key == "t"),
        "re-creating a used token: {again:?}"
    );
    let reuse = store.consume_token("t", &SECRET, 11).await;
    assert!(
        matches!(reuse, Err(TokenError::Used)),
        "after refused re-create: {reuse:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("s.redb")));
    store.create_token(token("t", 1000)).await.unwrap();
    let attempts: Vec<_> = (0..32)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_token("t", &SECRET, 10).await })
        })
        .collect();
    let (mut won, mut used) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => won += 1,
            Err(TokenError::Used) => used += 1,
            Err(other) => panic!("expected Ok or Used, got {other:?}"),
        }
    }
    assert_eq!((won, used), (1, 31), "(winners, refused as used)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_certificates_are_group_committed_and_durable() {
    const RECORDS: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Arc::new(open(&path));
    let before = store.commits();
    let writes: Vec<_> = (0..RECORDS)
        .map(|i| {
            let store = store.clone();
            let record = cert(&format!("{i:05}"), "n1", 1000 + i as u64);
            tokio::spawn(async move { store.record_certificate(record).await })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let commits = store.commits() - before;
    assert!(
        commits < (RECORDS / 4) as u64,
        "{RECORDS} records took {commits} commits; group commit should batch them"
    );
    drop(store);
    let listed = open(&path).list_certificates(None).await.unwrap();
    assert_eq!(listed.len(), RECORDS, "records listed after reopen");
    let expected: Vec<String> = (0..RECORDS).map(|i| format!("{i:05}")).collect();
    assert_eq!(serials(&listed), expected, "sorted by not_after");
}

#[tokio::test]
async fn dropping_the_store_commits_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = open(&path);
    for i in 0..100 {
        // One poll queues the write; the caller then gives up waiting for it.
        let queued = store
            .record_certificate(cert(&format!("{i:03}"), "n1", 10))
            .now_or_never();
        assert!(
            queued.as_ref().is_none_or(|r| r.is_ok()),
            "write {i} failed: {queued:?}"
        );
    }
    drop(store);
    let listed = open(&path).list_certificates(None).await.unwrap();
    assert_eq!(listed.len(), 100, "queued writes committed by the shutdown");
}

#[tokio::test]
async fn certificates_are_filtered_by_node_and_sorted_by_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    for record in [
        cert("a", "n1", 30),
        cert("b", "n2", 10),
        cert("c", "n1", 10),
        cert("d", "n1", 20),
    ] {
        store.record_certificate(record).await.unwrap();
    }
    let n1 = store.list_certificates(Some("n1")).await.unwrap();
    assert_eq!(
        serials(&n1),
        ["c", "d", "a"],
        "n1's certificates by not_after"
    );
    let all = store.list_certificates(None).await.unwrap();
    assert_eq!(serials(&all), ["b", "c", "d", "a"], "ties broken by serial");
    assert!(
        store
            .list_certificates(Some("n3"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn recording_a_serial_again_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.record_certificate(cert("a", "n1", 10)).await.unwrap();
    store.record_certificate(cert("a", "n1", 50)).await.unwrap();
    assert_eq!(
        store.list_certificates(None).await.unwrap(),
        vec![cert("a", "n1", 50)]
    );
    assert_eq!(
        store.prune_certificates(20).await.unwrap(),
        0,
        "old expiry was unindexed"
    );
}

#[tokio::test]
async fn prune_drops_only_certificates_expired_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    for (serial, not_after) in [("a", 10), ("b", 19), ("c", 20), ("d", 30)] {
        store
            .record_certificate(cert(serial, "n1", not_after))
            .await
            .unwrap();
    }
    assert_eq!(store.prune_certificates(20).await.unwrap(), 2);
    let left = store.list_certificates(None).await.unwrap();
    assert_eq!(serials(&left), ["c", "d"]);
    assert_eq!(
        store.prune_certificates(20).await.unwrap(),
        0,
        "second prune"
    );
}

#[tokio::test]
async fn tokens_are_kept_a_day_past_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    store.create_token(token("used", 1000)).await.unwrap();
    store.create_token(token("live", 1_000_000)).await.unwrap();
    store.consume_token("used", &SECRET, 10).await.unwrap();
    let day_later = 1000 + TOKEN_RETENTION_AFTER_EXPIRY;
    assert_eq!(store.prune_tokens(day_later - 1).await.unwrap(), 0);
    let replay = store.consume_token("used", &SECRET, day_later - 1).await;
    assert!(
        matches!(replay, Err(TokenError::Used)),
        "within retention: {replay:?}"
    );
    assert_eq!(store.prune_tokens(day_later).await.unwrap(), 1);
    let gone = store.consume_token("used", &SECRET, day_later).await;
    assert!(
        matches!(gone, Err(TokenError::Unknown)),
        "after retention: {gone:?}"
    );
    store
        .consume_token("live", &SECRET, day_later)
        .await
        .unwrap();
}

#[tokio::test]
async fn nodes_are_replaced_by_name_and_listed_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("s.redb"));
    for name in ["n2", "n10", "n1"] {
        store.put_node(node(name)).await.unwrap();
    }
    let mut moved = node("n2");
    moved.allow = vec![];
    store.put_node(moved.clone()).await.unwrap();
    let names: Vec<_> = store
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["n1", "n10", "n2"]);
    assert_eq!(store.get_node("n2").await.unwrap(), Some(moved));
    assert!(store.delete_node("n2").await.unwrap());
    assert!(!store.delete_node("n2").await.unwrap(), "already gone");
    assert_eq!(store.get_node("n2").await.unwrap(), None);
    assert_eq!(store.get_node("n3").await.unwrap(), None);
}

fn open_error(path: &Path) -> (OpenProblem, String) {
    match EmbeddedStore::open(path) {
        Err(e @ StoreError::Open { problem, .. }) => (problem, e.to_string()),
        other => panic!(
            "expected an open error for {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn opening_a_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (problem, message) = open_error(dir.path());
    assert_eq!(problem, OpenProblem::IsDirectory, "{message}");
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn opening_garbage_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, b"this is not a database\n".repeat(500)).unwrap();
    let (problem, message) = open_error(&path);
    assert_eq!(problem, OpenProblem::Corrupt, "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn opening_a_store_that_is_already_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let _first = open(&path);
    let (problem, message) = open_error(&path);
    assert_eq!(problem, OpenProblem::Locked, "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn records_from_before_pod_networks_decode_without_any() {
    let legacy = r#"{"name":"n1","spiffe_id":"spiffe://td/node/n1","allow":[],"joined_at":7}"#;
    let node: NodeRecord = serde_json::from_str(legacy).unwrap();
    assert!(node.pod_cidrs.is_empty());
}
