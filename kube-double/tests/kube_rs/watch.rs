//! Watches through kube-runtime: the agent's node-scoped pod watcher, bookmarks, timeouts,
//! and recovery from 410 Expired after compaction by relisting.
//!
//! Against a real cluster too (`KUBECONFIG`): the field-selected watcher writing through the API.
//! Double-only: the rest writes directly like a test kubelet (`put`, `delete`), compacts, counts
//! requests, or needs 100 ms bookmarks and a streaming-list server.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams, VersionMatch, WatchEvent,
    WatchParams,
};
use kube::runtime::{reflector, watcher};
use serde_json::json;
use tokio::time::timeout;

use super::{NO_SUCH_NODE, Target, admin, api_error, double, fast_bookmarks, namespace, now, pod};

const WAIT: Duration = Duration::from_secs(10);

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// Next watcher event that is not part of the initial listing bookkeeping.
async fn next_change<K, S>(events: &mut S) -> watcher::Event<K>
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Unpin,
{
    loop {
        let event = timeout(WAIT, events.next())
            .await
            .expect("a watch event in time")
            .expect("the stream goes on");
        match event.expect("no watch error") {
            watcher::Event::Init | watcher::Event::InitDone => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn node_watcher_sees_its_pods_come_change_and_go_and_nothing_else() {
    let double = double();
    double.put(&namespace("shop", &[])).unwrap();
    double.put(&pod("shop", "before", Some("node-a"))).unwrap();
    let pods: Api<Pod> = Api::all(admin(&double).await);
    let config = watcher::Config::default().fields("spec.nodeName=node-a");
    let mut events = watcher(pods, config).boxed();

    let listed = next_change(&mut events).await;
    assert!(
        matches!(&listed, watcher::Event::InitApply(p) if name(p) == "before"),
        "got {listed:?}"
    );

    // Another node's pod, then ours: only ours arrives.
    double
        .put(&pod("shop", "elsewhere", Some("node-b")))
        .unwrap();
    double.put(&pod("shop", "mine", Some("node-a"))).unwrap();
    let added = next_change(&mut events).await;
    assert!(
        matches!(&added, watcher::Event::Apply(p) if name(p) == "mine"),
        "got {added:?}"
    );

    // A pod created unscheduled and bound to our node later enters the selection.
    double.put(&pod("shop", "late", None)).unwrap();
    double.put(&pod("shop", "late", Some("node-a"))).unwrap();
    let bound = next_change(&mut events).await;
    assert!(
        matches!(&bound, watcher::Event::Apply(p) if name(p) == "late"),
        "got {bound:?}"
    );

    // A status change (the test "kubelet" writes it directly) is a modification.
    let mut running = double.get::<Pod>("shop", "mine").unwrap();
    running.status = Some(k8s_openapi::api::core::v1::PodStatus {
        pod_ip: Some("10.1.0.9".into()),
        ..Default::default()
    });
    double.put(&running).unwrap();
    let modified = next_change(&mut events).await;
    match &modified {
        watcher::Event::Apply(p) => assert_eq!(
            p.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            Some("10.1.0.9")
        ),
        other => panic!("expected the status update, got {other:?}"),
    }

    double.delete::<Pod>("shop", "elsewhere").unwrap();
    double.delete::<Pod>("shop", "mine").unwrap();
    let deleted = next_change(&mut events).await;
    assert!(
        matches!(&deleted, watcher::Event::Delete(p) if name(p) == "mine"),
        "got {deleted:?}"
    );
}

#[tokio::test]
async fn field_selected_watcher_sees_added_modified_deleted_through_the_api() {
    let target = Target::new().await;
    let ns = target.unique_namespace().await;
    let pods: Api<Pod> = Api::namespaced(target.admin_client(), &ns);
    let create = |name: &str, node: &str| {
        let pods = pods.clone();
        let pod = pod(&ns, name, Some(node));
        async move { pods.create(&PostParams::default(), &pod).await.unwrap() }
    };
    create("before", NO_SUCH_NODE).await;
    let config = watcher::Config::default().fields(&format!("spec.nodeName={NO_SUCH_NODE}"));
    let mut events = watcher(pods.clone(), config).boxed();
    let listed = next_change(&mut events).await;
    assert!(
        matches!(&listed, watcher::Event::InitApply(p) if name(p) == "before"),
        "got {listed:?}"
    );

    // Another node's pod, then ours: only ours arrives.
    create("elsewhere", "ferrule-test-another-node").await;
    create("mine", NO_SUCH_NODE).await;
    let added = next_change(&mut events).await;
    assert!(
        matches!(&added, watcher::Event::Apply(p) if name(p) == "mine"),
        "got {added:?}"
    );

    let status = json!({"status": {"podIP": "10.1.0.9"}});
    pods.patch_status("mine", &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
    let modified = next_change(&mut events).await;
    match &modified {
        watcher::Event::Apply(p) => assert_eq!(
            (
                name(p).as_str(),
                p.status.as_ref().and_then(|s| s.pod_ip.as_deref())
            ),
            ("mine", Some("10.1.0.9"))
        ),
        other => panic!("expected the status update, got {other:?}"),
    }

    pods.delete("elsewhere", &now()).await.unwrap();
    pods.delete("mine", &now()).await.unwrap();
    let deleted = next_change(&mut events).await;
    assert!(
        matches!(&deleted, watcher::Event::Delete(p) if name(p) == "mine"),
        "got {deleted:?}"
    );
}

#[tokio::test]
async fn watches_send_bookmarks_and_end_at_their_timeout() {
    let double = fast_bookmarks();
    double.put(&namespace("shop", &[])).unwrap();
    let pods: Api<Pod> = Api::namespaced(admin(&double).await, "shop");
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let params = WatchParams::default().timeout(1);
    let started = tokio::time::Instant::now();
    let events: Vec<_> = timeout(
        WAIT,
        pods.watch(&params, &rv)
            .await
            .unwrap()
            .try_collect::<Vec<_>>(),
    )
    .await
    .expect("the watch ends by itself")
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "ended after {:?}",
        started.elapsed()
    );
    let bookmarks: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
            _ => None,
        })
        .collect();
    assert!(
        bookmarks.len() >= 3,
        "bookmarks every 100 ms for a second, got {}",
        bookmarks.len()
    );
    assert!(
        bookmarks.iter().all(|b| *b == rv),
        "nothing changed, so bookmarks carry {rv}: {bookmarks:?}"
    );
}

#[tokio::test]
async fn compaction_expires_versions_and_the_reflector_relists_and_converges() {
    let double = double();
    let client = admin(&double).await;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace("shop", &[]))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    pods.create(&PostParams::default(), &pod("shop", "a", Some("node-a")))
        .await
        .unwrap();
    let old_rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    double.put(&pod("shop", "b", Some("node-a"))).unwrap();
    double.compact();

    // A watch from before the compaction gets 410 Expired as an ERROR event.
    let mut stale = pods
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match timeout(WAIT, stale.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // So does an exact list at that version.
    let exact = ListParams::default()
        .at(&old_rv)
        .matching(VersionMatch::Exact);
    assert_eq!(
        api_error(pods.list(&exact).await),
        (410, "Expired".to_owned())
    );

    // A reflector that is watching when the compaction happens relists and keeps converging.
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(pods.clone(), watcher::Config::default()));
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = errors.clone();
    let task = tokio::spawn(stream.for_each(move |event| {
        if let Err(watcher::Error::WatchError(status)) = &event {
            seen.lock().unwrap().push(status.code);
        }
        futures::future::ready(())
    }));
    timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    let lists_before = double.requests("list", "pods");
    double.put(&pod("shop", "c", Some("node-a"))).unwrap();
    double.compact();
    double.delete::<Pod>("shop", "a").unwrap();
    let names = || {
        let mut names: Vec<String> = reader.state().iter().map(|p| name(p)).collect();
        names.sort();
        names
    };
    let converged = timeout(WAIT, async {
        while names() != ["b", "c"] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(converged.is_ok(), "reflector holds {:?}", names());
    assert!(
        errors.lock().unwrap().contains(&410),
        "the watcher saw 410: {:?}",
        errors.lock().unwrap()
    );
    assert!(
        double.requests("list", "pods") > lists_before,
        "the watcher listed again"
    );
    task.abort();
}

#[tokio::test]
async fn streaming_list_watchers_get_the_initial_state_then_changes() {
    let double = double();
    double.put(&namespace("shop", &[])).unwrap();
    double.put(&pod("shop", "a", None)).unwrap();
    let pods: Api<Pod> = Api::namespaced(admin(&double).await, "shop");
    let mut events = watcher(pods, watcher::Config::default().streaming_lists()).boxed();
    let first = next_change(&mut events).await;
    assert!(
        matches!(&first, watcher::Event::InitApply(p) if name(p) == "a"),
        "got {first:?}"
    );
    let done = timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(done, watcher::Event::InitDone),
        "the annotated bookmark ends the initial events"
    );
    double.put(&pod("shop", "b", None)).unwrap();
    let added = next_change(&mut events).await;
    assert!(
        matches!(&added, watcher::Event::Apply(p) if name(p) == "b"),
        "got {added:?}"
    );
}

#[tokio::test]
async fn metadata_watchers_get_partial_objects_with_labels() {
    let double = double();
    let client = admin(&double).await;
    let partial: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let config = watcher::Config::default().labels("ferrule.io/mode");
    let mut events = watcher(partial, config).boxed();
    let first = next_change(&mut events);
    double.put(&namespace("plain", &[])).unwrap();
    double
        .put(&namespace("shop", &[("ferrule.io/mode", "strict")]))
        .unwrap();
    match first.await {
        watcher::Event::Apply(meta) | watcher::Event::InitApply(meta) => {
            assert_eq!(
                meta.metadata.name.as_deref(),
                Some("shop"),
                "only labelled namespaces"
            );
            assert_eq!(meta.metadata.labels.unwrap()["ferrule.io/mode"], "strict");
            assert_eq!(
                meta.types.map(|t| t.kind).as_deref(),
                Some("PartialObjectMetadata")
            );
        }
        other => panic!("expected the labelled namespace, got {other:?}"),
    }
    let plain = Api::<Namespace>::all(client)
        .get_metadata("plain")
        .await
        .unwrap();
    assert_eq!(plain.types.unwrap().kind, "PartialObjectMetadata");
}
