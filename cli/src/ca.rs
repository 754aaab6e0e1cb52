//! `ferrule ca`: create the layered CA and inspect an existing one.

mod crl;
mod inspect;

pub use inspect::check_signature;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use ferrule_identity::ca::{self, CaError, CaInitOptions, CaLayout};
use ferrule_identity::{IdKind, SpiffeId, TrustDomain};
use serde::Serialize;

use crate::output::{self, Format, Table};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create an offline root, an intermediate, the issuing CA and the first admin identity
    ///
    /// Writes root.crt/.key, intermediate.crt/.key, issuing.crt/.key, chain.pem (issuing +
    /// intermediate), bundle.pem (trust bundle), ca-crls.pem (CRLs of root and intermediate,
    /// valid 180 days) and admin.crt/.key into --out. Refuses to overwrite any existing file.
    /// Keys are written with mode 0600.
    #[command(verbatim_doc_comment)]
    Init {
        /// Trust domain of the mesh, e.g. `example.org` (lowercase letters, digits, `.-_`).
        #[arg(long, value_name = "NAME", value_parser = parse_trust_domain)]
        trust_domain: TrustDomain,
        /// Directory to create the CA in (created if missing; must not hold CA files).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Name of the first administrator: spiffe://<td>/ferrule/admin/<NAME>.
        #[arg(long, value_name = "NAME", default_value = "admin", value_parser = parse_admin_name)]
        admin_name: String,
    },
    /// Show the CA chain root → intermediate → issuing (+ admin) and check every signature
    ///
    /// Table: one block per certificate. JSON: an array of objects (root, intermediate, issuing,
    /// then admin if admin.crt is present) with the fields role, file, subject, issuer,
    /// trust_domain, spiffe_id, serial, not_before, not_after (RFC 3339 UTC), key_type, is_ca,
    /// path_len, signed_by, signature_ok, signature_error, bundle_verified, bundle_error
    /// (the last two: admin only, null otherwise).
    /// Exits 1 if a signature or the admin chain does not verify.
    #[command(verbatim_doc_comment)]
    Inspect {
        /// The directory `ferrule ca init` wrote.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Re-sign the CRLs of the offline root and intermediate (ca-crls.pem)
    ///
    /// Relying parties that check revocation along the whole chain (nginx `ssl_crl`,
    /// `openssl verify -crl_check_all`) need a current CRL from every CA, and the control plane
    /// holds only the issuing key. Run this where root.key and intermediate.key are, before the
    /// old CRLs expire (alert FerruleOfflineCrlExpiring), and copy ca-crls.pem to the file the
    /// control plane's `ca.offline_crls` names; it picks the new file up within a minute.
    #[command(verbatim_doc_comment)]
    Crl {
        /// The directory `ferrule ca init` wrote (needs root.crt/.key, intermediate.crt/.key).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// How long the new CRLs stay valid.
        #[arg(long, value_name = "DURATION", default_value = "180d", value_parser = crl::parse_validity)]
        valid_for: std::time::Duration,
    },
}

pub fn run(cmd: CaCommand, format: Format) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            out,
            admin_name,
        } => init(trust_domain, &out, admin_name, format),
        CaCommand::Inspect { dir } => inspect::run(&dir, format),
        CaCommand::Crl { dir, valid_for } => crl::run(&dir, valid_for, format),
    }
}

fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(s).map_err(|e| e.to_string())
}

/// Validated here, not in `ca::init`, so a bad name is a usage error (exit 2) and nothing is
/// generated first.
fn parse_admin_name(s: &str) -> Result<String, String> {
    let probe = TrustDomain::new("example.org").expect("constant trust domain");
    match SpiffeId::admin(&probe, s) {
        // `a/b` would parse as a longer path, so insist the name came back as one segment.
        Ok(id) if id.kind() == IdKind::Admin(s) => Ok(s.to_owned()),
        _ => Err("use letters, digits, `.`, `-` and `_` only (one path segment)".into()),
    }
}

/// One file `ca init` wrote, and why it exists.
#[derive(Debug, Serialize)]
struct WrittenFile {
    file: String,
    path: String,
    purpose: &'static str,
    secret: bool,
}

