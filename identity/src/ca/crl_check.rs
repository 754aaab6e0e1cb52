//! Checks a file of offline CAs' CRLs (`ca-crls.pem`) before anyone relies on it: every block
//! must be a CRL whose signature verifies against one of the given roots or intermediates. The
//! control plane runs this before serving the file, `ferrule check` before an operator ships it.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

/// One checked CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCrl {
    /// `root` or `intermediate`: which of the given CAs signed it.
    pub role: &'static str,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Unix seconds.
    pub next_update: i64,
    /// The CRL as one PEM block.
    pub pem: String,
}

/// Every CRL of `pem_text`, in order; the first problem (with its block number) otherwise.
pub fn check_offline_crls(
    pem_text: &[u8],
    roots: &[CertificateDer<'_>],
    intermediates: &[CertificateDer<'_>],
) -> Result<Vec<CheckedCrl>, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    if blocks.is_empty() {
        return Err("no X509 CRL block (sign them with `ferrule ca crl`)".into());
    }
    let cas: Vec<_> = roots
        .iter()
        .map(|c| ("root", c))
        .chain(intermediates.iter().map(|c| ("intermediate", c)))
        .filter_map(|(role, der)| Some((role, X509Certificate::from_der(der).ok()?.1)))
        .collect();
    blocks
        .iter()
        .enumerate()
        .map(|(index, block)| {
            check_block(block, &cas).map_err(|e| format!("PEM block {index}: {e}"))
        })
        .collect()
}

fn check_block(
    block: &pem::Pem,
    cas: &[(&'static str, X509Certificate<'_>)],
) -> Result<CheckedCrl, String> {
    if block.tag() != "X509 CRL" {
        return Err(format!(
            "a {} block, not an X509 CRL (expected the ca-crls.pem of `ferrule ca init` or `ferrule ca crl`)",
            block.tag()
        ));
    }
    let (_, crl) = CertificateRevocationList::from_der(block.contents())
        .map_err(|e| format!("not a valid CRL: {e}"))?;
    let issuer = crl.issuer().to_string();
    // Several CAs may share a name (old and new root during a rotation): the signature decides.
    let mut named = cas
        .iter()
        .filter(|(_, cert)| cert.subject() == crl.issuer())
        .peekable();
    if named.peek().is_none() {
        return Err(format!(
            "issued by {issuer:?}, neither a root of the trust bundle nor an intermediate of the chain"
        ));
    }
    let role = named
        .find(|(_, cert)| crl.verify_signature(cert.public_key()).is_ok())
        .map(|(role, _)| *role)
        .ok_or_else(|| format!("signature of {issuer:?} does not verify against that CA's key"))?;
    let next_update = crl
        .next_update()
        .ok_or_else(|| format!("the CRL of {issuer:?} has no next update"))?;
    Ok(CheckedCrl {
        role,
        issuer,
        next_update: next_update.timestamp(),
        pem: crate::pem_block(block.tag(), block.contents()),
    })
}
