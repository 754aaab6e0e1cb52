//! Revoked certificates and identities as every verifier sees them. The control plane pushes
//! the list; [`crate::TrustBundle::verify`] consults it after the chain checks, so a revoked
//! certificate fails a handshake with the `revoked` reason wherever the bundle is used.

use std::collections::HashSet;

use crate::verify::{VerifiedSvid, VerifyError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Certificate serials, lower-case hex without leading zeros (as [`VerifiedSvid::serial`]).
    serials: HashSet<String>,
    /// SPIFFE IDs none of whose certificates is accepted (a node's is its node identity).
    identities: HashSet<String>,
}

impl RevocationList {
    pub fn new(
        serials: impl IntoIterator<Item = String>,
        identities: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            serials: serials.into_iter().map(|s| normalize_serial(&s)).collect(),
            identities: identities.into_iter().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty() && self.identities.is_empty()
    }

    pub fn len(&self) -> usize {
        self.serials.len() + self.identities.len()
    }

    pub fn serial_revoked(&self, serial: &str) -> bool {
        !self.serials.is_empty() && self.serials.contains(&normalize_serial(serial))
    }

    pub fn identity_revoked(&self, id: &str) -> bool {
        self.identities.contains(id)
    }

    pub fn identities(&self) -> impl Iterator<Item = &str> {
        self.identities.iter().map(String::as_str)
    }

    pub fn check(&self, svid: &VerifiedSvid) -> Result<(), VerifyError> {
        if self.serial_revoked(&svid.serial) || self.identity_revoked(svid.id.as_str()) {
            return Err(VerifyError::Revoked);
        }
        Ok(())
    }
}

/// Serials are compared as the verifier prints them: lower-case hex, no leading zero bytes.
pub fn normalize_serial(serial: &str) -> String {
    let lower = serial.trim().to_ascii_lowercase();
    let trimmed = lower.trim_start_matches("00");
    if trimmed.is_empty() {
        "00".into()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpiffeId;
    use std::time::SystemTime;

    fn svid(id: &str, serial: &str) -> VerifiedSvid {
        VerifiedSvid {
            id: SpiffeId::parse(id).unwrap(),
            serial: serial.into(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn refuses_listed_serials_and_identities_only() {
        let list = RevocationList::new(
            ["00AB12".to_string()],
            ["spiffe://example.org/node/n1".to_string()],
        );
        let revoked = [
            svid("spiffe://example.org/ns/a/sa/b", "ab12"),
            svid("spiffe://example.org/node/n1", "01"),
        ];
        for s in &revoked {
            assert!(matches!(list.check(s), Err(VerifyError::Revoked)), "{s:?}");
        }
        assert!(
            list.check(&svid("spiffe://example.org/ns/a/sa/b", "ab13"))
                .is_ok()
        );
        assert_eq!(list.len(), 2);
    }
}
