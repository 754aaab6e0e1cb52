//! ServiceAccount tokens: TokenRequest issues them (random, unguessable, optionally bound to a
//! pod), TokenReview and bearer authentication check them against the store as they are now (the
//! service account and the bound pod must still exist with the same uid).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::auth::User;
use crate::meta::{new_token, new_uid};
use crate::registry::Gvr;
use crate::status::{Reason, Status};
use crate::store::{Store, StoreError};

/// The audience a token gets when the request names none, and the one bearer tokens need.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc";
/// The shortest `expirationSeconds` the API server accepts.
pub const MIN_EXPIRATION: Duration = Duration::from_secs(600);

pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(Box<StoreError>),
    #[error(
        "the UID in the bound object reference ({given}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
    )]
    PodUid { given: String, actual: String },
    #[error("TokenRequest is invalid: {0}")]
    Invalid(String),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(Box::new(e))
    }
}

impl TokenError {
    pub fn status(&self) -> Status {
        match self {
            TokenError::Store(e) => e.status(),
            TokenError::PodUid { .. } => Status::new(Reason::Conflict, self.to_string()),
            TokenError::Invalid(_) => Status::new(Reason::Invalid, self.to_string()),
        }
    }
}

/// What a token is asked for: audiences (empty: the API server's), lifetime, bound pod.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub audiences: Vec<String>,
    pub ttl: Duration,
    /// `(name, uid)`; without a uid, the pod's current one is bound.
    pub pod: Option<(String, Option<String>)>,
}

/// A token handed out, with when it stops working and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires: SystemTime,
    pub audiences: Vec<String>,
}

#[derive(Clone, Debug)]
struct BoundPod {
    name: String,
    uid: String,
    node: Option<(String, Option<String>)>,
}

#[derive(Clone, Debug)]
struct Record {
    namespace: String,
    service_account: String,
    service_account_uid: String,
    audiences: Vec<String>,
    pod: Option<BoundPod>,
    expires: SystemTime,
    id: String,
}

/// TokenReview's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Review {
    Authenticated { user: User, audiences: Vec<String> },
    Rejected(String),
}

#[derive(Debug, Default)]
pub(crate) struct Tokens {
    records: HashMap<String, Record>,
}

fn uid_of(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn pods() -> Gvr {
    Gvr::new("", "v1", "pods")
}

impl Tokens {
    pub fn issue(
        &mut self,
        store: &Store,
        namespace: &str,
        service_account: &str,
        spec: &TokenSpec,
    ) -> Result<IssuedToken, TokenError> {
        let account = store.get(
            &Gvr::new("", "v1", "serviceaccounts"),
            namespace,
            service_account,
        )?;
        let service_account_uid = uid_of(account);
        let pod = match &spec.pod {
            None => None,
            Some((name, uid)) => {
                let pod = store.get(&pods(), namespace, name)?;
                let actual = uid_of(pod);
                if let Some(given) = uid.as_ref().filter(|given| **given != actual) {
                    return Err(TokenError::PodUid {
                        given: given.clone(),
                        actual,
                    });
                }
                let node = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(|node| {
                        let node_uid = store
                            .get(&Gvr::new("", "v1", "nodes"), "", node)
                            .ok()
                            .map(uid_of);
                        (node.to_owned(), node_uid)
                    });
                Some(BoundPod {
                    name: name.clone(),
                    uid: actual,
                    node,
                })
            }
        };
        let audiences = if spec.audiences.is_empty() {
            vec![API_AUDIENCE.to_owned()]
        } else {
            spec.audiences.clone()
        };
        let expires = store.clock.now() + spec.ttl;
        let token = new_token();
        self.records.insert(
            token.clone(),
            Record {
                namespace: namespace.to_owned(),
                service_account: service_account.to_owned(),
                service_account_uid,
                audiences: audiences.clone(),
                pod,
                expires,
                id: new_uid(),
            },
        );
        Ok(IssuedToken {
            token,
            expires,
            audiences,
        })
    }

    /// Checks a token for `audiences` (empty: the API server's).
    pub fn review(&self, store: &Store, token: &str, audiences: &[String]) -> Review {
        let Some(record) = self.records.get(token) else {
            return Review::Rejected("invalid bearer token".to_owned());
        };
        if store.clock.now() >= record.expires {
            return Review::Rejected("service account token has expired".to_owned());
        }
        let wanted: Vec<String> = if audiences.is_empty() {
            vec![API_AUDIENCE.to_owned()]
        } else {
            audiences.to_vec()
        };
        let shared: Vec<String> = wanted
            .iter()
            .filter(|a| record.audiences.contains(a))
            .cloned()
            .collect();
        if shared.is_empty() {
            return Review::Rejected(format!(
                "token audiences {:?} is invalid for the target audiences {:?}",
                record.audiences, wanted
            ));
        }
        let account = store.get(
            &Gvr::new("", "v1", "serviceaccounts"),
            &record.namespace,
            &record.service_account,
        );
        if account.map(uid_of).ok().as_deref() != Some(record.service_account_uid.as_str()) {
            return Review::Rejected(format!(
                "service account {}/{} has been deleted",
                record.namespace, record.service_account
            ));
        }
        let mut extra = BTreeMap::new();
        if let Some(pod) = &record.pod {
            let current = store
                .get(&pods(), &record.namespace, &pod.name)
                .map(uid_of)
                .ok();
            if current.as_deref() != Some(pod.uid.as_str()) {
                return Review::Rejected(format!(
                    "pod {}/{} has been deleted",
                    record.namespace, pod.name
                ));
            }
            extra.insert(EXTRA_POD_NAME.to_owned(), vec![pod.name.clone()]);
            extra.insert(EXTRA_POD_UID.to_owned(), vec![pod.uid.clone()]);
            if let Some((node, node_uid)) = &pod.node {
                extra.insert(EXTRA_NODE_NAME.to_owned(), vec![node.clone()]);
                if let Some(node_uid) = node_uid {
                    extra.insert(EXTRA_NODE_UID.to_owned(), vec![node_uid.clone()]);
                }
            }
        }
        extra.insert(
            EXTRA_CREDENTIAL_ID.to_owned(),
            vec![format!("JTI={}", record.id)],
        );
        let user = User {
            username: format!(
                "system:serviceaccount:{}:{}",
                record.namespace, record.service_account
            ),
            uid: record.service_account_uid.clone(),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", record.namespace),
                "system:authenticated".to_owned(),
            ],
            extra,
        };
        Review::Authenticated {
            user,
            audiences: shared,
        }
    }
}
