//! Destination ports of a rule: single ports and inclusive ranges.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An inclusive destination port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// Why a `ports` entry is not a port or a port range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("{0:?} is neither a port (1-65535) nor a port range such as \"9000-9100\"")]
    Malformed(String),
    #[error("port {0} is out of range: ports are 1-65535")]
    OutOfRange(String),
    #[error("port range {first}-{last} is reversed: its first port must not exceed its last")]
    Reversed { first: u16, last: u16 },
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, PortError> {
        if first == 0 {
            return Err(PortError::OutOfRange("0".to_owned()));
        }
        if first > last {
            return Err(PortError::Reversed { first, last });
        }
        Ok(Self { first, last })
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

fn port_number(s: &str) -> Result<u16, PortError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::Malformed(s.to_owned()));
    }
    match s.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(PortError::OutOfRange(s.to_owned())),
    }
}

impl FromStr for PortRange {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, PortError> {
        // A malformed half is reported with the whole entry, which is what the user wrote.
        let number = |part: &str| {
            port_number(part).map_err(|e| match e {
                PortError::Malformed(_) => PortError::Malformed(s.to_owned()),
                other => other,
            })
        };
        match s.split_once('-') {
            Some((first, last)) => Self::new(number(first)?, number(last)?),
            None => number(s).map(|port| Self {
                first: port,
                last: port,
            }),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A single port serializes as a number, a range as `"first-last"`.
impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port (1-65535) or a port range such as \"9000-9100\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                match u16::try_from(v) {
                    Ok(port) if port != 0 => Ok(PortRange {
                        first: port,
                        last: port,
                    }),
                    _ => Err(E::custom(PortError::OutOfRange(v.to_string()))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(PortError::OutOfRange(v.to_string()))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_ranges() {
        let ports: Vec<PortRange> =
            serde_norway::from_str("[8080, \"9000-9100\", 7000-7001, \"443\"]").unwrap();
        let shown: Vec<String> = ports.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["8080", "9000-9100", "7000-7001", "443"]);
        let range: PortRange = "9000-9100".parse().unwrap();
        assert_eq!((range.first(), range.last()), (9000, 9100));
        for (port, expected) in [
            (8999, false),
            (9000, true),
            (9050, true),
            (9100, true),
            (9101, false),
        ] {
            assert_eq!(range.contains(port), expected, "port {port}");
        }
        assert_eq!(
            ports[0],
            PortRange::new(8080, 8080).unwrap(),
            "a single port is a range of one"
        );
    }

    #[test]
    fn serializes_single_ports_as_numbers() {
        let ports: Vec<PortRange> = serde_json::from_str("[80, \"80-80\", \"90-100\"]").unwrap();
        assert_eq!(serde_json::to_string(&ports).unwrap(), "[80,80,\"90-100\"]");
    }

    #[test]
    fn port_errors() {
        assert_eq!(
            "0".parse::<PortRange>(),
            Err(PortError::OutOfRange("0".into()))
        );
        assert_eq!(
            "70000".parse::<PortRange>(),
            Err(PortError::OutOfRange("70000".into()))
        );
        assert_eq!(
            "90-80".parse::<PortRange>(),
            Err(PortError::Reversed {
                first: 90,
                last: 80
            })
        );
        assert_eq!(
            "0-80".parse::<PortRange>(),
            Err(PortError::OutOfRange("0".into()))
        );
        assert_eq!(
            "80-".parse::<PortRange>(),
            Err(PortError::Malformed("80-".into()))
        );
        assert_eq!(
            "http".parse::<PortRange>(),
            Err(PortError::Malformed("http".into()))
        );
        assert_eq!(
            " 80".parse::<PortRange>(),
            Err(PortError::Malformed(" 80".into()))
        );
        assert!(serde_norway::from_str::<PortRange>("-1").is_err());
        assert!(serde_norway::from_str::<PortRange>("80.5").is_err());
    }
}
