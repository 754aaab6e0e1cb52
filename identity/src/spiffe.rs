//! SPIFFE IDs (`spiffe://<trust-domain>/<path>`) as the SPIFFE-ID standard defines them, and the
//! glob patterns that say which identities a node may request and which sources a policy names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SCHEME: &str = "spiffe://";
/// The standard caps a SPIFFE ID at 2048 bytes; the trust domain at 255.
const MAX_ID_LEN: usize = 2048;
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a SPIFFE ID, a trust domain or an identity pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("a SPIFFE ID must start with `spiffe://`: {0:?}")]
    MissingScheme(String),
    #[error("the trust domain is empty")]
    EmptyTrustDomain,
    #[error("the trust domain {0:?} may hold only lowercase letters, digits, `.`, `-` and `_`")]
    BadTrustDomain(String),
    #[error(
        "the path {0:?} has an empty, `.` or `..` segment, or a character outside [A-Za-z0-9.-_]"
    )]
    BadPath(String),
    #[error("the ID is longer than 2048 bytes")]
    TooLong,
    #[error("a pattern may use `*` only after the trust domain: {0:?}")]
    WildcardTrustDomain(String),
    #[error(
        "{0:?} is not a workload pattern: it must have the form \
         spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, where `*` matches within \
         one segment (for every service account of a namespace: .../ns/<namespace>/sa/*)"
    )]
    NotWorkloadPattern(String),
}

/// A validated trust domain name such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.is_empty() {
            return Err(SpiffeIdError::EmptyTrustDomain);
        }
        let valid = name.len() <= MAX_TRUST_DOMAIN_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !valid {
            return Err(SpiffeIdError::BadTrustDomain(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<td>`, the trust domain's own ID, used as the SAN of CA certificates.
    pub fn id_uri(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A workload, node or service identity: `spiffe://<trust-domain>/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte offset where the path starts (the `/` after the trust domain).
    path_start: usize,
}

/// What an identity names, by the path conventions Ferrule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind<'a> {
    Workload {
        namespace: &'a str,
        service_account: &'a str,
    },
    Node(&'a str),
    ControlPlane,
    Admin(&'a str),
    Other,
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::MissingScheme(s.to_owned()))?;
        let td_end = rest.find('/').unwrap_or(rest.len());
        TrustDomain::new(&rest[..td_end])?;
        let path = &rest[td_end..];
        if !path.is_empty() && !valid_path(path) {
            return Err(SpiffeIdError::BadPath(path.to_owned()));
        }
        Ok(Self {
            uri: s.to_owned(),
            path_start: SCHEME.len() + td_end,
        })
    }

    /// Each part becomes exactly one path segment; a part holding `/` is refused rather than
    /// silently becoming several segments (a node named `a/b` must not mint `/node/a/b`).
    fn from_parts(td: &TrustDomain, segments: &[&str]) -> Result<Self, SpiffeIdError> {
        let mut uri = td.id_uri();
        for segment in segments {
            if segment.contains('/') {
                return Err(SpiffeIdError::BadPath(segments.join("/")));
            }
            uri.push('/');
            uri.push_str(segment);
        }
        Self::parse(&uri)
    }

    /// `spiffe://<td>/ns/<namespace>/sa/<service-account>`
    pub fn workload(
        td: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        Self::from_parts(td, &["ns", namespace, "sa", service_account])
    }

    /// `spiffe://<td>/node/<name>`
    pub fn node(td: &TrustDomain, name: &str) -> Result<Self, SpiffeIdError> {
        Self::from_parts(td, &["node", name])
    }

    /// `spiffe://<td>/ferrule/control-plane`
    pub fn control_plane(td: &TrustDomain) -> Self {
        Self::from_parts(td, &["ferrule", "control-plane"]).expect("constant path is valid")
    }

    /// `spiffe://<td>/ferrule/admin/<name>`
    pub fn admin(td: &TrustDomain, name: &str) -> Result<Self, SpiffeIdError> {
        Self::from_parts(td, &["ferrule", "admin", name])
    }

    pub fn as_str(&self) -> &str {
        &self.uri
    }

    pub fn trust_domain_str(&self) -> &str {
        &self.uri[SCHEME.len()..self.path_start]
    }

    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().to_owned())
    }

    pub fn path(&self) -> &str {
        &self.uri[self.path_start..]
    }

    /// Allocation-free: authorization classifies the source of every new stream.
    pub fn kind(&self) -> IdKind<'_> {
        let mut segments = self.path().split('/').skip(1);
        let mut next = || segments.next();
        match (next(), next(), next(), next(), next()) {
            (Some("ns"), Some(namespace), Some("sa"), Some(service_account), None) => {
                IdKind::Workload {
                    namespace,
                    service_account,
                }
            }
            (Some("node"), Some(name), None, ..) => IdKind::Node(name),
            (Some("ferrule"), Some("control-plane"), None, ..) => IdKind::ControlPlane,
            (Some("ferrule"), Some("admin"), Some(name), None, _) => IdKind::Admin(name),
            _ => IdKind::Other,
        }
    }
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path[1..].split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.uri)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A SPIFFE ID pattern where `*` matches any run of characters within one path segment, never
/// a `/`: `spiffe://example.org/ns/shop/sa/*` matches every service account of namespace `shop`
/// but not `.../ns/shop/sa/x/sa/web`. The trust domain is always literal, so a pattern can never
/// grant identities of another trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdPattern {
    pattern: String,
    path_start: usize,
}

