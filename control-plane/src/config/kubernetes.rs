//! The `kubernetes:` section: present (even empty, or through any `FERRULE_KUBERNETES_*`
//! variable) switches the control plane to Kubernetes mode.

use ferrule_config::{ConfigError, Env};
use serde::{Deserialize, Deserializer};

pub const ENV_KUBERNETES_NAMESPACE: &str = "FERRULE_KUBERNETES_NAMESPACE";
pub const ENV_KUBERNETES_AGENT_SERVICE_ACCOUNT: &str = "FERRULE_KUBERNETES_AGENT_SERVICE_ACCOUNT";
pub const ENV_KUBERNETES_AUDIENCE: &str = "FERRULE_KUBERNETES_AUDIENCE";

const DEFAULT_NAMESPACE: &str = "ferrule-system";
const DEFAULT_AGENT_SERVICE_ACCOUNT: &str = "ferrule-agent";
const DEFAULT_AUDIENCE: &str = "ferrule";

/// Kubernetes mode: nodes attest with projected service account tokens (TokenReview), the
/// workload directory and what each node may sign come from Pod objects, and authorization
/// policies from `AuthorizationPolicy` objects. The API server is found with
/// `kube::Config::infer()` (`KUBECONFIG`, else the in-cluster service account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The control plane's own namespace; `AuthorizationPolicy` objects in it are mesh-wide.
    pub namespace: String,
    /// The only service account (in `namespace`) whose tokens attest nodes.
    pub agent_service_account: String,
    /// The audience the agents' projected tokens are issued for.
    pub audience: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    namespace: Option<String>,
    agent_service_account: Option<String>,
    audience: Option<String>,
}

/// `kubernetes:` with nothing after it is YAML null; it still means "Kubernetes mode, defaults".
pub(super) fn present<'de, D: Deserializer<'de>>(de: D) -> Result<Option<RawKubernetes>, D::Error> {
    Ok(Some(Option::deserialize(de)?.unwrap_or_default()))
}

/// Applies `FERRULE_KUBERNETES_*` overrides; any of them switches Kubernetes mode on.
pub(super) fn apply_env(section: &mut Option<RawKubernetes>, env: &dyn Env) {
    let overrides = [
        ENV_KUBERNETES_NAMESPACE,
        ENV_KUBERNETES_AGENT_SERVICE_ACCOUNT,
        ENV_KUBERNETES_AUDIENCE,
    ]
    .map(|name| env.get(name));
    if overrides.iter().all(Option::is_none) {
        return;
    }
    let raw = section.get_or_insert_with(RawKubernetes::default);
    let [namespace, agent_service_account, audience] = overrides;
    for (slot, value) in [
        (&mut raw.namespace, namespace),
        (&mut raw.agent_service_account, agent_service_account),
        (&mut raw.audience, audience),
    ] {
        if value.is_some() {
            *slot = value;
        }
    }
}

impl RawKubernetes {
    pub(super) fn validate(self) -> Result<KubernetesConfig, ConfigError> {
        let namespace = self.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        if !dns_label(&namespace) {
            return Err(ConfigError::invalid(
                "kubernetes.namespace",
                format!(
                    "{namespace:?} is not a namespace name (RFC 1123 label: 1-63 of a-z, 0-9, '-')"
                ),
            ));
        }
        let agent_service_account = self
            .agent_service_account
            .unwrap_or_else(|| DEFAULT_AGENT_SERVICE_ACCOUNT.into());
        if !dns_subdomain(&agent_service_account) {
            return Err(ConfigError::invalid(
                "kubernetes.agent_service_account",
                format!(
                    "{agent_service_account:?} is not a service account name (RFC 1123 subdomain)"
                ),
            ));
        }
        let audience = self.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.into());
        if audience.is_empty() || audience.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "kubernetes.audience",
                format!("{audience:?}: an audience is one non-empty word without spaces"),
            ));
        }
        Ok(KubernetesConfig {
            namespace,
            agent_service_account,
            audience,
        })
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, 1-63 long.
pub fn dns_label(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.len() <= 63
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 long.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

#[cfg(test)]
mod tests {
    use ferrule_config::MapEnv;

    use super::*;
    use crate::config::Config;

    const BASE: &str = "
trust_domain: example.org
listen: 127.0.0.1:8443
data_dir: /var/lib/ferrule
ca: {chain: /ca/chain.pem, bundle: /ca/bundle.pem, signer: {file: {key: /ca/k}}}
";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Option<KubernetesConfig>, ConfigError> {
        let text = format!("{BASE}{extra}");
        Config::from_yaml(&text, "cp.yaml", &MapEnv::from_pairs(env)).map(|c| c.kubernetes)
    }

    fn defaults() -> KubernetesConfig {
        KubernetesConfig {
            namespace: "ferrule-system".into(),
            agent_service_account: "ferrule-agent".into(),
            audience: "ferrule".into(),
        }
    }

    #[test]
    fn the_section_switches_kubernetes_mode_on_with_defaults() {
        assert_eq!(load("", &[]).unwrap(), None, "standalone by default");
        assert_eq!(load("kubernetes:\n", &[]).unwrap(), Some(defaults()));
        assert_eq!(load("kubernetes: {}\n", &[]).unwrap(), Some(defaults()));
        let custom = load(
            "kubernetes:\n  namespace: mesh\n  agent_service_account: node-agent\n  audience: mesh.example\n",
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(custom.namespace, "mesh");
        assert_eq!(custom.agent_service_account, "node-agent");
        assert_eq!(custom.audience, "mesh.example");
    }

    #[test]
    fn environment_overrides_fill_and_switch_on_the_section() {
        let from_env = load("", &[(ENV_KUBERNETES_AUDIENCE, "other")]).unwrap();
        assert_eq!(
            from_env,
            Some(KubernetesConfig {
                audience: "other".into(),
                ..defaults()
            })
        );
        let over = load(
            "kubernetes: {namespace: mesh}\n",
            &[(ENV_KUBERNETES_NAMESPACE, "ferrule")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(over.namespace, "ferrule");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (extra, env, field) in [
            (
                "kubernetes: {namespace: Bad_NS}\n",
                None,
                "kubernetes.namespace",
            ),
            (
                "",
                Some((ENV_KUBERNETES_NAMESPACE, "-x")),
                "kubernetes.namespace",
            ),
            (
                "kubernetes: {agent_service_account: \"a b\"}\n",
                None,
                "kubernetes.agent_service_account",
            ),
            (
                "kubernetes: {audience: \"\"}\n",
                None,
                "kubernetes.audience",
            ),
            ("kubernetes: {audiences: [x]}\n", None, "kubernetes"),
            ("kubernetes: 3\n", None, "kubernetes"),
        ] {
            let env: Vec<(&str, &str)> = env.into_iter().collect();
            let err = load(extra, &env).unwrap_err().to_string();
            assert!(
                err.contains(field),
                "{extra:?}: expected {field}, got: {err}"
            );
        }
    }
}
