//! The control plane as active-active replicas on etcd: a 3-member etcd cluster on loopback
//! (Debian's etcd-server, started by the harness) and 3 control-plane replicas sharing it.

use std::sync::Arc;
use std::time::Duration;

use ferrule_proto::v1;
use ferrule_tests::ControlPlaneFixture;
use ferrule_tests::etcd::EtcdCluster;
use ferrule_tests::mesh::Mesh;
use ferrule_tests::metrics::series_value;
use ferrule_tests::process::binary;
use ferrule_tests::watch_client::Watch;

const SHOP: &str = "spiffe://example.org/ns/shop/sa/*";

const POLICY: &str = "apiVersion: ferrule.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-web, namespace: shop}
spec:
  action: ALLOW
  rules:
    - from: [{namespace: web}]
      ports: [8080]
";

/// `count` replicas of one control plane on `etcd`, started; the first owns the CA files.
fn replicas(etcd: &EtcdCluster, count: usize) -> Vec<ControlPlaneFixture> {
    let first = ControlPlaneFixture::new("example.org");
    let prefix = format!("/ferrule-{}/", std::process::id());
    let mut all = vec![first];
    for _ in 1..count {
        let replica = all[0].replica();
        all.push(replica);
    }
    for replica in &mut all {
        replica.use_etcd(&etcd.endpoints(), &prefix);
        replica.start();
    }
    all
}

fn apply_policy(cp: &ControlPlaneFixture, name: &str) {
    let out = try_apply_policy(cp, name);
    assert!(out.status.success(), "{}", text(&out));
}

fn try_apply_policy(cp: &ControlPlaneFixture, name: &str) -> std::process::Output {
    let path = cp.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, POLICY.replace("allow-web", name)).unwrap();
    cp.ferrule(&["policy", "apply", "-f", &path.display().to_string()])
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn has_policy(update: &v1::ConfigUpdate, name: &str) -> bool {
    update.upserts.iter().any(|r| r.key.ends_with(name))
}

