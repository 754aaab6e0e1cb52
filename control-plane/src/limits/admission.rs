//! Open connections on one listener, counted in total and per source, so that one host (or a
//! flood of half-open handshakes from it) cannot take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::ConnectionLimits;

/// Who counts as one source: an IPv4 address, or the /64 of an IPv6 address (one host usually
/// has a whole /64 to pick addresses from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// Why a connection was turned away: the limit's config field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerSource,
}

#[derive(Debug)]
pub struct Admission {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// An admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    source: Source,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::default(),
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let source = Source::of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.limits.max {
            return Err(Refusal::Total);
        }
        let from_source = open.by_source.entry(source).or_default();
        if *from_source >= self.limits.per_source {
            return Err(Refusal::PerSource);
        }
        *from_source += 1;
        open.total += 1;
        Ok(Admitted {
            admission: self.clone(),
            source,
        })
    }

    fn release(&self, source: Source) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                open.by_source.remove(&source);
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.release(self.source);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_limited_per_source_and_in_total_until_they_close() {
        let admission = Admission::new(ConnectionLimits {
            max: 3,
            per_source: 2,
        });
        let a1 = admission.admit(ip("10.0.0.1")).unwrap();
        let _a2 = admission.admit(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(
            admission.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::PerSource,
            "IPv4-mapped addresses are the same source"
        );
        let _b = admission.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(admission.admit(ip("10.0.0.3")).unwrap_err(), Refusal::Total);
        drop(a1);
        admission
            .admit(ip("10.0.0.1"))
            .expect("a closed connection frees its slot");
    }

    #[test]
    fn an_ipv6_source_is_its_64() {
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Source::of(ip("2001:db8:1:2::1")),
            Source::of(ip("2001:db8:1:3::1"))
        );
    }
}
