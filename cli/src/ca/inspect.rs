//! `ferrule ca inspect DIR`: what each CA certificate says, and whether the chain holds together.
//! Each link's signature is checked with its issuer's public key, and the admin certificate is
//! verified as a full X.509-SVID path to bundle.pem, the way the control plane will verify it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use ferrule_identity::ca::{CaLayout, read_cert_pem};
use ferrule_identity::{CertInfo, TrustBundle, TrustDomain, Usage};
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::output::{self, Format, unix_secs};

/// One certificate of the CA directory as printed (and as a JSON array element).
#[derive(Debug, Serialize)]
struct CertReport {
    role: &'static str,
    file: String,
    subject: String,
    issuer: String,
    trust_domain: Option<String>,
    spiffe_id: Option<String>,
    serial: String,
    not_before: String,
    not_after: String,
    key_type: String,
    is_ca: bool,
    path_len: Option<u32>,
    /// `self` for the root, otherwise the role of the certificate whose key signed this one.
    signed_by: &'static str,
    signature_ok: bool,
    signature_error: Option<String>,
    /// Admin certificate only: the whole path verifies to bundle.pem as a client X.509-SVID.
    bundle_verified: Option<bool>,
    bundle_error: Option<String>,
}

impl CertReport {
    fn failures(&self) -> impl Iterator<Item = String> + '_ {
        let sig = self
            .signature_error
            .as_ref()
            .map(|e| format!("{} ({}): signature: {e}", self.role, self.file));
        let bundle = self
            .bundle_error
            .as_ref()
            .map(|e| format!("{} ({}): bundle: {e}", self.role, self.file));
        sig.into_iter().chain(bundle)
    }
}

/// A certificate file of the layout, read and parsed.
struct Loaded {
    role: &'static str,
    path: PathBuf,
    chain: Vec<CertificateDer<'static>>,
}

impl Loaded {
    fn read(role: &'static str, path: PathBuf) -> anyhow::Result<Self> {
        let chain =
            read_cert_pem(&path).with_context(|| format!("reading the {role} certificate"))?;
        Ok(Self { role, path, chain })
    }

    fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

pub fn run(dir: &Path, format: Format) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory; pass the directory `ferrule ca init --out` wrote",
            dir.display()
        );
    }
    let layout = CaLayout::new(dir);
    let root = Loaded::read("root", layout.root_cert())?;
    let intermediate = Loaded::read("intermediate", layout.intermediate_cert())?;
    let issuing = Loaded::read("issuing", layout.issuing_cert())?;
    // The admin identity may already have been moved to an operator's machine.
    let admin = layout
        .admin_cert()
        .exists()
        .then(|| Loaded::read("admin", layout.admin_cert()))
        .transpose()?;

    let mut reports = vec![
        describe(&root, None)?,
        describe(&intermediate, Some(&root))?,
        describe(&issuing, Some(&intermediate))?,
    ];
    if let Some(admin) = &admin {
        let mut report = describe(admin, Some(&issuing))?;
        check_bundle(&mut report, admin, &layout);
        reports.push(report);
    }

    match format {
        Format::Json => output::print_json(&reports)?,
        Format::Table => output::print(&render(&reports, admin.is_none()))?,
    }
    let failures: Vec<String> = reports.iter().flat_map(CertReport::failures).collect();
    if !failures.is_empty() {
        anyhow::bail!(
            "the CA in {} does not verify: {}",
            dir.display(),
            failures.join("; ")
        );
    }
    Ok(())
}

fn describe(cert: &Loaded, issuer: Option<&Loaded>) -> anyhow::Result<CertReport> {
    let file = cert.path.display().to_string();
    let info = CertInfo::parse(cert.leaf()).with_context(|| format!("parsing {file}"))?;
    let spiffe_id = info.spiffe_id().ok();
    let signature = check_signature(cert.leaf(), issuer.map(|i| i.leaf().as_ref()));
    Ok(CertReport {
        role: cert.role,
        file: file_name(&cert.path),
        subject: info.subject,
        issuer: info.issuer,
        trust_domain: spiffe_id
            .as_ref()
            .map(|id| id.trust_domain_str().to_owned()),
        spiffe_id: spiffe_id.map(|id| id.to_string()),
        serial: info.serial,
        not_before: output::rfc3339(unix_secs(info.not_before)),
        not_after: output::rfc3339(unix_secs(info.not_after)),
        key_type: info.key_type,
        is_ca: info.is_ca,
        path_len: info.path_len,
        signed_by: issuer.map_or("self", |i| i.role),
        signature_ok: signature.is_ok(),
        signature_error: signature.err(),
        bundle_verified: None,
        bundle_error: None,
    })
}

