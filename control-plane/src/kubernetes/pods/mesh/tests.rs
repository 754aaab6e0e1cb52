use super::*;
use crate::kubernetes::testing::{annotated, in_phase, labels, pod};

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

#[test]
fn namespace_label_and_pod_annotation_decide_meshing() {
    let web = pod("shop", "web", "web", "n1", &["10.0.0.5"]);
    for (mode, meshed_) in [
        ("strict", true),
        ("permissive", true),
        ("enabled", true),
        ("disabled", false),
        ("STRICT", false),
        ("", false),
    ] {
        assert_eq!(
            meshed(&web, Some(&labels(mode))),
            meshed_,
            "namespace label {mode:?}"
        );
    }
    assert!(!meshed(&web, None), "an unlabelled namespace is not meshed");
    // The annotation overrides the namespace both ways; other values leave it to the namespace.
    assert!(meshed(&annotated(web.clone(), "permissive"), None));
    assert!(!meshed(
        &annotated(web.clone(), "disabled"),
        Some(&labels("strict"))
    ));
    assert!(meshed(
        &annotated(web.clone(), "bogus"),
        Some(&labels("strict"))
    ));
    assert!(!meshed(&annotated(web.clone(), "enabled"), None));
    // Host-network pods never.
    let mut host = annotated(web, "strict");
    host.spec.as_mut().unwrap().host_network = Some(true);
    assert!(!meshed(&host, Some(&labels("strict"))));
}

#[test]
fn a_meshed_running_pod_becomes_its_directory_entry() {
    let mut web = pod("shop", "web", "web", "n1", &["10.0.0.5", "fd00::5"]);
    web.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2025-01-02T03:04:05Z".parse().unwrap(),
    ));
    let w = workload(&web, Some(&labels("strict")), &td()).expect("meshed");
    assert_eq!(
        w,
        v1::Workload {
            uid: "web-uid".into(),
            name: "web".into(),
            namespace: "shop".into(),
            service_account: "web".into(),
            ips: vec!["10.0.0.5".into(), "fd00::5".into()],
            node: "n1".into(),
            spiffe_id: "spiffe://example.org/ns/shop/sa/web".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            registered_at: 1_735_787_045,
        }
    );
}

#[test]
fn pods_without_ips_node_or_future_are_not_in_the_directory() {
    let strict = labels("strict");
    let on = |p: Pod| workload(&p, Some(&strict), &td());
    assert!(
        on(pod("shop", "web", "web", "n1", &[])).is_none(),
        "no IP yet"
    );
    assert!(
        on(pod("shop", "web", "web", "", &["10.0.0.5"])).is_none(),
        "not scheduled"
    );
    for phase in ["Succeeded", "Failed"] {
        let done = in_phase(pod("shop", "web", "web", "n1", &["10.0.0.5"]), phase);
        assert!(on(done).is_none(), "{phase}");
    }
    let pending = in_phase(pod("shop", "web", "web", "n1", &["10.0.0.5"]), "Pending");
    assert!(
        on(pending).is_some(),
        "a pending pod with an IP is starting"
    );
    assert!(workload(&pod("shop", "web", "web", "n1", &["10.0.0.5"]), None, &td()).is_none());
}

#[test]
fn pod_ip_is_used_when_pod_ips_is_absent_and_sa_defaults() {
    let mut web = pod("shop", "web", "", "n1", &[]);
    web.status.as_mut().unwrap().pod_ip = Some("10.0.0.9".into());
    web.spec.as_mut().unwrap().service_account_name = None;
    let w = workload(&web, Some(&labels("enabled")), &td()).unwrap();
    assert_eq!(w.ips, ["10.0.0.9"]);
    assert_eq!(w.spiffe_id, "spiffe://example.org/ns/shop/sa/default");
}

#[test]
fn strip_keeps_what_the_control_plane_reads() {
    let mut web = annotated(pod("shop", "web", "web", "n1", &["10.0.0.5"]), "strict");
    web.metadata.annotations.as_mut().unwrap().insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{..}".into(),
    );
    web.spec.as_mut().unwrap().containers = vec![Default::default()];
    let before = workload(&web, None, &td());
    strip(&mut web);
    assert_eq!(workload(&web, None, &td()), before);
    assert_eq!(web.metadata.annotations.as_ref().unwrap().len(), 1);
    assert!(web.spec.unwrap().containers.is_empty());
}