/// A node joined through `cp`; its identity opens watches on any replica.
async fn node(cp: &ControlPlaneFixture, name: &str) -> Arc<ferrule_identity::tls::CertSlot> {
    cp.join_node(name, &[SHOP]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_written_through_one_replica_reaches_watchers_of_every_replica_as_one_version() {
    let etcd = EtcdCluster::start(3);
    let cps = replicas(&etcd, 3);
    let slot = node(&cps[0], "n1").await;
    let mut watches = Vec::new();
    for cp in &cps {
        let mut watch = Watch::open(cp.channel(Some(slot.clone())), "", 0).await;
        let snapshot = watch.next().await;
        assert!(snapshot.snapshot);
        watches.push((watch, snapshot));
    }
    let first_versions: Vec<u64> = watches.iter().map(|(_, s)| s.version).collect();
    assert!(
        first_versions.windows(2).all(|w| w[0] == w[1]),
        "every replica serves the same version: {first_versions:?}"
    );
    let epochs: Vec<&str> = watches.iter().map(|(_, s)| s.epoch.as_str()).collect();
    assert!(epochs.windows(2).all(|w| w[0] == w[1]), "{epochs:?}");

    apply_policy(&cps[1], "allow-web");
    let mut versions = Vec::new();
    for (watch, snapshot) in &mut watches {
        watch.ack(snapshot.version).await;
        let delta = watch.next().await;
        assert!(!delta.snapshot, "a delta, not a snapshot");
        assert_eq!(delta.base_version, snapshot.version);
        assert!(has_policy(&delta, "allow-web"), "{delta:?}");
        versions.push(delta.version);
    }
    assert!(
        versions.windows(2).all(|w| w[0] == w[1]) && versions[0] > first_versions[0],
        "the new version is one etcd revision on every replica: {versions:?}"
    );

    // `ferrule status` on any replica lists them all, caught up, one of them leading.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = cps[2].ferrule(&["-o", "json", "status"]);
        assert!(out.status.success(), "{}", text(&out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let replicas = status["replicas"].as_array().cloned().unwrap_or_default();
        let leaders = replicas.iter().filter(|r| r["leader"] == true).count();
        let caught_up = replicas.iter().all(|r| r["lag"] == 0);
        if replicas.len() == 3 && leaders == 1 && caught_up {
            assert_eq!(status["store"], "etcd");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never showed 3 caught-up replicas and one leader: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let table = text(&cps[0].ferrule(&["status"]));
    assert!(table.contains("store: etcd, 3 replica(s)"), "{table}");
}

/// An agent that applied a version on one replica resumes on another with a delta.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_resumes_on_another_replica_with_a_delta() {
    let etcd = EtcdCluster::start(3);
    let cps = replicas(&etcd, 2);
    let slot = node(&cps[0], "n1").await;
    let mut watch = Watch::open(cps[0].channel(Some(slot.clone())), "", 0).await;
    let applied = watch.next().await;
    watch.ack(applied.version).await;
    drop(watch);

    apply_policy(&cps[0], "allow-web");
    let mut moved = Watch::open(cps[1].channel(Some(slot)), &applied.epoch, applied.version).await;
    let update = moved.next().await;
    assert!(!update.snapshot, "resumed with a delta: {update:?}");
    assert_eq!(update.base_version, applied.version);
    assert!(has_policy(&update, "allow-web"));
}

/// The same join token presented to two replicas at the same instant: exactly one join
/// succeeds, on every one of 100 tries.
#[tokio::test(flavor = "multi_thread")]
async fn one_join_token_on_two_replicas_at_once_joins_exactly_once() {
    let etcd = EtcdCluster::start(3);
    let cps = Arc::new(replicas(&etcd, 2));
    for i in 0..100 {
        let node = format!("race-{i}");
        let token = cps[0]
            .join_token(&node, &[SHOP], Duration::from_secs(600))
            .await;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let join = |replica: usize| {
            let (cps, token, barrier) = (cps.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                let bundle = cps[replica].bundle();
                barrier.wait().await;
                ferrule_node_agent::control::join(
                    cps[replica].addr,
                    &bundle,
                    ferrule_node_agent::control::JoinCredential::Token(&token),
                )
                .await
            })
        };
        let (a, b) = (join(0), join(1));
        let outcomes = [a.await.unwrap(), b.await.unwrap()];
        let joined = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(
            joined,
            1,
            "try {i}: {:?}",
            outcomes
                .iter()
                .map(|o| o.as_ref().err())
                .collect::<Vec<_>>()
        );
    }
}

async fn sign(
    cp: &ControlPlaneFixture,
    node: &Arc<ferrule_identity::tls::CertSlot>,
) -> Result<(), tonic::Status> {
    use ferrule_identity::SpiffeId;
    use ferrule_identity::csr::{build_csr, generate_workload_key};
    let id = "spiffe://example.org/ns/shop/sa/web";
    let key = generate_workload_key().unwrap();
    let csr = build_csr(&key, &SpiffeId::parse(id).unwrap()).unwrap();
    let request = v1::SignRequest {
        spiffe_id: id.into(),
        csr,
    };
    v1::identity_client::IdentityClient::new(cp.channel(Some(node.clone())))
        .sign(request)
        .await
        .map(drop)
}

/// With all of etcd gone, the replicas keep their agents' streams and last version; Sign fails
/// fast with UNAVAILABLE naming the store; once etcd is back, pushes resume without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn with_etcd_gone_agents_keep_their_version_and_sign_fails_fast_until_it_returns() {
    let mut etcd = EtcdCluster::start(3);
    let cps = replicas(&etcd, 2);
    let slot = node(&cps[0], "n1").await;
    sign(&cps[0], &slot).await.expect("sign while etcd is up");
    let mut watch = Watch::open(cps[1].channel(Some(slot.clone())), "", 0).await;
    let applied = watch.next().await;
    watch.ack(applied.version).await;

    etcd.kill_all();
    let started = std::time::Instant::now();
    let refused = sign(&cps[0], &slot)
        .await
        .expect_err("no store, no certificate");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("store"), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "failed after {:?}",
        started.elapsed()
    );

    let shown = text(&cps[1].ferrule(&["status"]));
    assert!(
        shown.contains("store: etcd UNREACHABLE") && shown.contains("agents keep enforcing"),
        "status says why: {shown}"
    );
    let refused = try_apply_policy(&cps[0], "allow-web");
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Unavailable") && text(&refused).contains("store"),
        "{}",
        text(&refused)
    );

    etcd.restart_all();
    // As an operator would: retry until the replica's client has reconnected.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !try_apply_policy(&cps[0], "allow-web").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd is back but writes still fail"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let update = watch.next_within(Duration::from_secs(30)).await;
    assert!(
        !update.snapshot,
        "the same stream resumes with a delta: {update:?}"
    );
    assert!(has_policy(&update, "allow-web"));
    sign(&cps[0], &slot).await.expect("sign once etcd is back");
}

const SNAPSHOTS: &str = "ferrule_config_updates_total{result=\"ack\",kind=\"snapshot\"}";

/// How many agents watch through replica `cp` (its metrics, scraped in node 0's netns).
fn connected_agents(mesh: &Mesh, cp: &ControlPlaneFixture) -> usize {
    let url = format!("http://{}/metrics", cp.metrics_addr);
    let out = mesh
        .node(0)
        .command("curl")
        .args(["-sS", "--max-time", "5", &url])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("ferrule_agent_connected{") && l.ends_with(" 1"))
        .count()
}

