//! `CNI_ARGS`: `K=V` pairs separated by `;`, where Kubernetes runtimes put the pod's identity.

/// The pod a sandbox belongs to, from the `K8S_POD_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodArgs {
    pub namespace: String,
    pub name: String,
    /// containerd and CRI-O send it; empty when the runtime did not.
    pub uid: String,
    pub infra_container_id: Option<String>,
}

impl PodArgs {
    /// `namespace/name`, as messages name the pod.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("CNI_ARGS: {0:?} is not a KEY=VALUE pair")]
    NotAPair(String),
}

/// The pod named in `cni_args`, or `None` when the sandbox is not a Kubernetes pod (no
/// `K8S_POD_NAMESPACE` or `K8S_POD_NAME`). Unknown keys (`IgnoreUnknown`, runtime extras) are
/// ignored; a segment without `=` is an error, as in libcni.
pub fn parse(cni_args: &str) -> Result<Option<PodArgs>, Error> {
    let (mut namespace, mut name, mut uid, mut infra) = (None, None, None, None);
    for pair in cni_args.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::NotAPair(pair.to_owned()))?;
        let slot = match key {
            "K8S_POD_NAMESPACE" => &mut namespace,
            "K8S_POD_NAME" => &mut name,
            "K8S_POD_UID" => &mut uid,
            "K8S_POD_INFRA_CONTAINER_ID" => &mut infra,
            _ => continue,
        };
        *slot = Some(value.to_owned()).filter(|v| !v.is_empty());
    }
    Ok(match (namespace, name) {
        (Some(namespace), Some(name)) => Some(PodArgs {
            namespace,
            name,
            uid: uid.unwrap_or_default(),
            infra_container_id: infra,
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kubernetes_keys_and_ignores_others() {
        let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;\
                    K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=0d2c-11;FOO=bar=baz";
        let pod = parse(args).unwrap().expect("a pod");
        assert_eq!(
            pod,
            PodArgs {
                namespace: "shop".into(),
                name: "web-1".into(),
                uid: "0d2c-11".into(),
                infra_container_id: Some("abc123".into()),
            }
        );
        assert_eq!(pod.display_name(), "shop/web-1");
    }

    #[test]
    fn no_pod_without_namespace_and_name() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("K8S_POD_NAME=web-1").unwrap(), None);
        assert_eq!(
            parse("K8S_POD_NAMESPACE=;K8S_POD_NAME=web-1").unwrap(),
            None
        );
    }

    #[test]
    fn uid_is_optional() {
        let pod = parse("K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;")
            .unwrap()
            .unwrap();
        assert_eq!(pod.uid, "");
        assert_eq!(pod.infra_container_id, None);
    }

    #[test]
    fn a_segment_without_equals_is_an_error() {
        assert_eq!(
            parse("K8S_POD_NAMESPACE=a;garbage"),
            Err(Error::NotAPair("garbage".into()))
        );
    }
}
