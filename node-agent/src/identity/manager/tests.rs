use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ferrule_identity::SharedBundle;
use ferrule_identity::ca::SvidRequest;
use ferrule_identity::csr::verify_csr;
use ferrule_identity::testing::TestCa;

use super::*;
use crate::identity::{SignError, SignedSvid};

/// Signs with a real in-memory CA; can be switched off to simulate an outage.
#[derive(Debug)]
struct LocalAuthority {
    ca: TestCa,
    ttl: Duration,
    calls: AtomicUsize,
    down: AtomicBool,
}

#[tonic::async_trait]
impl CertificateAuthority for LocalAuthority {
    async fn sign(&self, id: &SpiffeId, csr_der: Vec<u8>) -> Result<SignedSvid, SignError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(SignError::Unavailable("connection refused".into()));
        }
        // Let concurrent callers pile up on the first request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let csr = verify_csr(&csr_der).map_err(|e| SignError::Refused(e.to_string()))?;
        let svid = self
            .ca
            .ca
            .issue(&SvidRequest {
                id,
                public_key_spki: &csr.public_key_spki,
                ttl: self.ttl,
                dns_names: &[],
                ip_addresses: &[],
            })
            .map_err(|e| SignError::Refused(e.to_string()))?;
        Ok(SignedSvid {
            chain: svid.full_chain(),
            serial: svid.serial,
            not_before: svid.not_before,
            not_after: svid.not_after,
            bundle_roots: self.ca.ca.bundle().roots().to_vec(),
        })
    }
}

fn manager(ttl: Duration) -> (IdentityManager, Arc<LocalAuthority>) {
    let ca = TestCa::new("example.org");
    let bundle = SharedBundle::new(ca.ca.bundle().clone());
    let authority = Arc::new(LocalAuthority {
        ca,
        ttl,
        calls: AtomicUsize::new(0),
        down: AtomicBool::new(false),
    });
    let policy = RenewalPolicy {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..RenewalPolicy::default()
    };
    (
        IdentityManager::new(
            authority.clone(),
            bundle,
            policy,
            crate::telemetry::Telemetry::disabled(),
        ),
        authority,
    )
}

fn web() -> SpiffeId {
    SpiffeId::parse("spiffe://example.org/ns/shop/sa/web").unwrap()
}

#[tokio::test]
async fn pods_of_one_identity_share_one_certificate() {
    let (manager, authority) = manager(Duration::from_secs(3600));
    let id = web();
    let waits = (0..16).map(|_| manager.certificate(&id, Duration::from_secs(5)));
    let certs = futures::future::try_join_all(waits).await.unwrap();
    assert!(
        certs.iter().all(|c| c.serial == certs[0].serial),
        "one certificate for all"
    );
    assert_eq!(
        authority.calls.load(Ordering::SeqCst),
        1,
        "one CSR for 16 callers"
    );
    assert_eq!(certs[0].id, web());
}

#[tokio::test]
async fn renews_at_half_life_and_serves_through_an_outage() {
    let (manager, authority) = manager(Duration::from_secs(4));
    let first = manager
        .certificate(&web(), Duration::from_secs(5))
        .await
        .unwrap();
    let mut updates = manager.watch(&web());
    updates.borrow_and_update();

    // Renewal comes between 40% and 50% of the 4 s lifetime.
    tokio::time::timeout(Duration::from_secs(3), updates.changed())
        .await
        .expect("renewed before 3 s")
        .unwrap();
    let second = updates.borrow_and_update().clone().unwrap();
    assert_ne!(second.serial, first.serial, "a new certificate");

    // Control plane down: the still-valid certificate keeps being served.
    authority.down.store(true, Ordering::SeqCst);
    let calls_before = authority.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2800)).await;
    let during = manager
        .certificate(&web(), Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(
        during.serial, second.serial,
        "old certificate served during the outage"
    );
    let failed = authority.calls.load(Ordering::SeqCst) - calls_before;
    assert!(failed >= 2, "retried with backoff, {failed} failed calls");

    // Back up: renewed within the backoff cap.
    authority.down.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(2), updates.changed())
        .await
        .expect("renewed after the outage")
        .unwrap();
    let third = updates.borrow().clone().unwrap();
    assert_ne!(third.serial, second.serial);
}

#[tokio::test]
async fn unavailable_identity_reports_the_reason() {
    let (manager, authority) = manager(Duration::from_secs(3600));
    authority.down.store(true, Ordering::SeqCst);
    let err = manager
        .certificate(&web(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    manager.release(&web());
    assert!(manager.managed().is_empty());
}

#[tokio::test]
async fn a_revoked_certificate_is_replaced_at_once() {
    let (manager, authority) = manager(Duration::from_secs(3600));
    let id = web();
    let first = manager
        .certificate(&id, Duration::from_secs(5))
        .await
        .unwrap();
    let mut updates = manager.watch(&id);
    updates.borrow_and_update();
    // A revocation of some other serial changes nothing.
    manager.renew_revoked(&RevocationList::new(["7f".to_string()], []));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(authority.calls.load(Ordering::SeqCst), 1);

    manager.renew_revoked(&RevocationList::new([first.serial.clone()], []));
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("renewed within 5 s, not at half-life")
        .unwrap();
    let second = updates.borrow().clone().unwrap();
    assert_ne!(second.serial, first.serial);
}
