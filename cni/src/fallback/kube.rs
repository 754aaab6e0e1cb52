//! [`PodFactsSource`] backed by the Kubernetes API: the Pod and its Namespace, read with the
//! plugin's kubeconfig.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::{MODE_KEY, PodFacts, PodFactsSource};
use crate::netconf::PluginConf;

/// Reads the pod and its namespace from the API server named in the plugin's kubeconfig.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubeApi;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig in the plugin config and none found: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

impl PodFactsSource for KubeApi {
    type Error = Error;

    async fn facts(
        &self,
        conf: &PluginConf,
        namespace: &str,
        name: &str,
    ) -> Result<PodFacts, Error> {
        let timeout = conf.timeout();
        let lookup = async {
            let client = client(conf, timeout).await?;
            let pod = Api::<Pod>::namespaced(client.clone(), namespace)
                .get(name)
                .await?;
            let ns = Api::<Namespace>::all(client).get(namespace).await?;
            Ok(PodFacts {
                host_network: pod.spec.and_then(|s| s.host_network).unwrap_or(false),
                pod_annotation: pod
                    .metadata
                    .annotations
                    .and_then(|mut a| a.remove(MODE_KEY)),
                namespace_label: ns.metadata.labels.and_then(|mut l| l.remove(MODE_KEY)),
            })
        };
        tokio::time::timeout(timeout, lookup)
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }
}

async fn client(conf: &PluginConf, timeout: Duration) -> Result<Client, Error> {
    let mut config = match &conf.kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => Config::infer().await?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Ok(Client::try_from(config)?)
}
