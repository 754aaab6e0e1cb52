//! Standalone mode's sources: nodes join with single-use join tokens whose allow patterns say
//! what they may sign, agents register their pods, and policies live in the config store.

mod join_tokens;
mod policies;
mod registry;

use std::sync::Arc;

use ferrule_identity::{IdPattern, SpiffeId};

use crate::sources::{Entitlements, SourceError, Sources};
use crate::store::{NodeRecord, Store};

pub use join_tokens::JoinTokens;
pub use policies::ConfigPolicies;
pub use registry::AgentRegistry;

/// The sources of standalone mode.
pub fn sources(store: Arc<dyn Store>) -> Sources {
    Sources {
        attestor: Arc::new(JoinTokens { store }),
        entitlements: Arc::new(AllowPatterns),
        workloads: Arc::new(AgentRegistry),
        policies: Arc::new(ConfigPolicies),
    }
}

/// A node may obtain the identities its join token's patterns allow. Patterns are checked to be
/// workload-shaped when the token is created; a stored one that no longer parses grants nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowPatterns;

impl Entitlements for AllowPatterns {
    fn workload(&self, node: &NodeRecord, id: &SpiffeId) -> Result<bool, SourceError> {
        Ok(node
            .allow
            .iter()
            .filter_map(|p| IdPattern::parse(p).ok())
            .any(|p| p.matches(id)))
    }
}
