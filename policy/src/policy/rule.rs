//! A policy's rules: which sources (`from`) on which destination ports they match.

use std::fmt;
use std::str::FromStr;

use ferrule_identity::{IdKind, IdPattern, SpiffeId, SpiffeIdError, TrustDomain};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::{Parsed, checked_map, non_empty_list};
use crate::names::DnsLabel;

use super::port::PortRange;

/// One rule. It matches a request when the port is in `ports` (if given) and the source
/// matches any entry of `from` (if given); `{}` matches every authenticated request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(
        default,
        deserialize_with = "super::null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    from: Vec<Source>,
    #[serde(
        default,
        deserialize_with = "non_empty_ports",
        skip_serializing_if = "Option::is_none"
    )]
    ports: Option<Vec<PortRange>>,
}

impl Rule {
    /// Empty: any authenticated source.
    pub fn from(&self) -> &[Source] {
        &self.from
    }

    /// `None`: any port.
    pub fn ports(&self) -> Option<&[PortRange]> {
        self.ports.as_deref()
    }

    /// `local_trust_domain` is the destination's, for `namespace` entries without `trustDomain`.
    pub fn matches(&self, source: &SpiffeId, local_trust_domain: &str, port: u16) -> bool {
        self.ports
            .as_ref()
            .is_none_or(|ports| ports.iter().any(|range| range.contains(port)))
            && (self.from.is_empty()
                || self
                    .from
                    .iter()
                    .any(|entry| entry.matches(source, local_trust_domain)))
    }
}

pub(super) const NO_RULES: &str = "a policy needs at least one rule (a rule with neither `from` \
                                   nor `ports`, `rules: [{}]`, matches all traffic)";

fn non_empty_ports<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<PortRange>>, D::Error> {
    non_empty_list(
        d,
        "an empty port list would match no port; leave `ports` out to match any port",
    )
}

/// One `from` entry. Every key it gives must match the source (AND); a rule's entries are
/// alternatives (OR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<IdentityMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<DnsLabel>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_trust_domain"
    )]
    trust_domain: Option<TrustDomain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceFields {
    #[serde(default)]
    identity: Option<IdentityMatch>,
    #[serde(default)]
    namespace: Option<DnsLabel>,
    #[serde(default, deserialize_with = "deserialize_trust_domain")]
    trust_domain: Option<TrustDomain>,
}

impl SourceFields {
    fn check(self) -> Result<Source, &'static str> {
        if self.identity.is_none() && self.namespace.is_none() && self.trust_domain.is_none() {
            return Err(
                "an empty `from` entry is not allowed: give `identity`, `namespace` \
                 and/or `trustDomain` (leave `from` out to match any source)",
            );
        }
        Ok(Source {
            identity: self.identity,
            namespace: self.namespace,
            trust_domain: self.trust_domain,
        })
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked_map(deserializer, "a `from` entry", SourceFields::check)
    }
}

impl Source {
    pub fn identity(&self) -> Option<&IdentityMatch> {
        self.identity.as_ref()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_ref().map(DnsLabel::as_str)
    }

    pub fn trust_domain(&self) -> Option<&TrustDomain> {
        self.trust_domain.as_ref()
    }

    pub fn matches(&self, source: &SpiffeId, local_trust_domain: &str) -> bool {
        let source_td = source.trust_domain_str();
        if let Some(identity) = &self.identity
            && !identity.matches(source)
        {
            return false;
        }
        if let Some(td) = &self.trust_domain
            && td.as_str() != source_td
        {
            return false;
        }
        if let Some(wanted) = &self.namespace {
            // Without `trustDomain` in the same entry, a namespace means the destination's own.
            let td = self
                .trust_domain
                .as_ref()
                .map_or(local_trust_domain, TrustDomain::as_str);
            let in_namespace = matches!(source.kind(),
                IdKind::Workload { namespace, .. } if namespace == wanted.as_str());
            if source_td != td || !in_namespace {
                return false;
            }
        }
        true
    }
}

fn serialize_trust_domain<S: Serializer>(
    td: &Option<TrustDomain>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match td {
        Some(td) => serializer.serialize_str(td.as_str()),
        None => serializer.serialize_none(),
    }
}

fn deserialize_trust_domain<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<TrustDomain>, D::Error> {
    Ok(Option::<Parsed<TrustDomain>>::deserialize(d)?.map(|Parsed(td)| td))
}

/// `identity:` an exact SPIFFE ID, or a glob when it contains `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityMatch {
    Exact(SpiffeId),
    Glob(IdPattern),
}

impl IdentityMatch {
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdentityMatch::Exact(exact) => exact == id,
            IdentityMatch::Glob(pattern) => pattern.matches(id),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            IdentityMatch::Exact(id) => id.as_str(),
            IdentityMatch::Glob(pattern) => pattern.as_str(),
        }
    }
}

impl FromStr for IdentityMatch {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, SpiffeIdError> {
        if s.contains('*') {
            IdPattern::parse(s).map(IdentityMatch::Glob)
        } else {
            SpiffeId::parse(s).map(IdentityMatch::Exact)
        }
    }
}

