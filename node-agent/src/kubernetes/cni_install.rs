//! Keeps `ferrule-cni` in the node's primary CNI configuration (the installer's watch re-adds
//! it when another plugin rewrites the file) and gives the plugin API access for deciding
//! pods while the agent is down. Readiness follows whether the chain holds our entry. The watch
//! stops for good when the node is being uninstalled, so it cannot put the plugin back.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use ferrule_cni::install::{self, ApiAccess, InstallConfig};
use kube::config::Config as KubeConfig;
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use super::KubernetesPods;
use crate::config::CniSettings;

/// How often the API token is re-read (the kubelet rotates projected tokens) and the chain
/// checked for readiness.
const REFRESH: Duration = Duration::from_secs(1);
const TOKEN_REFRESH_TICKS: u32 = 60;

/// Returns the installer's watch task, which ends once `uninstalling` completes.
pub fn spawn(
    pods: Weak<KubernetesPods>,
    settings: CniSettings,
    kube: KubeConfig,
    uninstalling: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let mut config = InstallConfig::new(&settings.plugin, &settings.bin_dir, &settings.conf_dir);
    config.host_conf_dir = settings.host_conf_dir.clone();
    config.agent_socket = settings.socket.clone();
    config.api = api_access(&kube);
    if config.api.is_none() {
        tracing::warn!(
            "no API token for the CNI plugin: while the agent is down it refuses every pod it cannot decide"
        );
    }
    let (updates, current) = tokio::sync::watch::channel(config);
    let installer = tokio::spawn(async move {
        install::watch(current, uninstalling).await;
        tracing::info!("CNI installer stopped: Ferrule is being uninstalled from this node");
    });
    tokio::spawn(async move {
        let mut tick = 0u32;
        loop {
            let Some(p) = pods.upgrade() else { return };
            let installed = install::is_installed(&settings.conf_dir);
            p.set_cni_installed(installed);
            tick += 1;
            if tick.is_multiple_of(TOKEN_REFRESH_TICKS) {
                let api = api_access(&kube);
                updates.send_if_modified(|c| std::mem::replace(&mut c.api, api.clone()) != api);
            }
            drop(p);
            tokio::time::sleep(REFRESH).await;
        }
    });
    installer
}

/// The agent's own API credentials, for the plugin's kubeconfig.
fn api_access(kube: &KubeConfig) -> Option<ApiAccess> {
    let auth = &kube.auth_info;
    let token = match (&auth.token, &auth.token_file) {
        (Some(token), _) => token.expose_secret().to_owned(),
        (None, Some(file)) => std::fs::read_to_string(file).ok()?.trim().to_owned(),
        (None, None) => return None,
    };
    let ca_pem = kube
        .root_cert
        .iter()
        .flatten()
        .map(|der| ferrule_identity::pem_encode_certs(&[der.clone().into()]))
        .collect::<String>();
    Some(ApiAccess {
        server: kube
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned(),
        ca_pem,
        token,
    })
}
