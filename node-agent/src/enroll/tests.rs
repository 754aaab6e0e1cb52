//! The API driven by curl, the way an operator or a CNI plugin would, against a recording fake.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::testing::call as curl;
use super::*;

#[derive(Default)]
struct Recorder {
    pods: Mutex<Vec<EnrolledPod>>,
    uninstalling: AtomicBool,
}

#[tonic::async_trait]
impl PodLifecycle for Recorder {
    async fn enroll(&self, spec: PodSpec) -> Result<EnrolledPod, EnrollError> {
        if self.uninstalling.load(Ordering::SeqCst) {
            return Err(EnrollError::Uninstalling);
        }
        if spec.namespace == "forbidden" {
            return Err(EnrollError::Forbidden("node n1 may not run it".into()));
        }
        let pod = EnrolledPod {
            spiffe_id: format!(
                "spiffe://example.org/ns/{}/sa/{}",
                spec.namespace, spec.service_account
            ),
            spec,
            plaintext_accepted: 0,
        };
        self.pods.lock().unwrap().push(pod.clone());
        Ok(pod)
    }

    async fn unenroll(&self, uid: &str) -> Result<bool, EnrollError> {
        let mut pods = self.pods.lock().unwrap();
        let before = pods.len();
        pods.retain(|p| p.spec.uid != uid);
        Ok(pods.len() < before)
    }

    fn list(&self) -> Vec<EnrolledPod> {
        self.pods.lock().unwrap().clone()
    }

    async fn uninstall(&self) -> UninstallAnswer {
        UninstallAnswer {
            already: self.uninstalling.swap(true, Ordering::SeqCst),
            released_pods: std::mem::take(&mut *self.pods.lock().unwrap()).len(),
        }
    }
}

const POD: &str = r#"{"uid":"u1","name":"web-0","namespace":"shop","service_account":"web",
  "ips":["10.244.1.10"],"netns":"/run/netns/p1","cgroup":"/sys/fs/cgroup/unified/p1"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn enroll_list_and_unenroll_over_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = tokio::spawn(serve(
        listener,
        recorder.clone(),
        None,
        std::future::pending(),
        Default::default(),
    ));

    let socket2 = socket.clone();
    let results = tokio::task::spawn_blocking(move || {
        let s = &socket2;
        vec![
            curl(s, "POST", "/v1/pods", Some(POD)),
            curl(s, "GET", "/v1/pods", None),
            curl(
                s,
                "POST",
                "/v1/pods",
                Some(&POD.replace("\"uid\":\"u1\"", "\"uid\":\"bad uid\"")),
            ),
            curl(
                s,
                "POST",
                "/v1/pods",
                Some(&POD.replace("\"name\"", "\"nmae\"")),
            ),
            curl(s, "POST", "/v1/pods", Some("{not json")),
            curl(
                s,
                "POST",
                "/v1/pods",
                Some(&POD.replace("shop", "forbidden").replace("u1", "u2")),
            ),
            curl(s, "DELETE", "/v1/pods/u1", None),
            curl(s, "DELETE", "/v1/pods/u1", None),
            curl(s, "GET", "/v2/nothing", None),
        ]
    })
    .await
    .unwrap();
    server.abort();

    let (status, body) = &results[0];
    assert_eq!(*status, 201, "{body}");
    assert!(
        body.contains("\"spiffe_id\":\"spiffe://example.org/ns/shop/sa/web\""),
        "{body}"
    );
    assert!(results[1].1.contains("\"uid\":\"u1\""), "{:?}", results[1]);
    assert_eq!(results[2].0, 400, "{:?}", results[2]);
    assert!(results[2].1.contains("uid"), "{:?}", results[2]);
    assert_eq!(results[3].0, 400, "{:?}", results[3]);
    assert!(
        results[3].1.contains("unknown field `nmae`"),
        "{:?}",
        results[3]
    );
    assert_eq!(results[4].0, 400, "{:?}", results[4]);
    assert_eq!(results[5].0, 403, "{:?}", results[5]);
    assert_eq!(results[6].0, 204, "{:?}", results[6]);
    assert_eq!(results[7].0, 404, "{:?}", results[7]);
    assert_eq!(results[8].0, 404, "{:?}", results[8]);
    assert!(recorder.list().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_answers_what_it_released_and_later_enrollments_are_refused_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let recorder = Arc::new(Recorder::default());
    let server = tokio::spawn(serve(
        listener,
        recorder.clone(),
        None,
        std::future::pending(),
        Default::default(),
    ));

    let results = tokio::task::spawn_blocking(move || {
        let s = &socket;
        vec![
            curl(s, "POST", "/v1/pods", Some(POD)),
            curl(s, "POST", "/v1/uninstall", None),
            curl(s, "POST", "/v1/pods", Some(POD)),
            curl(s, "POST", "/v1/uninstall", None),
        ]
    })
    .await
    .unwrap();
    server.abort();

    assert_eq!(results[0].0, 201, "{:?}", results[0]);
    let answer = |i: usize| -> UninstallAnswer {
        assert_eq!(results[i].0, 200, "{:?}", results[i]);
        serde_json::from_str(&results[i].1).expect("an UninstallAnswer")
    };
    assert_eq!(
        answer(1),
        UninstallAnswer {
            already: false,
            released_pods: 1
        }
    );
    let (status, body) = &results[2];
    assert_eq!(*status, 503, "{body}");
    assert!(body.contains("being uninstalled"), "{body}");
    assert_eq!(
        answer(3),
        UninstallAnswer {
            already: true,
            released_pods: 0
        }
    );
}