impl fmt::Display for IdentityMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for IdentityMatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentityMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Parsed::deserialize(deserializer).map(|Parsed(identity)| identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn source(yaml: &str) -> Source {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    const LOCAL: &str = "example.org";

    #[test]
    fn exact_identity_matches_only_that_identity() {
        let entry = source("identity: spiffe://example.org/ns/web/sa/frontend");
        assert!(entry.matches(&id("spiffe://example.org/ns/web/sa/frontend"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/ns/web/sa/frontend2"), LOCAL));
        assert!(!entry.matches(&id("spiffe://other.org/ns/web/sa/frontend"), LOCAL));
        assert!(matches!(entry.identity(), Some(IdentityMatch::Exact(_))));
    }

    #[test]
    fn glob_identity_matches_by_pattern() {
        let entry = source("identity: spiffe://example.org/ns/web/sa/*");
        assert!(matches!(entry.identity(), Some(IdentityMatch::Glob(_))));
        assert!(entry.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL));
        assert!(entry.matches(&id("spiffe://example.org/ns/web/sa/b"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/ns/webx/sa/a"), LOCAL));
        assert!(!entry.matches(&id("spiffe://partner.org/ns/web/sa/a"), LOCAL));
    }

    /// Issue 12 finding 3: `*` crossed `/`, so `*/sa/web` also matched a smuggled
    /// `ns/a/sa/x/sa/web`. A glob's `*` now stays within one path segment.
    #[test]
    fn glob_star_stays_within_one_segment() {
        let entry = source("identity: 'spiffe://example.org/ns/*/sa/web'");
        assert!(entry.matches(&id("spiffe://example.org/ns/shop/sa/web"), LOCAL));
        for other in [
            "spiffe://example.org/ns/a/sa/x/sa/web",
            "spiffe://example.org/ns/a/b/sa/web",
        ] {
            assert!(!entry.matches(&id(other), LOCAL), "{other}");
        }
        let entry = source("identity: 'spiffe://example.org/*/sa/web'");
        assert!(!entry.matches(&id("spiffe://example.org/ns/a/sa/x/sa/web"), LOCAL));
    }

    #[test]
    fn namespace_means_the_destinations_trust_domain() {
        let entry = source("namespace: web");
        assert!(entry.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL));
        assert!(
            !entry.matches(&id("spiffe://partner.org/ns/web/sa/a"), LOCAL),
            "a namespace of the same name in another trust domain is someone else's"
        );
        assert!(!entry.matches(&id("spiffe://example.org/ns/shop/sa/a"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/node/web"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/ns/web/sa/a/extra"), LOCAL));
    }

    #[test]
    fn namespace_with_trust_domain_means_that_trust_domain() {
        let entry = source("{namespace: web, trustDomain: partner.org}");
        assert!(entry.matches(&id("spiffe://partner.org/ns/web/sa/a"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL));
        assert!(!entry.matches(&id("spiffe://partner.org/ns/shop/sa/a"), LOCAL));
    }

    #[test]
    fn trust_domain_matches_any_identity_in_it() {
        let entry = source("trustDomain: partner.org");
        assert!(entry.matches(&id("spiffe://partner.org/ns/x/sa/y"), LOCAL));
        assert!(entry.matches(&id("spiffe://partner.org/node/n1"), LOCAL));
        assert!(!entry.matches(&id("spiffe://example.org/ns/x/sa/y"), LOCAL));
    }

    #[test]
    fn keys_of_one_entry_must_all_match() {
        let entry = source(
            "{identity: 'spiffe://partner.org/ns/*/sa/*', namespace: web, trustDomain: partner.org}",
        );
        assert!(entry.matches(&id("spiffe://partner.org/ns/web/sa/a"), LOCAL));
        assert!(
            !entry.matches(&id("spiffe://partner.org/ns/api/sa/a"), LOCAL),
            "namespace differs"
        );
        let entry =
            source("{identity: 'spiffe://example.org/ns/web/sa/*', trustDomain: partner.org}");
        assert!(
            !entry.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL),
            "identity matches but trust domain does not"
        );
    }

    #[test]
    fn ports_restrict_a_rule() {
        let rule: Rule = serde_norway::from_str("ports: [8080, 9000-9100]").unwrap();
        let src = id("spiffe://example.org/ns/web/sa/a");
        for (port, expected) in [
            (8080, true),
            (8081, false),
            (8999, false),
            (9000, true),
            (9100, true),
            (9101, false),
        ] {
            assert_eq!(rule.matches(&src, LOCAL, port), expected, "port {port}");
        }
    }

    #[test]
    fn rule_without_from_or_ports_matches_everything() {
        let rule: Rule = serde_norway::from_str("{}").unwrap();
        assert!(rule.matches(&id("spiffe://any.org/x"), LOCAL, 1));
        let rule: Rule = serde_norway::from_str("from: []").unwrap();
        assert!(
            rule.from().is_empty(),
            "an empty `from` list means any source"
        );
    }

    #[test]
    fn rule_needs_port_and_any_source_entry() {
        let rule: Rule = serde_norway::from_str(
            "{from: [{namespace: web}, {trustDomain: partner.org}], ports: [443]}",
        )
        .unwrap();
        assert!(rule.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL, 443));
        assert!(rule.matches(&id("spiffe://partner.org/ns/x/sa/a"), LOCAL, 443));
        assert!(!rule.matches(&id("spiffe://example.org/ns/web/sa/a"), LOCAL, 80));
        assert!(!rule.matches(&id("spiffe://example.org/ns/api/sa/a"), LOCAL, 443));
    }
}