impl IdPattern {
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| SpiffeIdError::MissingScheme(s.to_owned()))?;
        let td_end = rest.find('/').unwrap_or(rest.len());
        let td = &rest[..td_end];
        if td.contains('*') {
            return Err(SpiffeIdError::WildcardTrustDomain(s.to_owned()));
        }
        TrustDomain::new(td)?;
        // The path must be a valid SPIFFE path once each `*` stands for one character.
        let path = &rest[td_end..];
        if !path.is_empty() && !valid_path(&path.replace('*', "x")) {
            return Err(SpiffeIdError::BadPath(path.to_owned()));
        }
        Ok(Self {
            pattern: s.to_owned(),
            path_start: SCHEME.len() + td_end,
        })
    }

    /// A pattern that names workload identities only (`/ns/<namespace>/sa/<service-account>`,
    /// each of the two possibly with `*`): what a node may be allowed to request.
    pub fn parse_workload(s: &str) -> Result<Self, SpiffeIdError> {
        let pattern = Self::parse(s)?;
        let segments: Vec<&str> = pattern.path().split('/').skip(1).collect();
        match segments.as_slice() {
            ["ns", _, "sa", _] => Ok(pattern),
            _ => Err(SpiffeIdError::NotWorkloadPattern(s.to_owned())),
        }
    }

    pub fn trust_domain_str(&self) -> &str {
        &self.pattern[SCHEME.len()..self.path_start]
    }

    fn path(&self) -> &str {
        &self.pattern[self.path_start..]
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        self.trust_domain_str() == id.trust_domain_str() && glob_match(self.path(), id.path())
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl FromStr for IdPattern {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Glob match of a path where `*` matches any (possibly empty) run of bytes within one segment:
/// it never matches `/`, so a pattern fixes the number of segments (shell `fnmatch` with
/// `FNM_PATHNAME`, without classes). Segment by segment, each with greedy matching and
/// backtracking to its last star: linear time.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut patterns = pattern.split('/');
    let mut segments = text.split('/');
    loop {
        match (patterns.next(), segments.next()) {
            (None, None) => return true,
            (Some(p), Some(t)) if segment_match(p.as_bytes(), t.as_bytes()) => {}
            _ => return false,
        }
    }
}

fn segment_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut last_star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            last_star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = last_star {
            pi = star_pi + 1;
            ti = star_ti + 1;
            last_star = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn parses_and_classifies_ids() {
        let id = SpiffeId::parse("spiffe://example.org/ns/shop/sa/web").unwrap();
        assert_eq!(id.trust_domain_str(), "example.org");
        assert_eq!(id.path(), "/ns/shop/sa/web");
        assert_eq!(
            id.kind(),
            IdKind::Workload {
                namespace: "shop",
                service_account: "web"
            }
        );
        assert_eq!(
            SpiffeId::node(&td(), "n1").unwrap().kind(),
            IdKind::Node("n1")
        );
        assert_eq!(SpiffeId::control_plane(&td()).kind(), IdKind::ControlPlane);
        assert_eq!(
            SpiffeId::admin(&td(), "ops").unwrap().kind(),
            IdKind::Admin("ops")
        );
        for other in [
            "spiffe://example.org",
            "spiffe://example.org/ns/shop/sa/web/extra",
            "spiffe://example.org/ns/shop/sb/web",
            "spiffe://example.org/ns/shop",
            "spiffe://example.org/node/n1/x",
            "spiffe://example.org/ferrule/admin",
        ] {
            let id = SpiffeId::parse(other).unwrap();
            assert_eq!(id.kind(), IdKind::Other, "{other}");
        }
        assert!(
            SpiffeId::node(&td(), "a/b").is_err(),
            "one segment per part"
        );
        assert!(SpiffeId::workload(&td(), "ns", "sa/x").is_err());
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "http://example.org/a",
            "spiffe://",
            "spiffe://Example.org/a",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a?b",
            "spiffe://example.org:443/a",
            "spiffe://user@example.org/a",
            "spiffe://example.org/a#frag",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            SpiffeId::parse(&format!("spiffe://a/{}", "x".repeat(2100))),
            Err(SpiffeIdError::TooLong)
        );
    }

    #[test]
    fn pattern_matches_within_its_trust_domain_only() {
        let p = IdPattern::parse("spiffe://example.org/ns/shop/sa/*").unwrap();
        let yes = SpiffeId::parse("spiffe://example.org/ns/shop/sa/web").unwrap();
        let other_ns = SpiffeId::parse("spiffe://example.org/ns/shopx/sa/web").unwrap();
        let other_td = SpiffeId::parse("spiffe://evil.org/ns/shop/sa/web").unwrap();
        assert!(p.matches(&yes));
        assert!(!p.matches(&other_ns));
        assert!(!p.matches(&other_td));
        let exact = IdPattern::parse("spiffe://example.org/ns/shop/sa/web").unwrap();
        assert!(exact.matches(&yes));
        assert!(IdPattern::parse("spiffe://*.org/ns/x").is_err());
        assert!(IdPattern::parse("spiffe://example.org/ns//*").is_err());
    }

    /// Issue 12 finding 3: `*` crossed `/`, so a node allowed `ns/a/*` could obtain
    /// `ns/a/sa/x/sa/web`, which policies written for `*/sa/web` then matched.
    #[test]
    fn star_matches_within_one_segment_only() {
        let smuggled = SpiffeId::parse("spiffe://example.org/ns/a/sa/x/sa/web").unwrap();
        for pattern in [
            "spiffe://example.org/ns/a/*",
            "spiffe://example.org/ns/a/sa/*",
            "spiffe://example.org/ns/*/sa/web",
            "spiffe://example.org/*/sa/web",
            "spiffe://example.org/*",
        ] {
            let p = IdPattern::parse(pattern).unwrap();
            assert!(!p.matches(&smuggled), "{pattern} must not match {smuggled}");
        }
        let web = SpiffeId::parse("spiffe://example.org/ns/a/sa/web").unwrap();
        let p = IdPattern::parse("spiffe://example.org/ns/*/sa/web").unwrap();
        assert!(p.matches(&web));
        assert!(
            !IdPattern::parse("spiffe://example.org/ns/a/*")
                .unwrap()
                .matches(&web)
        );
    }

    #[test]
    fn glob_backtracks_within_a_segment() {
        assert!(glob_match("/a/*/c", "/a/b/c"));
        assert!(!glob_match("/a/*/c", "/a/b/b/c"));
        assert!(glob_match("/*b*", "/aaab"));
        assert!(glob_match("/shop-*-v*/x", "/shop-a-b-v2/x"));
        assert!(!glob_match("/a*c", "/abcd"));
        assert!(!glob_match("/a*", "/ab/c"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn workload_patterns_name_namespace_and_service_account() {
        for ok in [
            "spiffe://example.org/ns/shop/sa/*",
            "spiffe://example.org/ns/*/sa/web",
            "spiffe://example.org/ns/shop/sa/web",
            "spiffe://example.org/ns/team-*/sa/*",
        ] {
            assert!(IdPattern::parse_workload(ok).is_ok(), "{ok}");
        }
        for bad in [
            "spiffe://example.org/ns/shop/*",
            "spiffe://example.org/*",
            "spiffe://example.org/node/*",
            "spiffe://example.org/ns/shop/sa/web/x",
            "spiffe://example.org/ns/*/*/*",
        ] {
            assert_eq!(
                IdPattern::parse_workload(bad),
                Err(SpiffeIdError::NotWorkloadPattern(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
