use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

fn workload(uid: &str, ip: &str) -> v1::Resource {
    v1::Resource {
        key: uid.into(),
        kind: Some(Kind::Workload(v1::Workload {
            uid: uid.into(),
            ips: vec![ip.into()],
            node: "n1".into(),
            spiffe_id: format!("spiffe://example.org/ns/shop/sa/{uid}"),
            ..Default::default()
        })),
    }
}

fn policy_json() -> String {
    let yaml = "apiVersion: ferrule.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  action: ALLOW\n  rules: [{from: [{namespace: web}]}]\n";
    ferrule_policy::parse_documents(yaml, "test.yaml").unwrap()[0].to_json()
}

fn policy(json: &str) -> v1::Resource {
    v1::Resource {
        key: "shop/p".into(),
        kind: Some(Kind::Policy(v1::PolicyDocument { json: json.into() })),
    }
}

fn revoked_serial(serial: &str) -> v1::Resource {
    v1::Resource {
        key: format!("serial:{serial}"),
        kind: Some(Kind::Revocation(v1::Revocation {
            target: Some(Target::Serial(serial.into())),
            ..Default::default()
        })),
    }
}

fn update(version: u64, base: u64, snapshot: bool, upserts: Vec<v1::Resource>) -> v1::ConfigUpdate {
    v1::ConfigUpdate {
        epoch: "e".into(),
        version,
        snapshot,
        base_version: base,
        upserts,
        removals: Vec::new(),
    }
}

#[test]
fn snapshot_then_delta_builds_the_directory_policies_and_revocations() {
    let s1 = MeshState::default()
        .apply(&update(3, 0, true, vec![workload("a", "10.0.0.1")]), &td())
        .unwrap();
    assert!(matches!(s1.lookup("10.0.0.1".parse().unwrap()), Lookup::Workload(d) if d.uid == "a"));
    let mut delta = update(
        4,
        3,
        false,
        vec![policy(&policy_json()), revoked_serial("ab")],
    );
    delta.removals.push(v1::ResourceKey {
        kind: v1::ResourceKind::Workload as i32,
        key: "a".into(),
    });
    let s2 = s1.apply(&delta, &td()).unwrap();
    assert_eq!(s2.lookup("10.0.0.1".parse().unwrap()), Lookup::NotInMesh);
    assert_eq!(s2.counts(), (0, 1, 1));
    assert!(s2.revocations().serial_revoked("ab"));
    assert_eq!(s2.version, 4);
}

#[test]
fn a_delta_on_another_base_or_with_a_bad_resource_is_refused_whole() {
    let s1 = MeshState::default()
        .apply(&update(3, 0, true, vec![workload("a", "10.0.0.1")]), &td())
        .unwrap();
    let wrong_base = s1.apply(&update(5, 4, false, vec![]), &td()).unwrap_err();
    assert!(wrong_base.contains("based on 4"), "{wrong_base}");

    let bad = update(
        4,
        3,
        false,
        vec![workload("b", "10.0.0.2"), policy("{\"not\": \"a policy\"}")],
    );
    let refusal = s1.apply(&bad, &td()).unwrap_err();
    assert!(refusal.starts_with("policy \"shop/p\""), "{refusal}");
    // s1 is untouched: the good workload of the refused update did not land anywhere.
    assert_eq!(s1.lookup("10.0.0.2".parse().unwrap()), Lookup::NotInMesh);
}

#[test]
fn an_address_two_workloads_claim_resolves_to_neither() {
    let state = MeshState::default()
        .apply(
            &update(
                1,
                0,
                true,
                vec![workload("a", "10.0.0.1"), workload("b", "10.0.0.1")],
            ),
            &td(),
        )
        .unwrap();
    let both = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        state.lookup("10.0.0.1".parse().unwrap()),
        Lookup::Ambiguous(both)
    );
    assert_eq!(state.ambiguous_addresses(), 1);
    // Once one claim goes, the other is the workload at that address again.
    let mut delta = update(2, 1, false, vec![]);
    delta.removals.push(v1::ResourceKey {
        kind: v1::ResourceKind::Workload as i32,
        key: "a".into(),
    });
    let state = state.apply(&delta, &td()).unwrap();
    assert!(
        matches!(state.lookup("10.0.0.1".parse().unwrap()), Lookup::Workload(d) if d.uid == "b")
    );
    assert_eq!(state.ambiguous_addresses(), 0);
}
