//! The mesh's TLS settings in a real handshake (in memory): TLS 1.3 only, the hybrid
//! post-quantum group, mandatory client certificates, exact server identity, no resumption.

use std::sync::Arc;
use std::time::Duration;

use ferrule_identity::testing::TestCa;
use ferrule_identity::tls::{
    self, CertSlot, ExpectedServer, SpiffeClientVerifier, SpiffeServerVerifier, verify_error_of,
};
use ferrule_identity::{SharedBundle, SpiffeId, VerifyError};
use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;

fn slot(ca: &TestCa, id: &str) -> Arc<CertSlot> {
    let id = SpiffeId::parse(id).unwrap();
    let (svid, key) = ca
        .ca
        .issue_with_new_key(&id, Duration::from_secs(600), &[], &[])
        .unwrap();
    let certified = CertSlot::certified_key(
        &tls::crypto_provider(),
        svid.full_chain(),
        key.serialize_der(),
    )
    .unwrap();
    Arc::new(CertSlot::new(certified))
}

/// Runs the handshake to completion or to the first error on either side.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut buf.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut buf.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn pair(
    server_ca: &TestCa,
    client_cert: Option<Arc<CertSlot>>,
    expected: &str,
) -> (ClientConnection, ServerConnection) {
    let bundle = SharedBundle::new(server_ca.ca.bundle().clone());
    let server = tls::server_config(
        slot(server_ca, "spiffe://example.org/ns/b/sa/server"),
        SpiffeClientVerifier::required(bundle.clone()),
        &[b"h2"],
    );
    let verifier = SpiffeServerVerifier::new(
        bundle,
        ExpectedServer::Exact(SpiffeId::parse(expected).unwrap()),
    );
    let client = tls::client_config(client_cert, verifier, &[b"h2"]);
    let name = ServerName::try_from("mesh").unwrap();
    (
        ClientConnection::new(Arc::new(client), name).unwrap(),
        ServerConnection::new(Arc::new(server)).unwrap(),
    )
}

#[test]
fn mutual_tls13_with_hybrid_post_quantum_key_exchange() {
    let ca = TestCa::new("example.org");
    let client_cert = slot(&ca, "spiffe://example.org/ns/a/sa/client");
    let (mut client, mut server) = pair(
        &ca,
        Some(client_cert),
        "spiffe://example.org/ns/b/sa/server",
    );
    handshake(&mut client, &mut server).expect("handshake");
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let group = client.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    assert_eq!(server.alpn_protocol(), Some(&b"h2"[..]));
    let client_chain = server.peer_certificates().expect("client certificate");
    let id = ferrule_identity::CertInfo::parse(&client_chain[0])
        .unwrap()
        .spiffe_id()
        .unwrap();
    assert_eq!(id.as_str(), "spiffe://example.org/ns/a/sa/client");
}

#[test]
fn configs_offer_tls13_only_and_no_resumption() {
    let ca = TestCa::new("example.org");
    let bundle = SharedBundle::new(ca.ca.bundle().clone());
    let server = tls::server_config(
        slot(&ca, "spiffe://example.org/ns/b/sa/server"),
        SpiffeClientVerifier::required(bundle.clone()),
        &[],
    );
    assert_eq!(server.send_tls13_tickets, 0);
    assert_eq!(server.max_early_data_size, 0);
    assert!(!server.session_storage.can_cache());
    let provider = tls::crypto_provider();
    assert!(
        provider
            .cipher_suites
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13)
    );
    let groups: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
    assert_eq!(
        groups,
        [
            rustls::NamedGroup::X25519MLKEM768,
            rustls::NamedGroup::X25519
        ]
    );
}

#[test]
fn missing_client_certificate_is_refused() {
    let ca = TestCa::new("example.org");
    let (mut client, mut server) = pair(&ca, None, "spiffe://example.org/ns/b/sa/server");
    let err = handshake(&mut client, &mut server).unwrap_err();
    assert_eq!(
        verify_error_of(&err),
        Some(VerifyError::NoCertificate),
        "{err:?}"
    );
}

#[test]
fn server_with_another_identity_is_refused_by_the_client() {
    let ca = TestCa::new("example.org");
    let client_cert = slot(&ca, "spiffe://example.org/ns/a/sa/client");
    let (mut client, mut server) =
        pair(&ca, Some(client_cert), "spiffe://example.org/ns/b/sa/other");
    let err = handshake(&mut client, &mut server).unwrap_err();
    assert!(
        matches!(verify_error_of(&err), Some(VerifyError::WrongId { .. })),
        "{err:?}"
    );
}

