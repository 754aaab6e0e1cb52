//! A TokenReview's answer, read: who the token belongs to and what it is bound to.

use k8s_openapi::api::authentication::v1::TokenReviewStatus;

use super::AttestError;
use crate::config::KubernetesConfig;

const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// The pod a projected token was issued for (in the agent's namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPod {
    pub name: String,
    pub uid: Option<String>,
}

/// What an authenticated agent token is bound to; at least one of the two is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub pod: Option<BoundPod>,
    pub node: Option<String>,
}

/// Checks the review's answer: authenticated, for our audience, as the agent's service account,
/// bound to a pod or a node.
pub fn check(
    status: &TokenReviewStatus,
    config: &KubernetesConfig,
) -> Result<Binding, AttestError> {
    if status.authenticated != Some(true) {
        let reason = status
            .error
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "no reason given".into());
        return Err(AttestError::NotAuthenticated(reason));
    }
    if let Some(audiences) = &status.audiences
        && !audiences.contains(&config.audience)
    {
        return Err(AttestError::WrongAudience {
            expected: config.audience.clone(),
            got: audiences.clone(),
        });
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let expected = format!(
        "system:serviceaccount:{}:{}",
        config.namespace, config.agent_service_account
    );
    if username != expected {
        return Err(AttestError::WrongServiceAccount {
            user: username,
            expected,
        });
    }
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| {
        extra
            .get(key)
            .and_then(|values| values.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let binding = Binding {
        pod: first(POD_NAME).map(|name| BoundPod {
            name,
            uid: first(POD_UID),
        }),
        node: first(NODE_NAME),
    };
    if binding.pod.is_none() && binding.node.is_none() {
        return Err(AttestError::Unbound);
    }
    Ok(binding)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn config() -> KubernetesConfig {
        KubernetesConfig {
            namespace: "ferrule-system".into(),
            agent_service_account: "ferrule-agent".into(),
            audience: "ferrule".into(),
        }
    }

    fn status(user: &str, extra: &[(&str, &str)]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["ferrule".into()]),
            user: Some(UserInfo {
                username: Some(user.into()),
                extra: Some(
                    extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..UserInfo::default()
            }),
            error: None,
        }
    }

    const AGENT: &str = "system:serviceaccount:ferrule-system:ferrule-agent";

    #[test]
    fn the_node_comes_from_the_node_name_extra_and_the_pod_is_kept_for_checking() {
        let binding = check(
            &status(
                AGENT,
                &[(POD_NAME, "agent-x"), (POD_UID, "u-1"), (NODE_NAME, "n1")],
            ),
            &config(),
        )
        .unwrap();
        assert_eq!(
            binding,
            Binding {
                pod: Some(BoundPod {
                    name: "agent-x".into(),
                    uid: Some("u-1".into())
                }),
                node: Some("n1".into()),
            }
        );
        let pod_only = check(&status(AGENT, &[(POD_NAME, "agent-x")]), &config()).unwrap();
        assert_eq!(pod_only.node, None);
        assert_eq!(pod_only.pod.unwrap().uid, None);
    }

    #[test]
    fn unauthenticated_foreign_and_unbound_tokens_are_refused() {
        let mut refused = status(AGENT, &[(NODE_NAME, "n1")]);
        refused.authenticated = Some(false);
        refused.error = Some("token has expired".into());
        let e = check(&refused, &config()).unwrap_err();
        assert!(e.to_string().contains("token has expired"), "{e}");

        let mut other_audience = status(AGENT, &[(NODE_NAME, "n1")]);
        other_audience.audiences = Some(vec!["vault".into()]);
        assert!(matches!(
            check(&other_audience, &config()),
            Err(AttestError::WrongAudience { .. })
        ));

        for user in [
            "system:serviceaccount:ferrule-system:default",
            "system:serviceaccount:shop:ferrule-agent",
            "system:node:n1",
            "",
        ] {
            let e = check(&status(user, &[(NODE_NAME, "n1")]), &config()).unwrap_err();
            assert!(
                matches!(e, AttestError::WrongServiceAccount { .. }),
                "{user:?}: {e}"
            );
        }

        let legacy = status(AGENT, &[]);
        assert!(matches!(
            check(&legacy, &config()),
            Err(AttestError::Unbound)
        ));
    }
}
