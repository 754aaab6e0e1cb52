//! Addresses as the maps store them: 16 bytes, IPv4 as IPv4-mapped IPv6 (see
//! `ferrule_ebpf_common`), so both families share one key type and one LPM trie.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use aya::maps::lpm_trie::Key;
use ferrule_ebpf_common::{IPV4_MAPPED_PREFIX, OriginalDst, ipv4_mapped};

use super::Error;

/// The map form of `ip`. An IPv4-mapped IPv6 address gives the same bytes as the IPv4 address,
/// like the kernel's view of a dual-stack socket talking IPv4.
pub(super) fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Back from the map form: IPv4-mapped addresses become IPv4 again.
pub(super) fn ip_from_key(key: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(key);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

pub(super) fn socket_addr(dst: OriginalDst) -> SocketAddr {
    SocketAddr::new(ip_from_key(dst.ip), dst.port)
}

/// LPM-trie key of a CIDR, with the host bits cleared so equal networks give equal keys.
pub(super) fn cidr_key(addr: IpAddr, prefix: u8) -> Result<Key<[u8; 16]>, Error> {
    let (max, offset) = match addr {
        IpAddr::V4(_) => (32, IPV4_MAPPED_PREFIX),
        IpAddr::V6(_) => (128, 0),
    };
    if prefix > max {
        return Err(Error::InvalidCidr { addr, prefix });
    }
    let bits = offset + u32::from(prefix);
    let masked = match bits {
        0 => 0,
        bits => u128::from_be_bytes(ip_key(addr)) & (u128::MAX << (128 - bits)),
    };
    Ok(Key::new(bits, masked.to_be_bytes()))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    #[test]
    fn ipv4_and_its_mapped_form_give_the_same_key_and_come_back_as_ipv4() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        assert_eq!(ip_key(v4), ip_key(mapped));
        assert_eq!(ip_from_key(ip_key(mapped)), v4);
        let dst = OriginalDst {
            ip: ip_key(v4),
            port: 8080,
        };
        assert_eq!(
            socket_addr(dst),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 8080))
        );
    }

    #[test]
    fn ipv6_keys_round_trip() {
        let v6: IpAddr = "fd00::1".parse().expect("literal");
        assert_eq!(ip_from_key(ip_key(v6)), v6);
    }

    #[test]
    fn cidr_keys_clear_host_bits_and_map_ipv4_prefixes() {
        let key = cidr_key("10.1.2.3".parse().expect("literal"), 16).expect("valid CIDR");
        assert_eq!(key.prefix_len(), 96 + 16);
        assert_eq!(key.data(), ip_key("10.1.0.0".parse().expect("literal")));

        let key = cidr_key("fd00:1:2::9".parse().expect("literal"), 32).expect("valid CIDR");
        assert_eq!(key.prefix_len(), 32);
        assert_eq!(key.data(), ip_key("fd00:1::".parse().expect("literal")));

        let everything = cidr_key("::".parse().expect("literal"), 0).expect("valid CIDR");
        assert_eq!((everything.prefix_len(), everything.data()), (0, [0; 16]));
    }

    #[test]
    fn cidr_prefixes_longer_than_the_address_are_refused() {
        let err = cidr_key("10.0.0.0".parse().expect("literal"), 33)
            .err()
            .expect("/33 is not an IPv4 prefix");
        assert!(
            matches!(err, Error::InvalidCidr { prefix: 33, .. }),
            "expected InvalidCidr, got {err:?}"
        );
    }
}