#[test]
fn client_from_another_ca_is_refused_with_unknown_ca() {
    let ca = TestCa::new("example.org");
    let other = TestCa::new("example.org");
    let foreign = slot(&other, "spiffe://example.org/ns/a/sa/client");
    let (mut client, mut server) = pair(&ca, Some(foreign), "spiffe://example.org/ns/b/sa/server");
    let err = handshake(&mut client, &mut server).unwrap_err();
    assert_eq!(
        verify_error_of(&err),
        Some(VerifyError::UnknownCa),
        "{err:?}"
    );
}

/// A server that lets only workloads in (the HBONE port), with a client presenting `client_id`.
fn workloads_only_pair(ca: &TestCa, client_id: &str) -> (ClientConnection, ServerConnection) {
    let bundle = SharedBundle::new(ca.ca.bundle().clone());
    let server = tls::server_config(
        slot(ca, "spiffe://example.org/ns/b/sa/server"),
        SpiffeClientVerifier::workloads(bundle.clone()),
        &[b"h2"],
    );
    let verifier = SpiffeServerVerifier::new(
        bundle,
        ExpectedServer::Exact(SpiffeId::parse("spiffe://example.org/ns/b/sa/server").unwrap()),
    );
    let client = tls::client_config(Some(slot(ca, client_id)), verifier, &[b"h2"]);
    (
        ClientConnection::new(Arc::new(client), ServerName::try_from("mesh").unwrap()).unwrap(),
        ServerConnection::new(Arc::new(server)).unwrap(),
    )
}

#[test]
fn workloads_only_server_refuses_node_admin_and_control_plane_clients() {
    let ca = TestCa::new("example.org");
    let (mut client, mut server) = workloads_only_pair(&ca, "spiffe://example.org/ns/a/sa/client");
    handshake(&mut client, &mut server).expect("a workload is let in");
    for id in [
        "spiffe://example.org/node/node-1",
        "spiffe://example.org/ferrule/admin/ops",
        "spiffe://example.org/ferrule/control-plane",
    ] {
        let (mut client, mut server) = workloads_only_pair(&ca, id);
        let err = handshake(&mut client, &mut server).unwrap_err();
        let verify = verify_error_of(&err);
        assert_eq!(
            verify,
            Some(VerifyError::NotWorkload { id: id.into() }),
            "{id}: {err:?}"
        );
        assert_eq!(
            tls::HandshakeReason::of_tls(&err).as_str(),
            "not_workload",
            "{id}"
        );
    }
}

/// Handshakes twice with `client` against a server that offers resumption and 0-RTT, and says
/// how the second one went.
fn second_handshake(client: Arc<rustls::ClientConfig>, ca: &TestCa) -> rustls::HandshakeKind {
    let bundle = SharedBundle::new(ca.ca.bundle().clone());
    let mut server = tls::server_config(
        slot(ca, "spiffe://example.org/ns/b/sa/server"),
        SpiffeClientVerifier::required(bundle),
        &[b"h2"],
    );
    server.session_storage = rustls::server::ServerSessionMemoryCache::new(16);
    server.send_tls13_tickets = 2;
    server.max_early_data_size = 16384;
    let server = Arc::new(server);
    let mut kind = None;
    for _ in 0..2 {
        let name = ServerName::try_from("mesh").unwrap();
        let mut c = ClientConnection::new(client.clone(), name).unwrap();
        let mut s = ServerConnection::new(server.clone()).unwrap();
        handshake(&mut c, &mut s).expect("handshake");
        assert!(c.early_data().is_none(), "the client offered 0-RTT");
        // Deliver the tickets the server sends after the handshake.
        let mut tickets = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut tickets).unwrap();
        }
        c.read_tls(&mut tickets.as_slice()).unwrap();
        c.process_new_packets().unwrap();
        kind = c.handshake_kind();
    }
    kind.expect("handshake done")
}

#[test]
fn client_never_resumes_and_never_sends_early_data() {
    let ca = TestCa::new("example.org");
    let verifier = SpiffeServerVerifier::new(
        SharedBundle::new(ca.ca.bundle().clone()),
        ExpectedServer::Exact(SpiffeId::parse("spiffe://example.org/ns/b/sa/server").unwrap()),
    );
    let client = tls::client_config(
        Some(slot(&ca, "spiffe://example.org/ns/a/sa/client")),
        verifier,
        &[b"h2"],
    );
    assert!(!client.enable_early_data);
    assert_eq!(
        format!("{:?}", client.resumption),
        format!("{:?}", rustls::client::Resumption::disabled())
    );
    let mut resuming = client.clone();
    resuming.resumption = rustls::client::Resumption::default();
    assert_eq!(
        second_handshake(Arc::new(resuming), &ca),
        rustls::HandshakeKind::Resumed,
        "the server offers resumption, so a client that allows it resumes"
    );
    assert_eq!(
        second_handshake(Arc::new(client), &ca),
        rustls::HandshakeKind::Full
    );
}
