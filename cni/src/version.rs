//! The CNI specification versions this plugin speaks.

/// Oldest first. 0.3.0 is the first version with `prevResult` chaining.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, answered to VERSION when the request names none.
pub const CURRENT: &str = "1.1.0";

pub fn is_supported(version: &str) -> bool {
    SUPPORTED.contains(&version)
}

/// Whether `version` is `minimum` or newer; unsupported or malformed versions are not.
pub fn at_least(version: &str, minimum: &str) -> bool {
    match (parse(version), parse(minimum)) {
        (Some(v), Some(m)) => v >= m,
        _ => false,
    }
}

/// Results of 1.0.0 and later: no `version` on each IP.
pub fn is_v1(version: &str) -> bool {
    at_least(version, "1.0.0")
}

fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let triple = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(triple)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions_numerically() {
        assert!(at_least("1.1.0", "1.1.0"));
        assert!(at_least("1.10.0", "1.9.0"));
        assert!(!at_least("1.0.0", "1.1.0"));
        assert!(!at_least("0.4.0", "1.0.0"));
        assert!(!at_least("1.1", "1.0.0"), "two-part versions are malformed");
        assert!(!at_least("x", "0.1.0"));
    }

    #[test]
    fn supports_chaining_versions_only() {
        assert!(is_supported("0.3.1") && is_supported("1.1.0"));
        assert!(!is_supported("0.2.0"), "0.2.0 has no prevResult");
        assert!(!is_supported("2.0.0"));
    }
}
