//! Join tokens as node attestation: `fjt.<id>.<secret>`, single-use and expiring, issued by an
//! admin for one node name.

use std::sync::Arc;

use ferrule_proto::v1;

use crate::sources::{Attested, Attestor, JoinMethod, JoinRefusal, SourceError};
use crate::state::now;
use crate::store::{Store, TokenError};
use crate::token;

#[derive(Debug)]
pub struct JoinTokens {
    pub store: Arc<dyn Store>,
}

#[tonic::async_trait]
impl Attestor for JoinTokens {
    fn method(&self) -> JoinMethod {
        JoinMethod::JoinToken
    }

    async fn attest(&self, request: &v1::JoinRequest) -> Result<Attested, SourceError> {
        if request.token.is_empty() && !request.service_account_token.is_empty() {
            return Err(SourceError::refused(
                JoinRefusal::WrongCredential,
                "this control plane runs in standalone mode: nodes join with a join token \
                 (`ferrule node token`); service account tokens are not accepted",
            ));
        }
        let (token_id, secret_hash) = token::parse(&request.token)
            .map_err(|e| SourceError::refused(JoinRefusal::MalformedToken, e.to_string()))?;
        // A read first: only the holder of a live token's secret gets to queue a write.
        let checked = self
            .store
            .verify_token(&token_id, &secret_hash, now())
            .await;
        let token = match checked {
            Ok(()) => {
                self.store
                    .consume_token(&token_id, &secret_hash, now())
                    .await
            }
            Err(e) => Err(e),
        };
        let token = token.map_err(|e| {
            let reason = match &e {
                TokenError::Unknown => JoinRefusal::UnknownToken,
                TokenError::Used => JoinRefusal::UsedToken,
                TokenError::Expired => JoinRefusal::ExpiredToken,
                TokenError::Store(e) => {
                    return SourceError::Unavailable(format!("control-plane store: {e}"));
                }
            };
            SourceError::refused(reason, e.to_string())
        })?;
        Ok(Attested {
            node: token.node,
            allow: token.allow,
            pod_cidrs: token.pod_cidrs,
            evidence: format!("join token {token_id}"),
        })
    }
}
