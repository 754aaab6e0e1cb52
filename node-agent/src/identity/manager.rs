//! One driver task per identity fetches and renews its certificate and publishes it on a watch
//! channel; any number of pods (and the control-plane client, for the node identity) read it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ferrule_identity::{RevocationList, SharedBundle, SpiffeId, TrustBundle};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::cert::new_key_and_csr;
use super::{CertificateAuthority, IdentityError, RenewalPolicy, WorkloadCert};
use crate::telemetry::{RenewalResult, Telemetry};

type Current = Option<Arc<WorkloadCert>>;

struct Entry {
    current: watch::Receiver<Current>,
    /// The last failure, for callers that give up waiting.
    last_error: Arc<Mutex<Option<String>>>,
    /// Wakes the driver to renew before its time (the certificate was revoked).
    renew_now: Arc<Notify>,
    driver: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

#[derive(Clone)]
pub struct IdentityManager {
    inner: Arc<Inner>,
}

struct Inner {
    authority: Arc<dyn CertificateAuthority>,
    bundle: SharedBundle,
    policy: RenewalPolicy,
    telemetry: Arc<Telemetry>,
    entries: Mutex<HashMap<SpiffeId, Entry>>,
}

impl std::fmt::Debug for IdentityManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityManager").finish_non_exhaustive()
    }
}

impl IdentityManager {
    pub fn new(
        authority: Arc<dyn CertificateAuthority>,
        bundle: SharedBundle,
        policy: RenewalPolicy,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                authority,
                bundle,
                policy,
                telemetry,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn bundle(&self) -> &SharedBundle {
        &self.inner.bundle
    }

    /// The certificate for `id`, fetching it if this is the first request; waits at most
    /// `wait` for a first certificate.
    pub async fn certificate(
        &self,
        id: &SpiffeId,
        wait: Duration,
    ) -> Result<Arc<WorkloadCert>, IdentityError> {
        let (mut rx, last_error) = self.subscribe(id, None);
        let valid = |c: &Current| c.as_ref().is_some_and(|c| c.is_valid_at(SystemTime::now()));
        match tokio::time::timeout(wait, rx.wait_for(valid)).await {
            Ok(Ok(cert)) => Ok(cert.clone().expect("checked by wait_for")),
            _ => Err(IdentityError::Unavailable {
                id: id.clone(),
                reason: last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| "timed out".into()),
            }),
        }
    }

    /// Follows `id`'s certificate as it is renewed.
    pub fn watch(&self, id: &SpiffeId) -> watch::Receiver<Current> {
        self.subscribe(id, None).0
    }

    /// Manages a certificate obtained elsewhere (the node certificate from joining): it is
    /// served at once and renewed like any other.
    pub fn adopt(&self, cert: WorkloadCert) -> watch::Receiver<Current> {
        let id = cert.id.clone();
        self.subscribe(&id, Some(Arc::new(cert))).0
    }

    /// Stops renewing `id` (its last pod is gone); the key is dropped from memory.
    pub fn release(&self, id: &SpiffeId) {
        self.inner.lock_entries().remove(id);
        self.inner.telemetry.certificate_released(id.as_str());
    }

    /// Renews at once every certificate whose serial `revoked` lists, so a workload whose
    /// certificate was revoked (not its identity) is back in a moment, not at renewal time.
    pub fn renew_revoked(&self, revoked: &RevocationList) {
        for (id, entry) in self.inner.lock_entries().iter() {
            let serial = entry.current.borrow().as_ref().map(|c| c.serial.clone());
            if serial.is_some_and(|s| revoked.serial_revoked(&s)) {
                tracing::warn!(%id, "certificate revoked; renewing now");
                entry.renew_now.notify_one();
            }
        }
    }

    pub fn managed(&self) -> Vec<SpiffeId> {
        self.inner.lock_entries().keys().cloned().collect()
    }

