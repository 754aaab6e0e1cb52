//! Service accounts and least-privilege RBAC: each rule is there for one thing the component
//! does, said in `AGENT_RULES` / `CONTROL_PLANE_RULES` (and printed above the ClusterRoles).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::meta;
use super::values::Values;

/// One RBAC rule and why the component needs it.
pub struct Rule {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

const READ: &[&str] = &["get", "list", "watch"];

pub const AGENT_RULES: &[Rule] = &[
    Rule {
        group: "",
        resources: &["pods"],
        verbs: READ,
        why: "watch the pods of its node (spec.nodeName) to enroll and unenroll them, and list \
              them at start to reconcile pods that were running before it",
    },
    Rule {
        group: "",
        resources: &["namespaces"],
        verbs: READ,
        why: "read the ferrule.io/mode label that opts a namespace in",
    },
    Rule {
        group: "",
        resources: &["nodes"],
        verbs: &["get", "patch"],
        why: "remove the ferrule.io/agent-not-ready taint from its own Node once capture works \
              (RBAC cannot name \"its own\" node: the agent patches only FERRULE_NODE_NAME)",
    },
];

pub const CONTROL_PLANE_RULES: &[Rule] = &[
    Rule {
        group: "authentication.k8s.io",
        resources: &["tokenreviews"],
        verbs: &["create"],
        why: "check the projected service account tokens agents attest with",
    },
    Rule {
        group: "",
        resources: &["pods"],
        verbs: READ,
        why: "build the workload directory (IP -> identity, node) from Pod objects and sign \
              only the service accounts of pods scheduled on the calling node",
    },
    Rule {
        group: "",
        resources: &["namespaces"],
        verbs: READ,
        why: "read each namespace's ferrule.io/mode label",
    },
    Rule {
        group: "",
        resources: &["nodes"],
        verbs: &["get"],
        why: "a node attests only if its Node object exists",
    },
    Rule {
        group: "ferrule.dev",
        resources: &["authorizationpolicies"],
        verbs: &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
        why: "watch the policies; the admin API (`ferrule policy apply/delete`) writes them as \
              objects in Kubernetes mode",
    },
    Rule {
        group: "ferrule.dev",
        resources: &["authorizationpolicies/status"],
        verbs: &["update", "patch"],
        why: "report on each policy whether it was accepted, or the error",
    },
];

/// Why the agent's namespaced Role exists (its only rule, limited to its own DaemonSet).
pub const AGENT_ROLE_WHY: &str = "daemonsets (apps): get, of ferrule-agent only: the preStop \
     hook (`ferrule-agent uninstall --if-removed`) reads it to tell a removal of Ferrule (the \
     DaemonSet is gone or being deleted: uninstall) from an upgrade or restart (leave capture \
     in place)";

pub fn service_account(name: &str, values: &Values) -> ServiceAccount {
    ServiceAccount {
        metadata: meta::namespaced(name, name, values),
        ..ServiceAccount::default()
    }
}

pub fn cluster_role(name: &str, rules: &[Rule], values: &Values) -> ClusterRole {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    ClusterRole {
        metadata: meta::cluster(name, name, values),
        rules: Some(
            rules
                .iter()
                .map(|rule| PolicyRule {
                    api_groups: Some(vec![rule.group.to_owned()]),
                    resources: Some(strings(rule.resources)),
                    verbs: strings(rule.verbs),
                    ..PolicyRule::default()
                })
                .collect(),
        ),
        ..ClusterRole::default()
    }
}

/// Grants the ClusterRole `name` to the service account `name` of the install namespace.
pub fn binding(name: &str, values: &Values) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta::cluster(name, name, values),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(vec![account_subject(name, values)]),
    }
}

/// The agent's Role in the install namespace: `get` on its own DaemonSet, by name.
pub fn agent_role(values: &Values) -> Role {
    Role {
        metadata: meta::namespaced(meta::AGENT, meta::AGENT, values),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["apps".into()]),
            resources: Some(vec!["daemonsets".into()]),
            resource_names: Some(vec![meta::AGENT.into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// Grants the Role `name` to the service account `name`, in the install namespace.
pub fn role_binding(name: &str, values: &Values) -> RoleBinding {
    RoleBinding {
        metadata: meta::namespaced(name, name, values),
        role_ref: role_ref("Role", name),
        subjects: Some(vec![account_subject(name, values)]),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

/// The service account `name` of the install namespace, as a binding's subject.
fn account_subject(name: &str, values: &Values) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(values.namespace.clone()),
        ..Subject::default()
    }
}

/// The comment above a ClusterRole: one line per rule with its reason.
pub fn explain(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|rule| {
            let group = if rule.group.is_empty() {
                "core"
            } else {
                rule.group
            };
            format!(
                "- {} ({group}): {}: {}\n",
                rule.resources.join(", "),
                rule.verbs.join(", "),
                rule.why
            )
        })
        .collect()
}