#[derive(Debug, Serialize)]
struct InitReport {
    trust_domain: String,
    dir: String,
    admin_id: String,
    files: Vec<WrittenFile>,
}

fn init(td: TrustDomain, out: &Path, admin_name: String, format: Format) -> anyhow::Result<()> {
    let layout = CaLayout::new(out);
    let admin_id = SpiffeId::admin(&td, &admin_name).context("admin name")?;
    let opts = CaInitOptions {
        admin_name,
        ..CaInitOptions::new(td.clone())
    };
    ca::init(&layout, &opts).map_err(|e| explain_init_error(e, out))?;
    let report = InitReport {
        trust_domain: td.to_string(),
        dir: out.display().to_string(),
        admin_id: admin_id.to_string(),
        files: written_files(&layout),
    };
    match format {
        Format::Json => {
            // The key-custody advice matters too much to drop just because stdout is JSON.
            eprint!("{}", next_steps(&report.dir));
            output::print_json(&report)
        }
        Format::Table => output::print(&init_text(&report)),
    }
}

fn explain_init_error(err: CaError, out: &Path) -> anyhow::Error {
    match err {
        CaError::Exists { .. } => anyhow::anyhow!(
            "{err} — {} already holds a CA; pick another --out directory, or move the old files \
             away if you really mean to replace that CA",
            out.display()
        ),
        other => anyhow::Error::new(other).context(format!("creating the CA in {}", out.display())),
    }
}

fn written_files(layout: &CaLayout) -> Vec<WrittenFile> {
    let entry = |path: PathBuf, purpose, secret| WrittenFile {
        file: file_name(&path),
        path: path.display().to_string(),
        purpose,
        secret,
    };
    vec![
        entry(layout.root_cert(), "root CA certificate", false),
        entry(layout.root_key(), "root CA key: keep OFFLINE", true),
        entry(
            layout.intermediate_cert(),
            "intermediate CA certificate",
            false,
        ),
        entry(
            layout.intermediate_key(),
            "intermediate CA key: keep offline",
            true,
        ),
        entry(layout.issuing_cert(), "issuing CA certificate", false),
        entry(layout.issuing_key(), "issuing CA key: control plane", true),
        entry(
            layout.chain(),
            "issuing + intermediate: control plane",
            false,
        ),
        entry(layout.bundle(), "trust bundle: control plane, CLI", false),
        entry(
            layout.offline_crls(),
            "root + intermediate CRLs: control plane",
            false,
        ),
        entry(layout.admin_cert(), "admin certificate: ferrule CLI", false),
        entry(layout.admin_key(), "admin key: ferrule CLI", true),
    ]
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn init_text(report: &InitReport) -> String {
    let mut table = Table::new(&["FILE", "PURPOSE"]);
    for f in &report.files {
        table.row(vec![f.file.clone(), f.purpose.to_owned()]);
    }
    format!(
        "Created the CA for trust domain {} in {} (admin identity {}):\n\n{}\n{}",
        report.trust_domain,
        report.dir,
        report.admin_id,
        table.render(),
        next_steps(&report.dir)
    )
}

fn next_steps(dir: &str) -> String {
    format!(
        "Next steps:\n\
         - Move root.key OFF this machine now (offline storage). It is needed only to sign a new\n  \
           intermediate; intermediate.key is needed only to sign a new issuing CA. Neither\n  \
           belongs on the control plane.\n\
         - The control plane needs chain.pem, bundle.pem, ca-crls.pem and issuing.key.\n\
         - ca-crls.pem expires in 180 days: re-sign it with `ferrule ca crl --dir {dir}`\n  \
           where the offline keys are.\n\
         - The ferrule CLI authenticates with admin.crt and admin.key and trusts bundle.pem:\n  \
           export FERRULE_CA_DIR={dir}  (or pass --cert, --key, --bundle)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_name_must_be_one_path_segment() {
        assert!(parse_admin_name("alice").is_ok());
        assert!(parse_admin_name("a/b").is_err());
        assert!(parse_admin_name("").is_err());
        assert!(parse_admin_name("..").is_err());
    }
}
