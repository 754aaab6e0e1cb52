//! `Config.Watch` updates as the agent applies them (`MeshState::apply`): any bytes decoded as
//! a `ConfigUpdate`, applied to the empty state an agent starts with and to one holding a
//! workload, an address two workloads claim, a policy and revocations. A delta is applied
//! both as sent and rebased onto the state, so it gets past the version check.
//!
//! Besides never panicking: an applied update is in force with its version, and every address
//! of a workload it upserts is in the directory.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use ferrule_identity::TrustDomain;
use ferrule_node_agent::mesh_config::{Lookup, MeshState};
use ferrule_proto::v1::{self, resource::Kind, revocation::Target};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

static TRUST_DOMAIN: LazyLock<TrustDomain> =
    LazyLock::new(|| TrustDomain::new("example.org").unwrap());
static POPULATED: LazyLock<MeshState> = LazyLock::new(populated);

fuzz_target!(|data: &[u8]| {
    let Ok(update) = v1::ConfigUpdate::decode(data) else {
        return;
    };
    check(&MeshState::default(), &update);
    check(&POPULATED, &update);
    if !update.snapshot {
        let rebased = v1::ConfigUpdate {
            epoch: POPULATED.epoch.clone(),
            base_version: POPULATED.version,
            ..update
        };
        check(&POPULATED, &rebased);
    }
});

fn check(state: &MeshState, update: &v1::ConfigUpdate) {
    let next = match state.apply(update, &TRUST_DOMAIN) {
        Ok(next) => next,
        Err(refusal) => return assert!(!refusal.is_empty(), "a refusal says why"),
    };
    assert!(next.is_applied());
    assert_eq!((next.version, &next.epoch), (update.version, &update.epoch));
    // Upserts come after removals, and a later upsert of one key replaces an earlier one.
    let mut workloads = BTreeMap::new();
    for resource in &update.upserts {
        if let Some(Kind::Workload(workload)) = &resource.kind {
            workloads.insert(&resource.key, workload);
        }
    }
    for workload in workloads.values() {
        for ip in &workload.ips {
            let ip: IpAddr = ip.parse().expect("applied workload IPs parse");
            assert_ne!(
                next.lookup(ip),
                Lookup::NotInMesh,
                "{ip} of {}",
                workload.uid
            );
        }
    }
    let _ = next.counts();
}

fn populated() -> MeshState {
    let workload = |uid: &str, ips: &[&str]| v1::Resource {
        key: uid.into(),
        kind: Some(Kind::Workload(v1::Workload {
            uid: uid.into(),
            ips: ips.iter().map(|ip| (*ip).into()).collect(),
            node: "n1".into(),
            spiffe_id: format!("spiffe://example.org/ns/shop/sa/{uid}"),
            ..Default::default()
        })),
    };
    let revocation = |key: &str, target: Target| v1::Resource {
        key: key.into(),
        kind: Some(Kind::Revocation(v1::Revocation {
            target: Some(target),
            ..Default::default()
        })),
    };
    let policy = v1::Resource {
        key: "shop/allow-web".into(),
        kind: Some(Kind::Policy(v1::PolicyDocument {
            json: r#"{"apiVersion":"ferrule.dev/v1alpha1","kind":"AuthorizationPolicy","metadata":{"name":"allow-web","namespace":"shop"},"spec":{"action":"ALLOW","rules":[{"from":[{"namespace":"web"}],"ports":[8080]}]}}"#.into(),
        })),
    };
    let snapshot = v1::ConfigUpdate {
        epoch: "fuzz".into(),
        version: 7,
        snapshot: true,
        base_version: 0,
        upserts: vec![
            workload("api", &["10.0.0.1", "fd00::1"]),
            workload("web", &["10.0.0.2"]),
            workload("web-copy", &["10.0.0.2"]),
            policy,
            revocation("serial:0a1b", Target::Serial("0a1b".into())),
            revocation(
                "identity:spiffe://example.org/ns/shop/sa/old",
                Target::SpiffeId("spiffe://example.org/ns/shop/sa/old".into()),
            ),
        ],
        removals: Vec::new(),
    };
    let state = MeshState::default()
        .apply(&snapshot, &TRUST_DOMAIN)
        .expect("the fuzz target's base state applies");
    assert_eq!(state.counts(), (3, 1, 2));
    assert_eq!(state.ambiguous_addresses(), 1);
    state
}
