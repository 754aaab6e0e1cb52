//! `ferrule ca init`: root (offline), intermediate and issuing CA, plus the first admin identity.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::CertificateDer;

use super::layout::{CaLayout, write_new};
use super::offline_crls::{DEFAULT_OFFLINE_CRL_TTL, crls_pem, sign_offline_crl};
use super::{CaError, IssuingCa, SvidRequest};
use crate::bundle::TrustBundle;
use crate::signer::{InMemorySigner, KeyAlgorithm, RcgenSigner};
use crate::spiffe::{SpiffeId, TrustDomain};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct CaInitOptions {
    pub trust_domain: TrustDomain,
    pub root_ttl: Duration,
    pub intermediate_ttl: Duration,
    pub issuing_ttl: Duration,
    /// Name of the first administrator (`spiffe://<td>/ferrule/admin/<name>`).
    pub admin_name: String,
    pub admin_ttl: Duration,
    /// Validity of the root's and the intermediate's CRLs (`ca-crls.pem`).
    pub offline_crl_ttl: Duration,
}

impl CaInitOptions {
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_ttl: 3650 * DAY,
            intermediate_ttl: 1825 * DAY,
            issuing_ttl: 365 * DAY,
            admin_name: "admin".into(),
            admin_ttl: 90 * DAY,
            offline_crl_ttl: DEFAULT_OFFLINE_CRL_TTL,
        }
    }
}

/// One CA level: its certificate and key.
struct Level {
    cert: CertificateDer<'static>,
    params: CertificateParams,
    signer: Arc<InMemorySigner>,
}

impl Level {
    fn issuer(&self) -> Issuer<'_, RcgenSigner> {
        Issuer::from_params(&self.params, RcgenSigner(self.signer.clone()))
    }
}

/// Creates the CA hierarchy in `layout`'s directory. Refuses if any of its files exists.
pub fn init(layout: &CaLayout, opts: &CaInitOptions) -> Result<(), CaError> {
    if let Some(existing) = layout.outputs().into_iter().find(|p| p.exists()) {
        return Err(CaError::Exists {
            path: existing.display().to_string(),
        });
    }
    std::fs::create_dir_all(layout.dir()).map_err(|source| CaError::Io {
        path: layout.dir().display().to_string(),
        source,
    })?;
    let td = &opts.trust_domain;
    let root = ca_level(
        td,
        "Root CA",
        opts.root_ttl,
        BasicConstraints::Unconstrained,
        KeyAlgorithm::EcdsaP384Sha384,
        None,
    )?;
    let intermediate = ca_level(
        td,
        "Intermediate CA",
        opts.intermediate_ttl,
        BasicConstraints::Constrained(1),
        KeyAlgorithm::EcdsaP384Sha384,
        Some(&root),
    )?;
    let issuing = ca_level(
        td,
        "Issuing CA",
        opts.issuing_ttl,
        BasicConstraints::Constrained(0),
        KeyAlgorithm::EcdsaP256Sha256,
        Some(&intermediate),
    )?;

    let chain = vec![issuing.cert.clone(), intermediate.cert.clone()];
    let bundle = TrustBundle::new(td.clone(), vec![root.cert.clone()]).map_err(CaError::Chain)?;
    let issuing_ca = IssuingCa::new(issuing.signer.clone(), chain.clone(), bundle)?;
    let admin_id = SpiffeId::admin(td, &opts.admin_name)
        .map_err(|e| CaError::BadRequest(format!("admin name: {e}")))?;
    let admin_key = crate::csr::generate_workload_key()?;
    let admin = issuing_ca.issue(&SvidRequest {
        id: &admin_id,
        public_key_spki: &rcgen::PublicKeyData::subject_public_key_info(&admin_key),
        ttl: opts.admin_ttl,
        dns_names: &[],
        ip_addresses: &[],
    })?;

    let offline_crls = [&root, &intermediate]
        .map(|level| sign_offline_crl(&level.issuer(), &level.cert, opts.offline_crl_ttl));
    let offline_crls = offline_crls.into_iter().collect::<Result<Vec<_>, _>>()?;

    let pem = crate::pem_encode_certs;
    write_new(
        &layout.root_cert(),
        &pem(std::slice::from_ref(&root.cert)),
        false,
    )?;
    write_new(&layout.root_key(), &root.signer.pkcs8_pem(), true)?;
    write_new(
        &layout.intermediate_cert(),
        &pem(std::slice::from_ref(&intermediate.cert)),
        false,
    )?;
    write_new(
        &layout.intermediate_key(),
        &intermediate.signer.pkcs8_pem(),
        true,
    )?;
    write_new(
        &layout.issuing_cert(),
        &pem(std::slice::from_ref(&issuing.cert)),
        false,
    )?;
    write_new(&layout.issuing_key(), &issuing.signer.pkcs8_pem(), true)?;
    write_new(&layout.chain(), &pem(&chain), false)?;
    write_new(&layout.bundle(), &pem(&[root.cert]), false)?;
    write_new(&layout.offline_crls(), &crls_pem(&offline_crls), false)?;
    write_new(&layout.admin_cert(), &admin.full_chain_pem(), false)?;
    write_new(&layout.admin_key(), &admin_key.serialize_pem(), true)?;
    Ok(())
}

fn ca_level(
    td: &TrustDomain,
    name: &str,
    ttl: Duration,
    constraints: BasicConstraints,
    algorithm: KeyAlgorithm,
    parent: Option<&Level>,
) -> Result<Level, CaError> {
    let signer = Arc::new(InMemorySigner::generate(algorithm)?);
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Ferrule");
    dn.push(DnType::CommonName, format!("{td} Ferrule {name}"));
    params.distinguished_name = dn;
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + ttl).into();
    params.serial_number = Some(super::issue::random_serial());
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = parent.is_some();
    params.subject_alt_names = vec![SanType::URI(td.id_uri().as_str().try_into()?)];
    let key = RcgenSigner(signer.clone());
    let cert = match parent {
        None => params.self_signed(&key)?,
        Some(parent) => params.signed_by(&key, &parent.issuer())?,
    };
    Ok(Level {
        cert: cert.der().clone(),
        params,
        signer,
    })
}
