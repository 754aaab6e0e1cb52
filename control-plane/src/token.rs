//! Join tokens: `fjt.<id>.<secret>`. The store keeps only the SHA-256 of the secret, so a stolen
//! database cannot join nodes.

use std::time::Duration;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::store::{JoinToken, UnixSeconds};

const PREFIX: &str = "fjt";
/// Far above what [`generate`] makes (16 and 64 hex digits); bounds what a guess costs.
const MAX_ID: usize = 64;
const MAX_SECRET: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed join token (expected fjt.<id>.<secret>)")]
pub struct MalformedToken;

/// A new token for `node`; returns the string to hand to the operator and the record to store.
pub fn generate(
    node: &str,
    allow: Vec<String>,
    pod_cidrs: Vec<IpNet>,
    ttl: Duration,
    now: UnixSeconds,
) -> (String, JoinToken) {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let record = JoinToken {
        id: id.clone(),
        secret_sha256: digest(&secret),
        node: node.to_owned(),
        allow,
        pod_cidrs,
        created_at: now,
        expires_at: now + ttl.as_secs(),
    };
    (format!("{PREFIX}.{id}.{secret}"), record)
}

/// Splits a token into its id and the digest of its secret.
pub fn parse(token: &str) -> Result<(String, [u8; 32]), MalformedToken> {
    let mut parts = token.trim().split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(PREFIX), Some(id), Some(secret), None)
            if (1..=MAX_ID).contains(&id.len()) && (32..=MAX_SECRET).contains(&secret.len()) =>
        {
            Ok((id.to_owned(), digest(secret)))
        }
        _ => Err(MalformedToken),
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_parses_to_its_record() {
        let (token, record) = generate("n1", vec![], vec![], Duration::from_secs(60), 1000);
        let (id, hash) = parse(&token).unwrap();
        assert_eq!(id, record.id);
        assert_eq!(hash, record.secret_sha256);
        assert_eq!(record.expires_at, 1060);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        for bad in [
            "",
            "fjt",
            "fjt.a",
            "xyz.a.0123456789abcdef0123456789abcdef",
            "fjt..0123456789abcdef0123456789abcdef",
            "fjt.a.short",
            "fjt.a.b.c",
        ]
        .map(String::from)
        .into_iter()
        .chain([
            format!("fjt.{}.0123456789abcdef0123456789abcdef", "a".repeat(65)),
            format!("fjt.a.{}", "0".repeat(257)),
        ]) {
            assert_eq!(parse(&bad), Err(MalformedToken), "{bad:?}");
        }
    }
}
