//! Who is asking, and may they. Authentication: the admin token or a ServiceAccount token valid
//! for the API server's audience. Authorization: everything is allowed (real RBAC is out of
//! scope) except what a test's deny rules forbid; the admin is never denied.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meta::{new_token, new_uid};
use crate::status::{Reason, Status};
use crate::store::Store;
use crate::tokens::{Review, Tokens};

pub const ADMIN_USER: &str = "kubernetes-admin";

/// An authenticated user, as TokenReview reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a request does, as RBAC and SubjectAccessReview see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Attributes {
    /// `pods` or `pods/status`: the resource string deny rules name.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// Requests by `user` (`*`: any but the admin) with `verb` (`*`: any) on `resource` (`pods`,
/// `pods/status`, `serviceaccounts/token`; `*`: any) are forbidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenyRule {
    pub user: String,
    pub verb: String,
    pub resource: String,
}

impl DenyRule {
    fn matches(&self, user: &str, attributes: &Attributes) -> bool {
        let hit = |rule: &str, actual: &str| rule == "*" || rule == actual;
        hit(&self.user, user)
            && hit(&self.verb, &attributes.verb)
            && hit(&self.resource, &attributes.resource_path())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Unauthorized")]
    Unauthenticated,
    #[error("{}", forbidden_message(.user, .attributes))]
    Forbidden {
        user: String,
        attributes: Box<Attributes>,
    },
}

impl AuthError {
    pub fn status(&self) -> Status {
        match self {
            AuthError::Unauthenticated => Status::new(Reason::Unauthorized, self.to_string()),
            AuthError::Forbidden { attributes, .. } => Status::new(
                Reason::Forbidden,
                self.to_string(),
            )
            .with_details(&attributes.group, &attributes.resource, &attributes.name),
        }
    }
}

fn forbidden_message(user: &str, a: &Attributes) -> String {
    let object = if a.name.is_empty() {
        a.resource_path()
    } else {
        format!("{} {:?}", a.resource_path(), a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    format!(
        "{object} is forbidden: User {user:?} cannot {} resource {:?} in API group {:?} {scope}",
        a.verb,
        a.resource_path(),
        a.group
    )
}

#[derive(Debug)]
pub(crate) struct Auth {
    admin_token: String,
    admin_uid: String,
    pub tokens: Tokens,
    denies: Vec<DenyRule>,
}

impl Auth {
    pub fn new() -> Self {
        Auth {
            admin_token: new_token(),
            admin_uid: new_uid(),
            tokens: Tokens::default(),
            denies: Vec::new(),
        }
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn deny(&mut self, rule: DenyRule) {
        self.denies.push(rule);
    }

    pub fn clear_denies(&mut self) {
        self.denies.clear();
    }

    fn admin(&self) -> User {
        User {
            username: ADMIN_USER.to_owned(),
            uid: self.admin_uid.clone(),
            groups: vec![
                "system:masters".to_owned(),
                "system:authenticated".to_owned(),
            ],
            extra: BTreeMap::new(),
        }
    }

    /// Reviews a token as TokenReview does; the admin token counts for the API audience only.
    pub fn review(&self, store: &Store, token: &str, audiences: &[String]) -> Review {
        if token == self.admin_token {
            let api = crate::tokens::API_AUDIENCE.to_owned();
            if audiences.is_empty() || audiences.contains(&api) {
                return Review::Authenticated {
                    user: self.admin(),
                    audiences: vec![api],
                };
            }
            return Review::Rejected(
                "the admin token is for the API server's audience only".to_owned(),
            );
        }
        self.tokens.review(store, token, audiences)
    }

    /// The user behind an `Authorization` header value.
    pub fn authenticate(
        &self,
        store: &Store,
        authorization: Option<&str>,
    ) -> Result<User, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Unauthenticated)?;
        match self.review(store, token, &[]) {
            Review::Authenticated { user, .. } => Ok(user),
            Review::Rejected(_) => Err(AuthError::Unauthenticated),
        }
    }

    pub fn allowed(&self, user: &str, attributes: &Attributes) -> bool {
        user == ADMIN_USER
            || !self
                .denies
                .iter()
                .any(|rule| rule.matches(user, attributes))
    }

    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Result<(), AuthError> {
        if self.allowed(&user.username, attributes) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                user: user.username.clone(),
                attributes: Box::new(attributes.clone()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_rules_match_exactly_or_by_wildcard_and_spare_the_admin() {
        let mut auth = Auth::new();
        auth.deny(DenyRule {
            user: "alice".into(),
            verb: "list".into(),
            resource: "pods".into(),
        });
        auth.deny(DenyRule {
            user: "*".into(),
            verb: "*".into(),
            resource: "nodes/status".into(),
        });
        let attrs = |verb: &str, resource: &str, sub: &str| Attributes {
            verb: verb.into(),
            resource: resource.into(),
            subresource: sub.into(),
            ..Default::default()
        };
        assert!(!auth.allowed("alice", &attrs("list", "pods", "")));
        assert!(auth.allowed("alice", &attrs("watch", "pods", "")));
        assert!(auth.allowed("alice", &attrs("list", "pods", "status")));
        assert!(!auth.allowed("bob", &attrs("patch", "nodes", "status")));
        assert!(auth.allowed(ADMIN_USER, &attrs("patch", "nodes", "status")));
        let err = auth
            .authorize(
                &User {
                    username: "alice".into(),
                    uid: String::new(),
                    groups: vec![],
                    extra: BTreeMap::new(),
                },
                &Attributes {
                    namespace: "shop".into(),
                    ..attrs("list", "pods", "")
                },
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\""
        );
    }
}
