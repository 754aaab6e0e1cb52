//! Join tokens in etcd. Consuming one is a compare-and-swap on the token's modification
//! revision: of replicas presenting the same token at the same instant, exactly one transaction
//! succeeds, and the others re-read it as used.

use etcd_client::{Compare, CompareOp, TxnOp};
use serde::{Deserialize, Serialize};

use super::records::delete_if_unchanged;
use super::{EtcdStore, decode, encode};
use crate::store::{
    JoinToken, StoreError, TokenError, UnixSeconds, check_token, token_is_prunable,
};

/// Attempts of a consume that keeps losing races to unrelated writes of the same key (none
/// exist today: only consumption writes an existing token).
const CONSUME_ATTEMPTS: usize = 5;

#[derive(Debug, Serialize, Deserialize)]
struct StoredToken {
    token: JoinToken,
    used: bool,
}

pub(super) async fn create(store: &EtcdStore, token: JoinToken) -> Result<(), StoreError> {
    let key = store.keys.token(&token.id);
    let value = encode(&StoredToken {
        token: token.clone(),
        used: false,
    })?;
    let response = store
        .write(
            vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)],
            vec![TxnOp::put(key, value, None)],
            "create a join token",
        )
        .await?;
    if !response.succeeded() {
        return Err(StoreError::AlreadyExists {
            table: "tokens",
            key: token.id,
        });
    }
    Ok(())
}

pub(super) async fn consume(
    store: &EtcdStore,
    id: &str,
    secret_sha256: &[u8; 32],
    now: UnixSeconds,
) -> Result<JoinToken, TokenError> {
    let key = store.keys.token(id);
    for _ in 0..CONSUME_ATTEMPTS {
        let Some(kv) = store.get(&key, "read a join token").await? else {
            return Err(TokenError::Unknown);
        };
        let stored: StoredToken = decode("tokens", &kv)?;
        check_token(&stored.token, stored.used, secret_sha256, now)?;
        let used = encode(&StoredToken {
            token: stored.token.clone(),
            used: true,
        })?;
        let unchanged = Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision());
        let consumed = store
            .write(
                vec![unchanged],
                vec![TxnOp::put(key.clone(), used, None)],
                "consume a join token",
            )
            .await?;
        if consumed.succeeded() {
            return Ok(stored.token);
        }
    }
    Err(TokenError::Store(StoreError::Backend {
        action: "consume a join token",
        source: "the token kept changing while being consumed".into(),
    }))
}

pub(super) async fn verify(
    store: &EtcdStore,
    id: &str,
    secret_sha256: &[u8; 32],
    now: UnixSeconds,
) -> Result<(), TokenError> {
    let Some(kv) = store
        .get(&store.keys.token(id), "read a join token")
        .await?
    else {
        return Err(TokenError::Unknown);
    };
    let stored: StoredToken = decode("tokens", &kv)?;
    check_token(&stored.token, stored.used, secret_sha256, now)
}

pub(super) async fn prune(store: &EtcdStore, now: UnixSeconds) -> Result<usize, StoreError> {
    let mut pruned = 0;
    for kv in store.list(&store.keys.tokens(), "list join tokens").await? {
        let stored: StoredToken = decode("tokens", &kv)?;
        if !token_is_prunable(stored.token.expires_at, now) {
            continue;
        }
        pruned += usize::from(delete_if_unchanged(store, &kv, "prune a join token").await?);
    }
    Ok(pruned)
}