    fn subscribe(
        &self,
        id: &SpiffeId,
        initial: Current,
    ) -> (watch::Receiver<Current>, Arc<Mutex<Option<String>>>) {
        let mut entries = self.inner.lock_entries();
        if let Some(entry) = entries.get(id) {
            return (entry.current.clone(), entry.last_error.clone());
        }
        let (tx, rx) = watch::channel(initial.clone());
        let last_error = Arc::new(Mutex::new(None));
        let renew_now = Arc::new(Notify::new());
        if let Some(cert) = &initial {
            let telemetry = &self.inner.telemetry;
            telemetry.certificate_in_use(id.as_str(), cert.not_before, cert.not_after);
        }
        let driver = tokio::spawn(drive(
            self.inner.clone(),
            id.clone(),
            tx,
            last_error.clone(),
            renew_now.clone(),
        ));
        entries.insert(
            id.clone(),
            Entry {
                current: rx.clone(),
                last_error: last_error.clone(),
                renew_now,
                driver,
            },
        );
        (rx, last_error)
    }
}

impl Inner {
    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<SpiffeId, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch(&self, id: &SpiffeId) -> Result<WorkloadCert, String> {
        let (key, csr) = new_key_and_csr(id).map_err(|e| e.to_string())?;
        let signed = self
            .authority
            .sign(id, csr)
            .await
            .map_err(|e| e.to_string())?;
        let roots = signed.bundle_roots.clone();
        let cert = WorkloadCert::new(id, &key, signed).map_err(|e| e.to_string())?;
        self.update_bundle(roots);
        Ok(cert)
    }

    /// Takes the roots the control plane sent, so a rotated root reaches every verifier.
    fn update_bundle(&self, roots: Vec<rustls_pki_types::CertificateDer<'static>>) {
        if roots.is_empty() {
            return;
        }
        let current = self.bundle.get();
        if current.roots() == roots.as_slice() {
            return;
        }
        match TrustBundle::new(current.trust_domain().clone(), roots) {
            Ok(bundle) => {
                tracing::info!(roots = bundle.roots().len(), "trust bundle updated");
                self.bundle.set(bundle);
            }
            Err(e) => tracing::warn!(error = %e, "ignoring unusable trust bundle"),
        }
    }
}

/// Fetch, publish, sleep until renewal time; on failure keep the current certificate and retry
/// with backoff. Ends when the identity is released (the task is aborted).
async fn drive(
    inner: Arc<Inner>,
    id: SpiffeId,
    tx: watch::Sender<Current>,
    last_error: Arc<Mutex<Option<String>>>,
    renew_now: Arc<Notify>,
) {
    let mut attempt = 0u32;
    let initial = tx.borrow().clone();
    if let Some(cert) = initial {
        sleep_until(renewal_time(&inner.policy, &cert), &renew_now).await;
    }
    loop {
        match inner.fetch(&id).await {
            Ok(cert) => {
                attempt = 0;
                let telemetry = &inner.telemetry;
                telemetry.renewal(id.as_str(), RenewalResult::Ok);
                telemetry.certificate_in_use(id.as_str(), cert.not_before, cert.not_after);
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!(%id, serial = %cert.serial, not_after = ?cert.not_after, "certificate renewed");
                let renew_at = renewal_time(&inner.policy, &cert);
                tx.send_replace(Some(Arc::new(cert)));
                sleep_until(renew_at, &renew_now).await;
            }
            Err(reason) => {
                attempt += 1;
                inner.telemetry.renewal(id.as_str(), RenewalResult::Failed);
                let expires = tx.borrow().as_ref().map(|c| c.not_after);
                let delay = inner.policy.backoff(attempt, SystemTime::now(), expires);
                log_failure(&id, &reason, expires, delay);
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn renewal_time(policy: &RenewalPolicy, cert: &WorkloadCert) -> SystemTime {
    policy.renew_at(cert.received_at, cert.not_after, rand::random::<f64>())
}

/// Sleeps until `at`, or until woken early.
async fn sleep_until(at: SystemTime, woken: &Notify) {
    if let Ok(delay) = at.duration_since(SystemTime::now()) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = woken.notified() => {}
        }
    }
}

fn log_failure(id: &SpiffeId, reason: &str, expires: Option<SystemTime>, retry_in: Duration) {
    let left = expires.and_then(|t| t.duration_since(SystemTime::now()).ok());
    match left {
        Some(left) => tracing::warn!(
            %id, error = reason, expires_in_s = left.as_secs(), retry_in_ms = retry_in.as_millis() as u64,
            "certificate renewal failed; still serving the current certificate"
        ),
        None => tracing::error!(
            %id, error = reason, retry_in_ms = retry_in.as_millis() as u64,
            "no valid certificate and the request failed"
        ),
    }
}

#[cfg(test)]
mod tests;
