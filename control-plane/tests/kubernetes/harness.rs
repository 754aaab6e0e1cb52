//! A control plane in Kubernetes mode, in process, against the API server double: the cluster
//! has namespace `ferrule-system` with the agent's service account, nodes `n1` and `n2`, and an
//! agent pod on each.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferrule_control_plane::app::{self, Running};
use ferrule_control_plane::config::{Config, MapEnv};
use ferrule_control_plane::store::EmbeddedStore;
use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_identity::testing::TestCa;
use ferrule_identity::tls::{self, CertSlot, ExpectedServer, SpiffeServerVerifier};
use ferrule_identity::{SharedBundle, SpiffeId};
use ferrule_kube_double::KubeDouble;
use ferrule_proto::v1::{self, admin_client::AdminClient, identity_client::IdentityClient};
use ferrule_proto::v1::{node_client::NodeClient, workloads_client::WorkloadsClient};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodIP, PodSpec, PodStatus, ServiceAccount};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ObjectMeta;
use rustls_pki_types::CertificateDer;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const TD: &str = "example.org";
pub const SYSTEM: &str = "ferrule-system";
pub const AGENT_SA: &str = "ferrule-agent";

pub struct Cluster {
    pub double: KubeDouble,
    pub ca: TestCa,
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    _data: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.double.shutdown();
    }
}

/// A node's mTLS identity after it joined.
pub struct JoinedNode {
    pub spiffe_id: String,
    pub certs: Arc<CertSlot>,
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..ObjectMeta::default()
    }
}

/// The control plane's own service account (its API requests can be denied, unlike the
/// admin's).
pub const CONTROL_PLANE_SA: &str = "ferrule-control-plane";

/// The username the control plane's API requests run as.
pub fn control_plane_user() -> String {
    format!("system:serviceaccount:{SYSTEM}:{CONTROL_PLANE_SA}")
}

/// A client as the control plane's service account, from the kubeconfig the double writes.
pub async fn kube_client(double: &KubeDouble) -> kube::Client {
    let token = double
        .issue_token(
            SYSTEM,
            CONTROL_PLANE_SA,
            &[],
            None,
            Duration::from_secs(3600),
        )
        .expect("control plane token")
        .token;
    client_with(double, &token).await
}

/// A client with the cluster admin's credentials, as an operator's kubectl has.
pub async fn admin_kube_client(double: &KubeDouble) -> kube::Client {
    client_with(double, &double.admin_token()).await
}

async fn client_with(double: &KubeDouble, token: &str) -> kube::Client {
    let kubeconfig =
        Kubeconfig::from_yaml(&double.kubeconfig(token)).expect("the double's kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the double's kubeconfig");
    kube::Client::try_from(config).expect("a client for the double")
}

impl Cluster {
    pub async fn start() -> Self {
        let double = KubeDouble::new();
        double.start_local().expect("serving the API double");
        double.put(&namespace(SYSTEM, None)).unwrap();
        for sa in [AGENT_SA, CONTROL_PLANE_SA] {
            double
                .put(&ServiceAccount {
                    metadata: meta(Some(SYSTEM), sa),
                    ..ServiceAccount::default()
                })
                .unwrap();
        }
        for node in ["n1", "n2"] {
            double
                .put(&Node {
                    metadata: meta(None, node),
                    ..Node::default()
                })
                .unwrap();
            double
                .put(&pod(
                    SYSTEM,
                    &agent_pod(node),
                    AGENT_SA,
                    node,
                    &["10.9.0.1"],
                ))
                .unwrap();
        }
        let ca = TestCa::new(TD);
        let data = tempfile::tempdir().unwrap();
        let layout = &ca.layout;
        let yaml = format!(
            "trust_domain: {TD}\nlisten: 127.0.0.1:0\nmetrics_listen: 127.0.0.1:0\n\
             server: {{ip_addresses: [\"127.0.0.1\"]}}\ndata_dir: {}\n\
             ca: {{chain: {}, bundle: {}, signer: {{file: {{key: {}}}}}}}\n\
             kubernetes:\n  namespace: {SYSTEM}\n",
            data.path().display(),
            layout.chain().display(),
            layout.bundle().display(),
            layout.issuing_key().display(),
        );
        let config = Config::from_yaml(&yaml, "test", &MapEnv::default()).expect("config");
        let store = Arc::new(EmbeddedStore::open(&config.store_path()).expect("store"));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let client = kube_client(&double).await;
        let running = app::serve_with(&config, listener, store, Some(client), async {
            let _ = stopped.await;
        })
        .await
        .expect("control plane starts");
        Self {
            double,
            ca,
            running,
            stop: Some(stop),
            _data: data,
        }
    }

    fn channel(&self, certs: Option<Arc<CertSlot>>) -> Channel {
        let bundle = SharedBundle::new(self.ca.ca.bundle().clone());
        let td = self.ca.ca.bundle().trust_domain().clone();
        let verifier =
            SpiffeServerVerifier::new(bundle, ExpectedServer::Exact(SpiffeId::control_plane(&td)));
        let tls = Arc::new(tls::client_config(certs, verifier, &[b"h2"]));
        ferrule_proto::channel::lazy(self.running.grpc_addr, tls)
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        let slot =
            CertSlot::from_pem_files(&self.ca.layout.admin_cert(), &self.ca.layout.admin_key())
                .expect("admin identity");
        AdminClient::new(self.channel(Some(Arc::new(slot))))
    }

