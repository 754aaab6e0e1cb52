use super::*;

fn policy(key: &str, json: &str) -> v1::Resource {
    v1::Resource {
        key: key.into(),
        kind: Some(v1::resource::Kind::Policy(v1::PolicyDocument {
            json: json.into(),
        })),
    }
}

fn put(resource: &v1::Resource) -> Change {
    Change::Put(resource.clone())
}

fn remove(key: &str) -> Change {
    Change::Remove(ResourceKind::Policy, key.into())
}

fn empty() -> Cache {
    Cache::from_log(ConfigLog {
        epoch: "e1".into(),
        ..Default::default()
    })
    .unwrap()
}

fn keys(update: &v1::ConfigUpdate) -> (Vec<&str>, Vec<&str>) {
    (
        update.upserts.iter().map(|r| r.key.as_str()).collect(),
        update.removals.iter().map(|r| r.key.as_str()).collect(),
    )
}

#[test]
fn deltas_carry_only_what_changed_after_the_version() {
    let mut cache = empty();
    let (a, b) = (policy("a", "1"), policy("b", "1"));
    cache.apply(1, vec![put(&a), put(&b)]);
    cache.apply(2, vec![put(&policy("b", "2"))]);
    cache.apply(3, vec![remove("a")]);

    let delta = cache.update_since("e1", 1);
    assert!(!delta.snapshot);
    assert_eq!((delta.base_version, delta.version), (1, 3));
    assert_eq!(keys(&delta), (vec!["b"], vec!["a"]));
    assert_eq!(keys(&cache.update_since("e1", 3)), (vec![], vec![]));

    let from_nothing = cache.update_since("e1", 0);
    assert!(
        from_nothing.snapshot,
        "an agent holding nothing gets a snapshot"
    );
    assert_eq!(keys(&from_nothing), (vec!["b"], vec![]));
}

#[test]
fn another_epoch_or_a_future_version_gets_a_snapshot() {
    let mut cache = empty();
    cache.apply(1, vec![put(&policy("a", "1"))]);
    cache.apply(2, vec![remove("a"), put(&policy("b", "1"))]);
    for (epoch, version) in [("other", 1), ("", 0), ("e1", 9)] {
        let update = cache.update_since(epoch, version);
        assert!(update.snapshot, "{epoch}/{version}");
        assert_eq!(
            keys(&update),
            (vec!["b"], vec![]),
            "tombstones are not sent"
        );
    }
}

#[test]
fn unchanged_puts_and_removals_of_unknown_keys_keep_their_versions() {
    let mut cache = empty();
    let a = policy("a", "1");
    cache.apply(1, vec![put(&a)]);
    cache.apply(2, vec![put(&a), remove("never-there")]);
    assert_eq!(keys(&cache.update_since("e1", 1)), (vec![], vec![]));
    assert_eq!(cache.tombstones(), 0);
}

#[test]
fn compaction_forgets_old_tombstones_and_turns_old_resumes_into_snapshots() {
    let mut cache = empty();
    for v in 1..=4 {
        cache.apply(v, vec![put(&policy(&format!("p{v}"), "1"))]);
    }
    for v in 5..=8 {
        cache.apply(v, vec![remove(&format!("p{}", v - 4))]);
    }
    assert_eq!(cache.tombstones(), 4);
    let through = cache.compaction_point(2).unwrap();
    assert_eq!(through, 6);
    cache.compact(through);
    assert_eq!(cache.tombstones(), 2);
    assert!(cache.update_since("e1", 5).snapshot);
    let delta = cache.update_since("e1", 6);
    assert_eq!(keys(&delta), (vec![], vec!["p3", "p4"]));
}