/// Serves the API with `recorder` on a socket in a fresh directory; returns the socket path.
fn serve_on_socket(dir: &Path, recorder: Arc<Recorder>) -> (PathBuf, tokio::task::JoinHandle<()>) {
    let socket = dir.join("agent.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(serve(
        listener,
        recorder,
        None,
        std::future::pending(),
        Default::default(),
    ));
    (socket, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_running_as_another_user_is_refused_with_403_naming_its_uid() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let (socket, server) = serve_on_socket(dir.path(), recorder.clone());
    // The socket's mode opened up by mistake: SO_PEERCRED still keeps other users out.
    let open =
        |path: &Path, mode| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    open(dir.path(), 0o755).unwrap();
    open(&socket, 0o666).unwrap();

    let results = tokio::task::spawn_blocking(move || {
        [
            super::testing::call_as(65534, &socket, "POST", "/v1/pods", Some(POD)),
            curl(&socket, "GET", "/v1/pods", None),
        ]
    })
    .await
    .unwrap();
    server.abort();

    let (status, body) = &results[0];
    assert_eq!(*status, 403, "{body}");
    assert!(body.contains("runs as uid 65534"), "{body}");
    assert!(recorder.list().is_empty(), "nothing was enrolled");
    assert_eq!(
        results[1].0, 200,
        "root, the agent's user, is served: {:?}",
        results[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nodes_own_network_namespace_and_the_root_cgroup_are_refused_with_403() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let (socket, server) = serve_on_socket(dir.path(), recorder.clone());
    let root_cgroup = crate::ebpf::cgroup2_mount()
        .unwrap()
        .expect("a cgroup2 mount");
    let with = |from: &str, to: &str| POD.replace(from, to);
    let bodies = [
        with("/run/netns/p1", "/proc/self/ns/net"),
        with(
            "/sys/fs/cgroup/unified/p1",
            &root_cgroup.display().to_string(),
        ),
    ];

    let results = tokio::task::spawn_blocking(move || {
        bodies.map(|body| curl(&socket, "POST", "/v1/pods", Some(&body)))
    })
    .await
    .unwrap();
    server.abort();

    for ((status, body), expected) in results.iter().zip([
        "is the agent's own (the node's) network namespace",
        "is the root of the cgroup v2 hierarchy",
    ]) {
        assert_eq!(*status, 403, "{body}");
        assert!(body.contains(expected), "expected {expected:?} in {body}");
    }
    assert!(recorder.list().is_empty(), "nothing was enrolled");
}
