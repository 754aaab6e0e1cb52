//! ferrule-cni's fallback when the agent is down, against the in-process Kubernetes API double:
//! the namespace label and the pod annotation decide whether ADD fails closed.

#[path = "chain/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferrule_kube_double::KubeDouble;
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;
use support::{Chain, FakeAgent, Reply};

/// The double serving on 127.0.0.1 from a runtime of its own, and a kubeconfig for it.
struct Api {
    double: KubeDouble,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Api {
    fn start() -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let double = KubeDouble::new();
        {
            let _entered = runtime.enter();
            double.start_local().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("ferrule-cni.kubeconfig");
        double
            .write_kubeconfig(&kubeconfig, &double.admin_token())
            .unwrap();
        Api {
            double,
            kubeconfig,
            _dir: dir,
            _runtime: runtime,
        }
    }

    fn namespace(&self, name: &str, mode: Option<&str>) {
        let labels = mode.map(|m| BTreeMap::from([("ferrule.io/mode".to_owned(), m.to_owned())]));
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels,
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        self.double.put(&namespace).unwrap();
    }

    fn pod(&self, namespace: &str, name: &str, annotation: Option<&str>) {
        let annotations =
            annotation.map(|m| BTreeMap::from([("ferrule.io/mode".to_owned(), m.to_owned())]));
        let pod = Pod {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                annotations,
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("app:1".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        self.double.put(&pod).unwrap();
    }
}

#[test]
fn agent_down_and_namespace_meshed_fails_then_succeeds_once_the_agent_is_back() {
    let api = Api::start();
    api.namespace("shop", Some("strict"));
    api.pod("shop", "web-1", None);
    let chain = Chain::new("1.0.0").with_api(&api.kubeconfig);

    let add = chain.add("shop", "web-1");
    let error = add.expect_err();
    assert_eq!(error["code"], 11, "{error}");
    assert_eq!(
        error["msg"],
        format!(
            "ferrule agent unreachable at {}: pod shop/web-1 must be meshed \
             (namespace label ferrule.io/mode=strict); the runtime will retry",
            chain.agent_socket().display()
        )
    );

    // The runtime tears the failed sandbox down and retries once the agent is back.
    chain.del("shop", "web-1", &add).expect_ok_empty();
    let agent = FakeAgent::start(chain.dir(), |_| {
        Reply::json(200, json!({"meshed": true, "mode": "strict"}))
    });
    chain.add("shop", "web-1").expect_ok();
    assert_eq!(agent.paths(), ["/v1/cni/add"]);
}

#[test]
fn agent_down_and_namespace_not_labelled_passes() {
    let api = Api::start();
    api.namespace("blog", None);
    api.pod("blog", "web-1", None);
    let chain = Chain::new("1.0.0").with_api(&api.kubeconfig);
    let add = chain.add("blog", "web-1");
    assert_eq!(add.expect_ok(), add.prev_result_of("ferrule-cni"));
}

#[test]
fn agent_down_and_pod_annotation_decides_over_the_namespace() {
    let api = Api::start();
    api.namespace("blog", None);
    api.pod("blog", "opted-in", Some("permissive"));
    api.namespace("shop", Some("enabled"));
    api.pod("shop", "opted-out", Some("disabled"));
    let chain = Chain::new("1.0.0").with_api(&api.kubeconfig);

    let add = chain.add("blog", "opted-in");
    let error = add.expect_err();
    assert_eq!(error["code"], 11, "{error}");
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("must be meshed (pod annotation ferrule.io/mode=permissive)"),
        "{error}"
    );
    chain.del("blog", "opted-in", &add).expect_ok_empty();
    chain.add("shop", "opted-out").expect_ok();
}

#[test]
fn agent_down_and_pod_unknown_to_the_api_fails_closed() {
    let api = Api::start();
    api.namespace("blog", None);
    let chain = Chain::new("1.0.0").with_api(&api.kubeconfig);
    let error = chain.add("blog", "ghost").expect_err();
    assert_eq!(error["code"], 11, "{error}");
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("the Kubernetes API cannot tell whether pod blog/ghost must be meshed"),
        "{error}"
    );
}

#[test]
fn the_kubeconfig_the_installer_writes_reaches_the_api() {
    let api = Api::start();
    api.namespace("shop", Some("strict"));
    api.pod("shop", "web-1", None);
    api.namespace("blog", None);
    api.pod("blog", "web-1", None);
    let access = ferrule_cni::ApiAccess {
        server: api.double.url().unwrap(),
        ca_pem: String::new(),
        token: api.double.admin_token(),
    };
    let chain = Chain::new("1.0.0").installed_with_api(Some(access));
    let add = chain.add("shop", "web-1");
    assert_eq!(add.expect_err()["code"], 11);
    chain.del("shop", "web-1", &add).expect_ok_empty();
    chain.add("blog", "web-1").expect_ok();
}