    /// A projected token of the agent pod on `node`, as the kubelet mounts it.
    pub fn agent_token(&self, node: &str) -> String {
        self.token(AGENT_SA, &["ferrule"], Some(&agent_pod(node)))
    }

    /// A token of service account `sa` in `ferrule-system` for `audiences`, bound to `pod`.
    pub fn token(&self, sa: &str, audiences: &[&str], pod: Option<&str>) -> String {
        let uid = pod.map(|name| {
            let found: Pod = self.double.get(SYSTEM, name).expect("the bound pod exists");
            (name, found.metadata.uid.expect("uid"))
        });
        self.double
            .issue_token(
                SYSTEM,
                sa,
                audiences,
                uid.as_ref().map(|(name, uid)| (*name, uid.as_str())),
                Duration::from_secs(600),
            )
            .expect("token issued")
            .token
    }

    /// `Node.Join` with `request`'s credentials and a fresh key.
    pub async fn join(&self, request: v1::JoinRequest) -> Result<JoinedNode, tonic::Status> {
        let key = generate_workload_key().unwrap();
        let placeholder = SpiffeId::parse(&format!("spiffe://{TD}/node/joining")).unwrap();
        let request = v1::JoinRequest {
            csr: build_csr(&key, &placeholder).unwrap(),
            ..request
        };
        let response = NodeClient::new(self.channel(None))
            .join(request)
            .await?
            .into_inner();
        let svid = response.svid.expect("an SVID");
        let chain = std::iter::once(svid.leaf)
            .chain(svid.chain)
            .map(CertificateDer::from)
            .collect();
        let certified =
            CertSlot::certified_key(&tls::crypto_provider(), chain, key.serialize_der()).unwrap();
        Ok(JoinedNode {
            spiffe_id: response.spiffe_id,
            certs: Arc::new(CertSlot::new(certified)),
        })
    }

    /// Joins as the agent on `node` with its service account token.
    pub async fn join_node(&self, node: &str) -> JoinedNode {
        let joined = self
            .join(v1::JoinRequest {
                service_account_token: self.agent_token(node),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("the agent on {node} joins: {e:?}"));
        assert_eq!(joined.spiffe_id, format!("spiffe://{TD}/node/{node}"));
        joined
    }

    pub async fn sign(
        &self,
        node: &JoinedNode,
        id: &str,
    ) -> Result<v1::SignResponse, tonic::Status> {
        let key = generate_workload_key().unwrap();
        let csr = build_csr(&key, &SpiffeId::parse(id).unwrap()).unwrap();
        IdentityClient::new(self.channel(Some(node.certs.clone())))
            .sign(v1::SignRequest {
                spiffe_id: id.into(),
                csr,
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn register(
        &self,
        node: &JoinedNode,
        workload: v1::Workload,
    ) -> Result<v1::RegisterWorkloadResponse, tonic::Status> {
        WorkloadsClient::new(self.channel(Some(node.certs.clone())))
            .register(v1::RegisterWorkloadRequest {
                workload: Some(workload),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn unregister(
        &self,
        node: &JoinedNode,
        uid: &str,
    ) -> Result<v1::UnregisterWorkloadResponse, tonic::Status> {
        WorkloadsClient::new(self.channel(Some(node.certs.clone())))
            .unregister(v1::UnregisterWorkloadRequest { uid: uid.into() })
            .await
            .map(|r| r.into_inner())
    }

    /// The workload directory every agent receives (`Config.Watch` serves this), by uid.
    pub fn directory(&self) -> BTreeMap<String, v1::Workload> {
        self.running
            .state
            .config
            .update_since("", 0)
            .upserts
            .into_iter()
            .filter_map(|r| match r.kind {
                Some(v1::resource::Kind::Workload(w)) => Some((w.uid.clone(), w)),
                _ => None,
            })
            .collect()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let addr: SocketAddr = self.running.metrics_addr.expect("metrics listen");
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--fail", "--noproxy", "*", "--max-time", "5"])
            .arg(format!("http://{addr}/metrics"))
            .output()
            .await
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates or replaces `pod` the way the scheduler and kubelet leave it; returns its uid.
    pub fn put_pod(&self, pod: &Pod) -> String {
        self.double.put(pod).unwrap().metadata.uid.unwrap()
    }
}

pub fn agent_pod(node: &str) -> String {
    format!("ferrule-agent-{node}")
}

pub fn namespace(name: &str, mode: Option<&str>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            labels: mode.map(|m| BTreeMap::from([("ferrule.io/mode".into(), m.into())])),
            ..meta(None, name)
        },
        ..Namespace::default()
    }
}

/// A running pod `namespace/name` of service account `sa` on `node` with `ips`.
pub fn pod(namespace: &str, name: &str, sa: &str, node: &str, ips: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), name.into())])),
            ..meta(Some(namespace), name)
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            service_account_name: Some(sa.into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            pod_ip: ips.first().map(|ip| ip.to_string()),
            ..PodStatus::default()
        }),
    }
}

/// Polls `check` until it gives `Some` (10 s), else fails saying what was awaited.
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after 10 s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
