//! A throwaway layered CA in a temporary directory, for tests of the crates built on this one,
//! and certificates that break the X.509-SVID profile one rule at a time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

use crate::ca::{self, CaInitOptions, CaLayout, IssuingCa, SvidRequest, read_cert_pem};
use crate::signer::{InMemorySigner, RcgenSigner};
use crate::{SpiffeId, TrustBundle, TrustDomain};

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub layout: CaLayout,
    pub ca: IssuingCa,
}

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let layout = CaLayout::new(dir.path().join("ca"));
        let td = TrustDomain::new(trust_domain).expect("valid trust domain");
        ca::init(&layout, &CaInitOptions::new(td.clone())).expect("ca init");
        let ca = Self::load(&layout, td);
        Self { dir, layout, ca }
    }

    /// The issuing CA of an existing layout (e.g. a test control plane's), to craft certificates.
    pub fn load(layout: &CaLayout, td: TrustDomain) -> IssuingCa {
        let signer = Arc::new(InMemorySigner::from_pkcs8_file(&layout.issuing_key()).expect("key"));
        let bundle =
            TrustBundle::new(td, read_cert_pem(&layout.bundle()).expect("bundle")).expect("bundle");
        IssuingCa::new(
            signer,
            read_cert_pem(&layout.chain()).expect("chain"),
            bundle,
        )
        .expect("issuing CA")
    }

    /// A chain (leaf first) for `id` from the issuing CA, with `edit` applied to the leaf's
    /// parameters as the CA would set them.
    pub fn craft_leaf(
        &self,
        id: &SpiffeId,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> Vec<CertificateDer<'static>> {
        let leaf = signed_leaf(id, edit, self.ca.issuer());
        std::iter::once(leaf)
            .chain(self.ca.chain().iter().cloned())
            .collect()
    }

    /// A chain for `id` through a second issuing CA directly under this root, whose parameters
    /// (those of a Ferrule issuing CA) `edit_ca` changes: a CA that breaks the profile.
    pub fn craft_sub_ca_leaf(
        &self,
        edit_ca: impl FnOnce(&mut CertificateParams),
        id: &SpiffeId,
    ) -> Vec<CertificateDer<'static>> {
        let root_key = InMemorySigner::from_pkcs8_file(&self.layout.root_key()).expect("root key");
        let root_cert = read_cert_pem(&self.layout.root_cert()).expect("root certificate");
        let root = Issuer::from_ca_cert_der(&root_cert[0], RcgenSigner(Arc::new(root_key)))
            .expect("root issuer");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "crafted issuing CA");
        let now = SystemTime::now();
        (params.not_before, params.not_after) = ((now - HOUR).into(), (now + HOUR).into());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = true;
        let td_uri = id.trust_domain().id_uri();
        params.subject_alt_names = vec![SanType::URI(td_uri.try_into().expect("IA5 URI"))];
        edit_ca(&mut params);
        let key = crate::csr::generate_workload_key().expect("CA key");
        let ca_cert = params.signed_by(&key, &root).expect("sign the CA");
        let leaf = signed_leaf(id, |_| {}, &Issuer::new(params, key));
        vec![leaf, ca_cert.der().clone()]
    }
}

fn signed_leaf<S: rcgen::SigningKey>(
    id: &SpiffeId,
    edit: impl FnOnce(&mut CertificateParams),
    issuer: &Issuer<'_, S>,
) -> CertificateDer<'static> {
    let key: KeyPair = crate::csr::generate_workload_key().expect("leaf key");
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let request = SvidRequest {
        id,
        public_key_spki: &spki,
        ttl: HOUR,
        dns_names: &[],
        ip_addresses: &[],
    };
    let now = SystemTime::now();
    let mut params = ca::leaf_params(&request, now - HOUR, now + HOUR).expect("params");
    edit(&mut params);
    params
        .signed_by(&key, issuer)
        .expect("sign the leaf")
        .der()
        .clone()
}
