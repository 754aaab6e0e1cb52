//! The plugin's kubeconfig: the API server, its CA and a bearer token, for the fallback that
//! asks whether a pod must be meshed when the agent is down.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// How the plugin reaches the API server; the caller (the agent) provides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiAccess {
    /// e.g. `https://10.96.0.1:443`, reachable from the host network namespace.
    pub server: String,
    /// PEM bundle of the API server's CA; empty for the system roots (or a plain-HTTP test
    /// server).
    pub ca_pem: String,
    /// A bearer token that may get pods and namespaces.
    pub token: String,
}

impl std::fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiAccess")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The kubeconfig text (YAML; strings are written as JSON strings, which YAML reads alike).
pub fn render(api: &ApiAccess) -> String {
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let ca = match api.ca_pem.is_empty() {
        true => String::new(),
        false => format!(
            "\n    certificate-authority-data: {}",
            quote(&STANDARD.encode(&api.ca_pem))
        ),
    };
    format!(
        "# Written by the ferrule agent for the ferrule-cni plugin; rewritten when it changes.\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: local\n  \
           cluster:\n    \
             server: {server}{ca}\n\
         users:\n\
         - name: ferrule-cni\n  \
           user:\n    \
             token: {token}\n\
         contexts:\n\
         - name: ferrule-cni\n  \
           context:\n    \
             cluster: local\n    \
             user: ferrule-cni\n\
         current-context: ferrule-cni\n",
        server = quote(&api.server),
        token = quote(&api.token),
    )
}

#[cfg(test)]
mod tests {
    use kube::config::Kubeconfig;

    use super::*;

    #[test]
    fn kube_reads_what_we_write() {
        let api = ApiAccess {
            server: "https://10.96.0.1:443".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            token: "eyJhbGciOi.\"quoted\": yes # not a comment".into(),
        };
        let kubeconfig = Kubeconfig::from_yaml(&render(&api)).unwrap();
        assert_eq!(kubeconfig.current_context.as_deref(), Some("ferrule-cni"));
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.96.0.1:443"));
        let ca = STANDARD
            .decode(cluster.certificate_authority_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(ca, api.ca_pem.as_bytes());
        // kube keeps the token in a SecretString; serializing exposes it.
        let user = serde_json::to_value(kubeconfig.auth_infos[0].auth_info.as_ref().unwrap());
        assert_eq!(user.unwrap()["token"], api.token.as_str());
        assert!(!format!("{api:?}").contains("eyJ"), "Debug hides the token");
    }

    #[test]
    fn no_ca_means_no_ca_data() {
        let api = ApiAccess {
            server: "http://127.0.0.1:8080".into(),
            ca_pem: String::new(),
            token: "t".into(),
        };
        let kubeconfig = Kubeconfig::from_yaml(&render(&api)).unwrap();
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(cluster.certificate_authority_data, None);
    }
}
