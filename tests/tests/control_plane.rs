//! The control plane and agent binaries end to end: join, issuance rules, mTLS refusals,
//! persistence across restarts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrule_identity::csr::{build_csr, generate_workload_key};
use ferrule_identity::tls::CertSlot;
use ferrule_identity::{CertInfo, SpiffeId, Usage};
use ferrule_proto::v1::{self, identity_client::IdentityClient, node_client::NodeClient};
use ferrule_tests::ControlPlaneFixture;
use rustls_pki_types::CertificateDer;
use tonic::Code;

const TD: &str = "example.org";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

async fn join_node(cp: &ControlPlaneFixture, node: &str, allow: &[&str]) -> Arc<CertSlot> {
    cp.join_node(node, allow).await
}

async fn sign(
    cp: &ControlPlaneFixture,
    node: &Arc<CertSlot>,
    spiffe_id: &str,
    csr: Vec<u8>,
) -> Result<v1::SignResponse, tonic::Status> {
    IdentityClient::new(cp.channel(Some(node.clone())))
        .sign(v1::SignRequest {
            spiffe_id: spiffe_id.into(),
            csr,
        })
        .await
        .map(|r| r.into_inner())
}

fn csr_for(spiffe_id: &str) -> Vec<u8> {
    build_csr(&generate_workload_key().unwrap(), &id(spiffe_id)).unwrap()
}

