//! A DENY or AUDIT policy alone puts the workloads it selects under default deny: once any
//! policy selects a workload, whatever no ALLOW rule admits is refused. That is the mesh's rule,
//! but an operator blocking one bad source rarely means to cut off every other one, so `policy
//! apply` says so when no ALLOW policy could cover the same workloads.

use ferrule_policy::{Action, Policy};

/// A warning for each of `applied` that denies or audits where no ALLOW policy of `stored` (the
/// control plane's policies after the apply) applies: none in its namespace nor mesh-wide (for
/// a mesh-wide policy: none mesh-wide). Selectors are not compared, so this never warns about a
/// covered workload but may stay quiet about one an ALLOW policy's selector leaves out.
pub fn uncovered_warnings(applied: &[Policy], stored: &[Policy]) -> Vec<String> {
    applied
        .iter()
        .filter(|p| p.action() != Action::Allow)
        .filter(|p| !covered(p, stored))
        .map(|p| {
            let scope = match p.namespace() {
                Some(ns) => format!("in namespace {ns}"),
                None => "in every namespace".to_owned(),
            };
            format!(
                "policy {} ({}) selects workloads {scope} that no ALLOW policy covers: under \
                 default deny they now refuse every connection no ALLOW rule admits. Add an ALLOW \
                 policy for the sources they should accept; `ferrule explain` shows the verdict.",
                p.key(),
                p.action().as_str()
            )
        })
        .collect()
}

fn covered(policy: &Policy, stored: &[Policy]) -> bool {
    stored.iter().any(|allow| {
        allow.action() == Action::Allow
            && (allow.namespace().is_none() || allow.namespace() == policy.namespace())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(namespace: Option<&str>, name: &str, action: &str) -> Policy {
        let namespace = namespace.map_or(String::new(), |ns| format!("\n  namespace: {ns}"));
        let yaml = format!(
            "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata:\n  name: \
             {name}{namespace}\nspec:\n  action: {action}\n  rules:\n    - from:\n        - \
             namespace: evil\n"
        );
        ferrule_policy::parse_documents(&yaml, "test.yaml")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn a_lone_deny_or_audit_is_named_with_its_scope() {
        let deny = policy(Some("shop"), "block", "DENY");
        let audit = policy(None, "watch", "AUDIT");
        let stored = [deny.clone(), audit.clone()];
        let warnings = uncovered_warnings(&[deny, audit], &stored);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("policy shop/block (DENY) selects workloads in namespace shop")
        );
        assert!(warnings[1].contains("(AUDIT) selects workloads in every namespace"));
    }

    #[test]
    fn an_allow_in_the_namespace_or_mesh_wide_covers_a_deny() {
        let deny = policy(Some("shop"), "block", "DENY");
        for allow in [
            policy(Some("shop"), "ok", "ALLOW"),
            policy(None, "ok", "ALLOW"),
        ] {
            let stored = [deny.clone(), allow.clone()];
            assert!(uncovered_warnings(std::slice::from_ref(&deny), &stored).is_empty());
            assert!(
                uncovered_warnings(&[allow], &stored).is_empty(),
                "ALLOW never warns"
            );
        }
        let elsewhere = policy(Some("web"), "ok", "ALLOW");
        let stored = [deny.clone(), elsewhere];
        assert_eq!(uncovered_warnings(&[deny], &stored).len(), 1);
    }

    #[test]
    fn a_mesh_wide_deny_needs_a_mesh_wide_allow() {
        let deny = policy(None, "block", "DENY");
        let stored = [deny.clone(), policy(Some("shop"), "ok", "ALLOW")];
        assert_eq!(
            uncovered_warnings(std::slice::from_ref(&deny), &stored).len(),
            1
        );
        let stored = [deny.clone(), policy(None, "ok", "ALLOW")];
        assert!(uncovered_warnings(&[deny], &stored).is_empty());
    }
}
