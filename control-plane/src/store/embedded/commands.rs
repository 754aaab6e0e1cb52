//! The mutations the writer thread applies, one type each.

use redb::ReadableTable;
use serde::Serialize;

use super::{Command, Tables, backend, decode, encode};
use crate::store::{
    CertificateRecord, JoinToken, StoreError, TokenError, UnixSeconds, check_token,
    token_is_prunable,
};

/// A token as stored: `used_at` is set once, by the winning `consume_token`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(super) struct StoredToken {
    pub(super) token: JoinToken,
    pub(super) used_at: Option<UnixSeconds>,
}

pub(super) struct CreateToken(pub(super) JoinToken);

impl Command for CreateToken {
    type Output = Result<(), StoreError>;

    fn apply(&self, t: &mut Tables<'_>) -> Result<Self::Output, StoreError> {
        let id = self.0.id.as_str();
        if t.tokens.get(id).map_err(backend("read a token"))?.is_some() {
            return Ok(Err(StoreError::AlreadyExists {
                table: "token",
                key: id.to_owned(),
            }));
        }
        let stored = StoredToken {
            token: self.0.clone(),
            used_at: None,
        };
        t.tokens
            .insert(id, encode(&stored)?.as_slice())
            .map_err(backend("write a token"))?;
        Ok(Ok(()))
    }
}

pub(super) struct ConsumeToken {
    pub(super) id: String,
    pub(super) secret_sha256: [u8; 32],
    pub(super) now: UnixSeconds,
}

impl Command for ConsumeToken {
    type Output = Result<JoinToken, TokenError>;

    fn apply(&self, t: &mut Tables<'_>) -> Result<Self::Output, StoreError> {
        let id = self.id.as_str();
        let Some(value) = t.tokens.get(id).map_err(backend("read a token"))? else {
            return Ok(Err(TokenError::Unknown));
        };
        let mut stored: StoredToken = decode("token", id, value.value())?;
        drop(value);
        let used = stored.used_at.is_some();
        if let Err(refused) = check_token(&stored.token, used, &self.secret_sha256, self.now) {
            return Ok(Err(refused));
        }
        stored.used_at = Some(self.now);
        t.tokens
            .insert(id, encode(&stored)?.as_slice())
            .map_err(backend("mark a token used"))?;
        Ok(Ok(stored.token))
    }
}

pub(super) struct PruneTokens {
    pub(super) now: UnixSeconds,
}

impl Command for PruneTokens {
    type Output = usize;

    fn apply(&self, t: &mut Tables<'_>) -> Result<usize, StoreError> {
        // Join tokens are few (one per node joining), so a scan is cheap.
        let mut prunable = Vec::new();
        for entry in t.tokens.iter().map_err(backend("list tokens"))? {
            let (id, value) = entry.map_err(backend("list tokens"))?;
            let stored: StoredToken = decode("token", id.value(), value.value())?;
            if token_is_prunable(stored.token.expires_at, self.now) {
                prunable.push(stored.token.id);
            }
        }
        for id in &prunable {
            t.tokens
                .remove(id.as_str())
                .map_err(backend("remove a token"))?;
        }
        Ok(prunable.len())
    }
}

pub(super) struct PutNode {
    pub(super) name: String,
    pub(super) value: Vec<u8>,
}

impl Command for PutNode {
    type Output = ();

    fn apply(&self, t: &mut Tables<'_>) -> Result<(), StoreError> {
        t.nodes
            .insert(self.name.as_str(), self.value.as_slice())
            .map_err(backend("write a node"))?;
        Ok(())
    }
}

pub(super) struct DeleteNode {
    pub(super) name: String,
}

impl Command for DeleteNode {
    type Output = bool;

    fn apply(&self, t: &mut Tables<'_>) -> Result<bool, StoreError> {
        let removed = t
            .nodes
            .remove(self.name.as_str())
            .map_err(backend("delete a node"))?;
        Ok(removed.is_some())
    }
}

pub(super) struct RecordCertificate {
    pub(super) serial: String,
    pub(super) not_after: UnixSeconds,
    pub(super) value: Vec<u8>,
}

impl Command for RecordCertificate {
    type Output = ();

    fn apply(&self, t: &mut Tables<'_>) -> Result<(), StoreError> {
        let serial = self.serial.as_str();
        let replaced = t
            .certificates
            .insert(serial, self.value.as_slice())
            .map_err(backend("write a certificate"))?
            .map(|old| decode::<CertificateRecord>("certificate", serial, old.value()))
            .transpose()?;
        // Serials are unique in practice; if one is recorded again, keep the index consistent.
        if let Some(old) = replaced {
            t.by_expiry
                .remove((old.not_after, serial))
                .map_err(backend("update the certificate expiry index"))?;
        }
        t.by_expiry
            .insert((self.not_after, serial), ())
            .map_err(backend("update the certificate expiry index"))?;
        Ok(())
    }
}

pub(super) struct PruneCertificates {
    pub(super) before: UnixSeconds,
}

impl Command for PruneCertificates {
    type Output = usize;

    fn apply(&self, t: &mut Tables<'_>) -> Result<usize, StoreError> {
        // (before, "") is the smallest key with not_after == before, so this is not_after < before.
        let range = t
            .by_expiry
            .range::<(u64, &str)>(..(self.before, ""))
            .map_err(backend("scan the certificate expiry index"))?;
        let expired = range
            .map(|entry| {
                let (key, _) = entry.map_err(backend("scan the certificate expiry index"))?;
                let (not_after, serial) = key.value();
                Ok((not_after, serial.to_owned()))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        for (not_after, serial) in &expired {
            t.by_expiry
                .remove((*not_after, serial.as_str()))
                .map_err(backend("prune the certificate expiry index"))?;
            t.certificates
                .remove(serial.as_str())
                .map_err(backend("prune certificates"))?;
        }
        Ok(expired.len())
    }
}