/// Verifies `cert`'s signature with `issuer`'s public key (its own for a self-signed root).
pub fn check_signature(cert: &[u8], issuer: Option<&[u8]>) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(cert).map_err(|e| e.to_string())?;
    let issuer = issuer
        .map(X509Certificate::from_der)
        .transpose()
        .map_err(|e| format!("issuer certificate: {e}"))?;
    cert.verify_signature(issuer.as_ref().map(|(_, i)| i.public_key()))
        .map_err(|e| e.to_string())
}

/// Verifies the admin chain against bundle.pem as a TLS client certificate, now: this covers
/// validity periods, CA constraints and path lengths, not just signatures. Problems go into the
/// report rather than aborting, so the chain is still shown.
fn check_bundle(report: &mut CertReport, admin: &Loaded, layout: &CaLayout) {
    let result = verify_to_bundle(report.trust_domain.as_deref(), admin, &layout.bundle());
    report.bundle_verified = Some(result.is_ok());
    report.bundle_error = result.err();
}

fn verify_to_bundle(td: Option<&str>, admin: &Loaded, bundle: &Path) -> Result<(), String> {
    let td = td.ok_or("admin.crt has no SPIFFE ID, so its trust domain is unknown")?;
    let td = TrustDomain::new(td).map_err(|e| e.to_string())?;
    let pem = std::fs::read(bundle).map_err(|e| format!("reading {}: {e}", bundle.display()))?;
    TrustBundle::from_pem(td, &pem)
        .and_then(|bundle| bundle.verify(&admin.chain, SystemTime::now(), Usage::Client))
        .map(drop)
        .map_err(|e| e.to_string())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn render(reports: &[CertReport], admin_missing: bool) -> String {
    let mut text: String = reports
        .iter()
        .map(render_one)
        .collect::<Vec<_>>()
        .join("\n");
    if admin_missing {
        text.push_str("\n(no admin.crt: the path to bundle.pem was not checked)\n");
    }
    text
}

fn render_one(r: &CertReport) -> String {
    let signature = match &r.signature_error {
        None if r.signed_by == "self" => "ok (self-signed)".to_owned(),
        None => format!("ok (signed by the {} CA)", r.signed_by),
        Some(e) => format!("FAILED: {e}"),
    };
    let ca = match (r.is_ca, r.path_len) {
        (false, _) => "no".to_owned(),
        (true, None) => "yes, path length unlimited".to_owned(),
        (true, Some(n)) => format!("yes, path length {n}"),
    };
    let mut lines = vec![
        ("subject", r.subject.clone()),
        ("issuer", r.issuer.clone()),
        ("trust domain", r.trust_domain.clone().unwrap_or("-".into())),
        ("serial", r.serial.clone()),
        ("not before", r.not_before.clone()),
        ("not after", r.not_after.clone()),
        ("key", r.key_type.clone()),
        ("CA", ca),
        ("signature", signature),
    ];
    if r.role == "admin" {
        lines.insert(3, ("SPIFFE ID", r.spiffe_id.clone().unwrap_or("-".into())));
    }
    if let Some(ok) = r.bundle_verified {
        let verdict = match &r.bundle_error {
            _ if ok => "ok (client X.509-SVID, verified now)".to_owned(),
            Some(e) => format!("FAILED: {e}"),
            None => "FAILED".to_owned(),
        };
        lines.push(("bundle.pem", verdict));
    }
    let body: String = lines
        .iter()
        .map(|(label, value)| format!("  {label:<13} {value}\n"))
        .collect();
    format!("{} ({})\n{body}", r.role, r.file)
}
