//! A throwaway layered CA in a temporary directory, for tests of the crates built on this one.

use std::sync::Arc;

use crate::ca::{self, CaInitOptions, CaLayout, IssuingCa, read_cert_pem};
use crate::signer::InMemorySigner;
use crate::{TrustBundle, TrustDomain};

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
}
