//! RBAC: one SelfSubjectAccessReview per verb and resource of the installer's rules for the
//! component (`install::rbac`), so the check and the ClusterRole it checks for cannot drift.
//! It asks about the kubeconfig's own user: run it with the component's credentials.

use ferrule_config::check::Check;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use super::{Component, error_text};
use crate::install::rbac::{AGENT_RULES, CONTROL_PLANE_RULES, Rule};

pub const NAME: &str = "kubernetes-rbac";

/// One permission: `verb` on `resource` (maybe `resource/subresource`) in API group `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Permission {
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As `kubectl auth can-i` takes it: VERB RESOURCE[.GROUP][/SUBRESOURCE].
        let (resource, subresource) = match self.resource.split_once('/') {
            Some((resource, sub)) => (resource, format!("/{sub}")),
            None => (self.resource, String::new()),
        };
        let group = match self.group {
            "" => String::new(),
            group => format!(".{group}"),
        };
        write!(f, "{} {resource}{group}{subresource}", self.verb)
    }
}

fn permissions(rules: &[Rule]) -> Vec<Permission> {
    rules
        .iter()
        .flat_map(|rule| {
            rule.resources.iter().flat_map(move |&resource| {
                rule.verbs.iter().map(move |&verb| Permission {
                    group: rule.group,
                    resource,
                    verb,
                })
            })
        })
        .collect()
}

pub async fn check(client: &Client, component: Component) -> Check {
    let (who, rules) = match component {
        Component::Agent => ("ferrule-agent", AGENT_RULES),
        Component::ControlPlane => ("ferrule-control-plane", CONTROL_PLANE_RULES),
    };
    let wanted = permissions(rules);
    let mut denied = Vec::new();
    for permission in &wanted {
        match allowed(client, permission).await {
            Ok(true) => {}
            Ok(false) => denied.push(permission.to_string()),
            Err(e) => {
                return Check::warn(
                    NAME,
                    format!("could not review {permission}: {}", error_text(&e)),
                    "every authenticated user may create SelfSubjectAccessReviews; check the \
                     kubeconfig's credentials",
                );
            }
        }
    }
    let fix = format!(
        "apply the {who} ClusterRole and binding from `ferrule install kubernetes`, and check \
         with the {who} service account's credentials"
    );
    if denied.is_empty() {
        Check::ok(
            NAME,
            format!(
                "this user holds all {} permissions of the {who} ClusterRole",
                wanted.len()
            ),
        )
    } else {
        Check::fail(
            NAME,
            format!("this user may not {} ({who} needs them)", denied.join(", ")),
            fix,
        )
    }
}

/// Asks the API server whether this user may do `permission`, cluster-wide.
async fn allowed(client: &Client, permission: &Permission) -> Result<bool, kube::Error> {
    let (resource, subresource) = match permission.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (permission.resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(permission.group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                verb: Some(permission.verb.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|status| status.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_of_every_resource_is_one_permission() {
        let agent = permissions(AGENT_RULES);
        assert!(
            agent.contains(&Permission {
                group: "",
                resource: "nodes",
                verb: "patch"
            }),
            "{agent:?}"
        );
        let expected: usize = AGENT_RULES
            .iter()
            .map(|r| r.resources.len() * r.verbs.len())
            .sum();
        assert_eq!(agent.len(), expected);
        let names: Vec<String> = permissions(CONTROL_PLANE_RULES)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            names.contains(&"create tokenreviews.authentication.k8s.io".to_owned())
                && names.contains(&"patch authorizationpolicies.ferrule.dev/status".to_owned()),
            "{names:?}"
        );
    }
}