/// Run by processes the test spawns (root, but neither the agent nor its child): the kernel
/// lists no Ferrule key they can see, and the agent's memory is closed to a root process
/// without CAP_SYS_PTRACE (what a root container has).
fn assert_node_key_unreadable_by_another_root_process(agent: u32) {
    let keys = std::process::Command::new("cat")
        .arg("/proc/keys")
        .output()
        .expect("cat /proc/keys");
    let keys = String::from_utf8_lossy(&keys.stdout);
    assert!(
        !keys.contains("ferrule"),
        "another root process sees a Ferrule key in the kernel keyrings:\n{keys}"
    );
    let memory = std::process::Command::new("setpriv")
        .args([
            "--bounding-set=-sys_ptrace",
            "--inh-caps=-sys_ptrace",
            "cat",
        ])
        .arg(format!("/proc/{agent}/mem"))
        .output()
        .expect("setpriv cat");
    let refused = String::from_utf8_lossy(&memory.stderr);
    assert!(
        refused.contains("Permission denied"),
        "reading the agent's memory without CAP_SYS_PTRACE: {refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_joins_with_a_single_use_token_and_keeps_its_key_in_memory() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let work = tempfile::tempdir().unwrap();
    let config = cp.agent_config(work.path(), "n1");
    let token = cp
        .join_token(
            "n1",
            &["spiffe://example.org/ns/shop/sa/*"],
            Duration::from_secs(3600),
        )
        .await;

    let agent = cp.spawn_agent(&config, &token);
    agent.wait_for_line("joined the mesh", Duration::from_secs(20));
    let cert_path = work.path().join("agent-n1/node-cert.pem");
    let pem = std::fs::read(&cert_path).expect("agent wrote its public chain");
    let chain: Vec<_> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<Vec<CertificateDer>, _>>()
        .unwrap();
    let verified = cp
        .bundle()
        .get()
        .verify(&chain, SystemTime::now(), Usage::Client)
        .expect("node certificate verifies against the bundle");
    assert_eq!(verified.id.as_str(), "spiffe://example.org/node/n1");

    // Outside witness: OpenSSL accepts the chain too.
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(cp.layout.bundle())
        .arg("-untrusted")
        .arg(&cert_path)
        .arg(&cert_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // No key material anywhere under the agent's directory.
    for entry in walk(work.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key",
            entry.display()
        );
    }

    // Nor anywhere another root process could read it: not in any kernel keyring it can see,
    // and not in the agent's memory without CAP_SYS_PTRACE.
    assert_node_key_unreadable_by_another_root_process(agent.id());

    // A plain restart (no running agent to hand the identity over) joins again: the used
    // token is refused, with a message that says what to do.
    drop(agent);
    let mut restarted = cp.spawn_agent(&config, &token);
    assert_eq!(restarted.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        restarted.output().contains("already used"),
        "{}",
        restarted.output()
    );

    // The same token for another agent: refused.
    let other = cp.agent_config(work.path(), "n9");
    let mut again = cp.spawn_agent(&other, &token);
    assert_eq!(again.wait_exit(Duration::from_secs(20)), Some(1));
    assert!(
        again.output().contains("already used"),
        "{}",
        again.output()
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_reused_and_malformed_tokens_are_unauthenticated() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let token = cp.join_token("n1", &[], Duration::from_secs(1)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut node = NodeClient::new(cp.channel(None));
    let csr = csr_for("spiffe://example.org/node/n1");
    let expired = node
        .join(v1::JoinRequest {
            token,
            csr: csr.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated, "{expired:?}");
    assert!(expired.message().contains("expired"), "{expired:?}");

    let token = cp.join_token("n2", &[], Duration::from_secs(600)).await;
    node.join(v1::JoinRequest {
        token: token.clone(),
        csr: csr.clone(),
        ..Default::default()
    })
    .await
    .expect("first use");
    let reused = node
        .join(v1::JoinRequest {
            token,
            csr: csr.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::Unauthenticated, "{reused:?}");
    assert!(reused.message().contains("already used"), "{reused:?}");

    let garbage = node
        .join(v1::JoinRequest {
            token: "fjt.nope.0123456789abcdef0123456789abcdef".into(),
            csr,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), Code::Unauthenticated, "{garbage:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_enforces_the_nodes_allowance_and_validates_the_csr() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let node = join_node(&cp, "n1", &["spiffe://example.org/ns/shop/sa/*"]).await;

    let ok = sign(
        &cp,
        &node,
        "spiffe://example.org/ns/shop/sa/web",
        csr_for("spiffe://example.org/ns/shop/sa/web"),
    )
    .await
    .expect("allowed identity is signed");
    let leaf = CertInfo::parse(&ok.svid.unwrap().leaf).unwrap();
    assert_eq!(
        leaf.spiffe_id().unwrap().as_str(),
        "spiffe://example.org/ns/shop/sa/web"
    );
    assert_eq!(ok.bundle.unwrap().roots.len(), 1);

    let denied = sign(
        &cp,
        &node,
        "spiffe://example.org/ns/bank/sa/vault",
        csr_for("spiffe://example.org/ns/bank/sa/vault"),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let other_node = sign(
        &cp,
        &node,
        "spiffe://example.org/node/n2",
        csr_for("spiffe://example.org/node/n2"),
    )
    .await
    .unwrap_err();
    assert_eq!(other_node.code(), Code::PermissionDenied, "{other_node:?}");
    // Issue 12 finding 3: a longer path under an allowed namespace is not a workload identity.
    let smuggled = "spiffe://example.org/ns/shop/sa/x/sa/web";
    let unshaped = sign(&cp, &node, smuggled, csr_for(smuggled))
        .await
        .unwrap_err();
    assert_eq!(unshaped.code(), Code::InvalidArgument, "{unshaped:?}");
    assert!(
        unshaped.message().contains("is not a workload identity"),
        "{unshaped:?}"
    );

    let malformed = sign(
        &cp,
        &node,
        "spiffe://example.org/ns/shop/sa/web",
        b"not a csr".to_vec(),
    )
    .await
    .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    let bad_id = sign(
        &cp,
        &node,
        "https://example.org/x",
        csr_for("spiffe://example.org/ns/shop/sa/web"),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument, "{bad_id:?}");

    // A node certificate is not an admin certificate, and no certificate is not either.
    let mut as_node = v1::admin_client::AdminClient::new(cp.channel(Some(node.clone())));
    let err = as_node
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let mut anonymous = v1::admin_client::AdminClient::new(cp.channel(None));
    let err = anonymous
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = IdentityClient::new(cp.channel(None))
        .sign(v1::SignRequest {
            spiffe_id: "spiffe://example.org/ns/shop/sa/web".into(),
            csr: csr_for("spiffe://example.org/ns/shop/sa/web"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_of_another_ca_or_trust_domain_fail_the_handshake() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    for (td, name, reason) in [
        (TD, "same trust domain, other CA", "unknown_ca"),
        ("other.org", "other trust domain", "wrong_trust_domain"),
    ] {
        let foreign = ControlPlaneFixture::new(td);
        let slot =
            CertSlot::from_pem_files(&foreign.layout.admin_cert(), &foreign.layout.admin_key())
                .unwrap();
        let mut admin = v1::admin_client::AdminClient::new(cp.channel(Some(Arc::new(slot))));
        let err = admin.list_nodes(v1::ListNodesRequest {}).await;
        assert!(err.is_err(), "{name}: the call went through: {err:?}");
        // The server is the witness: it refused the certificate during the handshake.
        cp.process().wait_for_count(
            "handshake failed",
            &format!("reason=\"{reason}\""),
            1,
            Duration::from_secs(5),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_nodes_and_certificate_inventory() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let node = join_node(&cp, "n1", &["spiffe://example.org/ns/shop/sa/*"]).await;
    let issued = sign(
        &cp,
        &node,
        "spiffe://example.org/ns/shop/sa/web",
        csr_for("spiffe://example.org/ns/shop/sa/web"),
    )
    .await
    .unwrap()
    .svid
    .unwrap()
    .serial;

    cp.stop();
    cp.start();
    let inventory = cp
        .admin()
        .list_certificates(v1::ListCertificatesRequest { node: "n1".into() })
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert!(
        inventory
            .iter()
            .any(|c| c.serial == issued && c.spiffe_id == "spiffe://example.org/ns/shop/sa/web"),
        "{inventory:?}"
    );
    assert!(
        inventory
            .iter()
            .any(|c| c.spiffe_id == "spiffe://example.org/node/n1"),
        "{inventory:?}"
    );
    let nodes = cp
        .admin()
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes[0].allow,
        vec!["spiffe://example.org/ns/shop/sa/*".to_string()]
    );

    // The node certificate issued before the restart still authenticates.
    sign(
        &cp,
        &node,
        "spiffe://example.org/ns/shop/sa/api",
        csr_for("spiffe://example.org/ns/shop/sa/api"),
    )
    .await
    .expect("node identity survives a control-plane restart");
}

/// The SPIFFE bundle the public endpoint serves, fetched with curl.
fn spiffe_bundle(cp: &ControlPlaneFixture) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(cp.layout.bundle())
        .arg(format!(
            "https://{}/.well-known/spiffe-bundle",
            cp.public_addr
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spiffe_bundle_sequence_grows_only_when_the_roots_change() {
    let mut cp = ControlPlaneFixture::new(TD);
    cp.start();
    let first = spiffe_bundle(&cp);
    let sequence = first["spiffe_sequence"].as_u64().unwrap();
    assert_eq!(first["keys"].as_array().unwrap().len(), 1, "{first}");

    cp.stop();
    cp.start();
    assert_eq!(
        spiffe_bundle(&cp)["spiffe_sequence"].as_u64(),
        Some(sequence),
        "same roots after a restart: same sequence"
    );

    // The first step of a root rotation: the bundle accepts a second root.
    let next_root = ferrule_identity::testing::TestCa::new(TD);
    let mut bundle = std::fs::read_to_string(cp.layout.bundle()).unwrap();
    bundle.push_str(&std::fs::read_to_string(next_root.layout.bundle()).unwrap());
    cp.stop();
    std::fs::write(cp.layout.bundle(), bundle).unwrap();
    cp.start();
    let rotated = spiffe_bundle(&cp);
    assert!(
        rotated["spiffe_sequence"].as_u64().unwrap() > sequence,
        "{first} then {rotated}"
    );
    assert_eq!(rotated["keys"].as_array().unwrap().len(), 2, "{rotated}");
}

#[test]
fn a_wrong_offline_crl_file_stops_the_start_with_the_reason() {
    let cp = ControlPlaneFixture::new(TD);
    // A certificate where the offline CRLs belong: gateways would refuse every client.
    std::fs::copy(cp.layout.bundle(), cp.layout.offline_crls()).unwrap();
    let out = std::process::Command::new("timeout")
        .arg("30")
        .arg(ferrule_tests::binary("ferrule-control-plane"))
        .arg("--config")
        .arg(&cp.config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ca.offline_crls") && stderr.contains("not an X509 CRL"),
        "{stderr}"
    );
}
