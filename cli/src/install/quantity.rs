//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5`, `2e3`), checked before the API
//! server sees them, and valued so that a request can be compared with its limit.
//!
//! The grammar (k8s.io/apimachinery/pkg/api/resource): a non-negative decimal number, then
//! nothing, a decimal SI suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`), a binary suffix (`Ki`
//! .. `Ei`), or an exponent (`e3`, `E-2`).

/// Why a text is not a quantity (the installer refuses negative quantities too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a Kubernetes quantity: use a number with an optional suffix, like 100m \
     (CPU) or 128Mi (memory)"
)]
pub struct QuantityError(String);

/// The quantity's value (approximate: for comparisons only).
pub fn parse(text: &str) -> Result<f64, QuantityError> {
    let error = || QuantityError(text.to_owned());
    let text = text.strip_prefix('+').unwrap_or(text);
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let digits = number.replacen('.', "", 1);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error());
    }
    let number: f64 = number.parse().map_err(|_| error())?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let exponent = exponent
                .strip_prefix(['e', 'E'])
                .filter(|e| {
                    let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
                .ok_or_else(error)?;
            10f64.powi(exponent.parse().map_err(|_| error())?)
        }
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_kubernetes_accepts() {
        for (text, value) in [
            ("100m", 0.1),
            ("1", 1.0),
            ("1.5", 1.5),
            (".5", 0.5),
            ("2.", 2.0),
            ("+3", 3.0),
            ("128Mi", 128.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
            ("2e3", 2000.0),
            ("5E-1", 0.5),
            ("0", 0.0),
        ] {
            assert_eq!(parse(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for text in [
            "", "m", "-1", "1.2.3", "12Qi", "1 Gi", "1gi", "1e", "1e+", "Mi", "1Mi2", "0x10", "1,5",
        ] {
            assert!(parse(text).is_err(), "{text:?} was accepted");
        }
    }
}
