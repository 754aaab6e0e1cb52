//! SPIFFE IDs (from certificates, CSRs, policies, the API) and identity patterns (policies,
//! node grants). Input: `<pattern>\n<id>`, or one line used as both.
//!
//! Besides never panicking: a parsed ID prints back as its input, an ID is matched by the
//! pattern of its own text, and `IdPattern::matches` agrees with a plain dynamic-programming
//! glob (`*` = any run of bytes other than `/`).
#![no_main]

use ferrule_identity::{IdKind, IdPattern, SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

/// Above this the reference matcher's quadratic table would slow the fuzzer down.
const REFERENCE_MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, id) = text.split_once('\n').unwrap_or((text, text));
    let id = check_id(id);
    let pattern = check_pattern(pattern);
    if let (Some(pattern), Some(id)) = (pattern, id) {
        check_match(&pattern, &id);
    }
});

fn check_id(text: &str) -> Option<SpiffeId> {
    let id = SpiffeId::parse(text).map_err(|e| e.to_string()).ok()?;
    assert_eq!(id.as_str(), text);
    assert_eq!(id.to_string(), text);
    assert_eq!(
        format!("spiffe://{}{}", id.trust_domain_str(), id.path()),
        text
    );
    assert_eq!(
        TrustDomain::new(id.trust_domain_str()).as_ref(),
        Ok(&id.trust_domain())
    );
    assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
    if let IdKind::Workload {
        namespace,
        service_account,
    } = id.kind()
    {
        let rebuilt = SpiffeId::workload(&id.trust_domain(), namespace, service_account);
        assert_eq!(rebuilt.as_ref(), Ok(&id), "workload ID does not rebuild");
    }
    // An ID's own text, as a pattern, names exactly that ID.
    let exact = IdPattern::parse(text).expect("every SPIFFE ID is a valid pattern");
    assert!(exact.matches(&id), "{text} does not match itself");
    Some(id)
}

fn check_pattern(text: &str) -> Option<IdPattern> {
    let pattern = IdPattern::parse(text).map_err(|e| e.to_string()).ok()?;
    assert_eq!(pattern.as_str(), text);
    assert!(!pattern.trust_domain_str().contains('*'));
    if let Ok(workload) = IdPattern::parse_workload(text) {
        assert_eq!(workload, pattern);
    }
    Some(pattern)
}

fn check_match(pattern: &IdPattern, id: &SpiffeId) {
    let matched = pattern.matches(id);
    if !pattern.as_str().contains('*') {
        assert_eq!(matched, pattern.as_str() == id.as_str(), "literal pattern");
    }
    let (pattern_path, id_path) = (path_of(pattern.as_str()), id.path());
    if pattern_path.len() <= REFERENCE_MAX && id_path.len() <= REFERENCE_MAX {
        let expected = pattern.trust_domain_str() == id.trust_domain_str()
            && reference_glob(pattern_path.as_bytes(), id_path.as_bytes());
        assert_eq!(matched, expected, "{pattern} against {id}");
    }
}

/// The path of a parsed pattern: everything from the first `/` after the scheme.
fn path_of(pattern: &str) -> &str {
    let rest = &pattern["spiffe://".len()..];
    &rest[rest.find('/').unwrap_or(rest.len())..]
}

/// `matches[i][j]`: whether `pattern[..i]` matches `text[..j]`.
fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
    let mut matches = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    matches[0][0] = true;
    for i in 1..=pattern.len() {
        for j in 0..=text.len() {
            matches[i][j] = if pattern[i - 1] == b'*' {
                matches[i - 1][j] || (j > 0 && text[j - 1] != b'/' && matches[i][j - 1])
            } else {
                j > 0 && pattern[i - 1] == text[j - 1] && matches[i - 1][j - 1]
            };
        }
    }
    matches[pattern.len()][text.len()]
}