fn agent_value(mesh: &Mesh, node: usize, series: &str) -> f64 {
    series_value(&mesh.metrics(node), series)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        if std::time::Instant::now() > deadline {
            eprintln!("timed out waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// `ferrule policy apply` against one replica, from node 0's netns.
fn apply_policy_via(mesh: &Mesh, cp: &ControlPlaneFixture, name: &str) {
    let path = mesh.work.path().join(format!("{name}.yaml"));
    std::fs::write(&path, POLICY.replace("allow-web", name)).unwrap();
    let out = mesh
        .node(0)
        .command(binary("ferrule"))
        .args(["policy", "apply", "-f", &path.display().to_string()])
        .env("FERRULE_CA_DIR", cp.layout.dir())
        .env("FERRULE_CONTROL_PLANE", cp.addr.to_string())
        .output()
        .expect("ferrule");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn killing_the_replica_serving_most_agents_during_a_push_loses_no_version() {
    let nodes = 3;
    let mut mesh = Mesh::start_ha(nodes, 1, 3);
    let versions = |mesh: &Mesh| -> Vec<f64> {
        (0..nodes)
            .map(|n| agent_value(mesh, n, "ferrule_config_version"))
            .collect()
    };
    let settled = wait_until(
        "every agent to apply one version",
        Duration::from_secs(60),
        || {
            let v = versions(&mesh);
            v[0] > 0.0 && v.windows(2).all(|w| w[0] == w[1])
        },
    );
    assert!(settled, "versions {:?}", versions(&mesh));
    let counts: Vec<usize> = std::iter::once(&mesh.cp)
        .chain(&mesh.replicas)
        .map(|cp| connected_agents(&mesh, cp))
        .collect();
    let busiest = (0..counts.len()).max_by_key(|i| counts[*i]).unwrap();
    let writer = (busiest + 1) % counts.len();
    let snapshots: Vec<f64> = (0..nodes)
        .map(|n| agent_value(&mesh, n, SNAPSHOTS))
        .collect();
    let before = versions(&mesh)[0];

    let writer_cp = if writer == 0 {
        &mesh.cp
    } else {
        &mesh.replicas[writer - 1]
    };
    apply_policy_via(&mesh, writer_cp, "allow-web");
    if busiest == 0 {
        mesh.cp.stop();
    } else {
        mesh.replicas[busiest - 1].stop();
    }

    let converged = wait_until(
        "every agent to apply the pushed version through a surviving replica",
        Duration::from_secs(60),
        || {
            let v = versions(&mesh);
            v[0] > before && v.windows(2).all(|w| w[0] == w[1])
        },
    );
    let logs: Vec<String> = (0..nodes).map(|n| mesh.agent(n).output()).collect();
    assert!(
        converged,
        "versions {:?} (before {before}); agents:\n{}",
        versions(&mesh),
        logs.join("\n---\n")
    );
    let survivors: Vec<&ControlPlaneFixture> = std::iter::once(&mesh.cp)
        .chain(&mesh.replicas)
        .enumerate()
        .filter(|(i, _)| *i != busiest)
        .map(|(_, cp)| cp)
        .collect();
    let moved = wait_until(
        "the killed replica's agents to watch through the others",
        Duration::from_secs(30),
        || {
            survivors
                .iter()
                .map(|cp| connected_agents(&mesh, cp))
                .sum::<usize>()
                == nodes
        },
    );
    assert!(moved, "agents per replica before the kill: {counts:?}");
    let pushed = versions(&mesh)[0] as u64;
    for (node, snapshots_before) in snapshots.iter().enumerate() {
        assert_eq!(
            agent_value(&mesh, node, SNAPSHOTS),
            *snapshots_before,
            "node {node} resumed with a delta, not a snapshot (replica {busiest} served {} agents)",
            counts[busiest]
        );
        let applied = format!("config applied version={pushed} ");
        assert_eq!(
            mesh.agent(node).output().matches(&applied).count(),
            1,
            "node {node} applied version {pushed} exactly once:\n{}",
            mesh.agent(node).output()
        );
    }
}

/// Exactly one replica runs the singleton jobs; when it is killed, another takes them over
/// within the leader's lease.
#[tokio::test(flavor = "multi_thread")]
async fn killing_the_leader_hands_the_singleton_jobs_to_another_replica_within_the_lease() {
    let etcd = EtcdCluster::start(3);
    let mut cps = replicas(&etcd, 2);
    let leading = |cps: &[ControlPlaneFixture]| -> Vec<usize> {
        (0..cps.len())
            .filter(|i| cps[*i].counter("ferrule_control_plane_leader") == 1.0)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while leading(&cps).len() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no single leader: {:?}",
            leading(&cps)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = leading(&cps)[0];
    cps[leader].stop();
    let survivor = 1 - leader;
    let killed = std::time::Instant::now();
    let lease = ferrule_control_plane::maintenance::LEADER_LEASE;
    while cps[survivor].counter("ferrule_control_plane_leader") != 1.0 {
        assert!(
            killed.elapsed() < lease + Duration::from_secs(5),
            "replica {survivor} did not take over within the lease:\n{}",
            cps[survivor].process().output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        cps[survivor]
            .process()
            .output()
            .contains("this replica now leads the singleton jobs")
    );
}
