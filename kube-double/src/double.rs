//! `KubeDouble`: the shared state, serving, kubeconfigs, tokens and the knobs tests turn
//! (deny rules, compaction, the clock). Typed object helpers are in `direct.rs`.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::auth::{Auth, DenyRule};
use crate::registry::{Gvr, ResourceInfo};
use crate::store::Store;
use crate::tokens::{IssuedToken, Review, TokenError, TokenSpec};
use crate::{kubeconfig, server};

/// Tunables; `Config::default()` is what `KubeDouble::new()` uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// How many events the history keeps; older resource versions expire (410).
    pub history_limit: usize,
    /// Namespaces that exist from the start, as in a fresh cluster.
    pub namespaces: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            namespaces: vec!["default".to_owned(), "kube-system".to_owned()],
        }
    }
}

pub(crate) struct State {
    pub store: Store,
    pub auth: Auth,
}

pub(crate) struct Inner {
    state: Mutex<State>,
    pub config: Config,
    requests: Mutex<BTreeMap<(String, String), u64>>,
    addresses: Mutex<Vec<SocketAddr>>,
    /// Bumped by `shutdown`: whatever was serving before stops.
    pub shutdown: watch::Sender<u64>,
}

/// Resolves once `KubeDouble::shutdown` moved past generation `started`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<u64>, started: u64) {
    let _ = shutdown.wait_for(|generation| *generation != started).await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn count(&self, verb: &str, resource: &str) {
        *lock(&self.requests)
            .entry((verb.to_owned(), resource.to_owned()))
            .or_default() += 1;
    }
}

/// An in-process Kubernetes API server double. Clones share the same cluster.
#[derive(Clone)]
pub struct KubeDouble {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for KubeDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDouble")
            .field("addresses", &*lock(&self.inner.addresses))
            .field("resource_version", &self.resource_version())
            .finish_non_exhaustive()
    }
}

impl Default for KubeDouble {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeDouble {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        let mut store = Store::new(config.history_limit);
        for namespace in &config.namespaces {
            let namespace = serde_json::json!({"metadata": {"name": namespace}});
            store
                .put(&Gvr::new("", "v1", "namespaces"), namespace)
                .unwrap_or_else(|e| panic!("Config::namespaces: {e}"));
        }
        let inner = Inner {
            state: Mutex::new(State {
                store,
                auth: Auth::new(),
            }),
            config,
            requests: Mutex::new(BTreeMap::new()),
            addresses: Mutex::new(Vec::new()),
            shutdown: watch::channel(0).0,
        };
        KubeDouble {
            inner: Arc::new(inner),
        }
    }

    /// Serves the API (plain HTTP/1.1) on an already-bound listener, in a task on the current
    /// tokio runtime, until `shutdown`. Returns the listener's address. May be called again
    /// after `shutdown` (an API server restart: same state, new connections).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn serve(&self, listener: TcpListener) -> io::Result<SocketAddr> {
        let address = server::spawn(self.inner.clone(), listener)?;
        lock(&self.inner.addresses).push(address);
        Ok(address)
    }

    /// Binds 127.0.0.1:0 and serves there.
    pub fn start_local(&self) -> io::Result<SocketAddr> {
        self.serve(TcpListener::bind("127.0.0.1:0")?)
    }

    /// Stops every listener served so far and ends their connections and watches; the state
    /// stays, and `serve` may start again.
    pub fn shutdown(&self) {
        self.inner
            .shutdown
            .send_modify(|generation| *generation += 1);
        lock(&self.inner.addresses).clear();
    }

    /// `http://addr` of the first listener served, if any.
    pub fn url(&self) -> Option<String> {
        lock(&self.inner.addresses)
            .first()
            .map(|a| format!("http://{a}"))
    }

    /// A kubeconfig for the first listener served that authenticates with `token`.
    ///
    /// # Panics
    /// Before `serve` or `start_local`.
    pub fn kubeconfig(&self, token: &str) -> String {
        let url = self
            .url()
            .expect("KubeDouble::kubeconfig needs a server: call serve or start_local first");
        kubeconfig::render(&url, token)
    }

    /// Writes `kubeconfig(token)` to `path` (mode 0600).
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> io::Result<()> {
        kubeconfig::write(path, &self.kubeconfig(token))
    }

    /// A token that may do anything (and is never denied).
    pub fn admin_token(&self) -> String {
        self.inner.state().auth.admin_token().to_owned()
    }

    /// Issues a ServiceAccount token as TokenRequest does, without its minimum lifetime: the
    /// service account (and the pod, when bound by `(name, uid)`) must exist. Empty `audiences`
    /// means the API server's.
    pub fn issue_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: &[&str],
        pod: Option<(&str, &str)>,
        ttl: Duration,
    ) -> Result<IssuedToken, TokenError> {
        let spec = TokenSpec {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            ttl,
            pod: pod.map(|(name, uid)| (name.to_owned(), Some(uid.to_owned()))),
        };
        let state = &mut *self.inner.state();
        state
            .auth
            .tokens
            .issue(&state.store, namespace, service_account, &spec)
    }

    /// What TokenReview would answer for `token` and `audiences` right now.
    pub fn review_token(&self, token: &str, audiences: &[&str]) -> Review {
        let audiences: Vec<String> = audiences.iter().map(|a| (*a).to_owned()).collect();
        let state = self.inner.state();
        state.auth.review(&state.store, token, &audiences)
    }

    /// Forbids `verb` on `resource` (`pods`, `pods/status`, `serviceaccounts/token`) for
    /// `user` (e.g. `system:serviceaccount:ferrule-system:ferrule-agent`); `*` matches any.
    /// The admin is never denied.
    pub fn deny(&self, user: &str, verb: &str, resource: &str) {
        self.inner.state().auth.deny(DenyRule {
            user: user.to_owned(),
            verb: verb.to_owned(),
            resource: resource.to_owned(),
        });
    }

    pub fn clear_denies(&self) {
        self.inner.state().auth.clear_denies();
    }

    /// Expires every resourceVersion handed out so far: open watches get an ERROR event with
    /// 410 Expired, and so do watches and continue tokens that name one later.
    pub fn compact(&self) {
        self.inner.state().store.compact();
    }

    /// Moves the double's clock (token expiry, timestamps) forward.
    pub fn advance_clock(&self, by: Duration) {
        self.inner.state().store.clock.advance(by);
    }

    /// Serves another resource (a CustomResourceDefinition object does this too).
    pub fn register(&self, info: ResourceInfo) {
        self.inner.state().store.register(info);
    }

    /// Stops serving a resource and deletes its objects, like deleting its CRD.
    pub fn unregister(&self, gvr: &Gvr) {
        self.inner.state().store.unregister(gvr);
    }

    /// The current resourceVersion (the global counter).
    pub fn resource_version(&self) -> u64 {
        self.inner.state().store.rv()
    }

    /// How many requests had `verb` (get, list, watch, create, update, patch, delete,
    /// deletecollection) on `resource` (`pods`, `pods/status`, `tokenreviews`).
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        lock(&self.inner.requests)
            .get(&(verb.to_owned(), resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}
