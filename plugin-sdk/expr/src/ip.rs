//! IP / CIDR matching, shared by a route's `remote_addrs` and the `ipmatch`
//! vars operator so both accept exactly the same notation.

use std::net::IpAddr;

/// One network (`10.0.0.0/8`, `::1`, `fe80::/10`) stored as masked integers
/// so a membership test is a single AND + compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpNet {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/LEN`. Host bits below the mask are ignored
    /// (`10.1.2.3/8` == `10.0.0.0/8`), as lua-resty-ipmatcher does.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid IP address {s:?}"))?;
        let bits = |max: u32| -> Result<u32, String> {
            match len {
                None => Ok(max),
                Some(l) => match l.parse::<u32>() {
                    Ok(n) if n <= max && !l.starts_with('+') => Ok(n),
                    _ => Err(format!("invalid prefix length in {s:?} (0..={max})")),
                },
            }
        };
        Ok(match ip {
            IpAddr::V4(v4) => {
                let n = bits(32)?;
                let mask = u32::MAX.checked_shl(32 - n).unwrap_or(0);
                IpNet::V4 {
                    net: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let n = bits(128)?;
                let mask = u128::MAX.checked_shl(128 - n).unwrap_or(0);
                IpNet::V6 {
                    net: u128::from(v6) & mask,
                    mask,
                }
            }
        })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self, canonical(ip)) {
            (IpNet::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == *net,
            (IpNet::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// Dual-stack listeners report IPv4 clients as `::ffff:a.b.c.d`; treat those
/// as IPv4 so an IPv4 CIDR still matches them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A list of networks; matches when any contains the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpMatcher {
    nets: Vec<IpNet>,
}

impl IpMatcher {
    /// Parses every entry; the error carries the offending entry's index so
    /// callers can point at `remote_addrs[i]` / the vars condition.
    pub fn parse<'s>(entries: impl IntoIterator<Item = &'s str>) -> Result<Self, (usize, String)> {
        let nets = entries
            .into_iter()
            .enumerate()
            .map(|(i, s)| IpNet::parse(s).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { nets })
    }

    /// An unparsable address (e.g. a unix-socket peer) never matches.
    pub fn matches_str(&self, addr: &str) -> bool {
        addr.parse::<IpAddr>()
            .is_ok_and(|ip| self.nets.iter().any(|n| n.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(list: &[&str]) -> IpMatcher {
        IpMatcher::parse(list.iter().copied()).expect("valid list")
    }

    #[test]
    fn single_ipv4_and_cidr() {
        let matcher = m(&["127.0.0.1", "192.168.0.0/16"]);
        assert!(matcher.matches_str("127.0.0.1"));
        assert!(!matcher.matches_str("127.0.0.2"));
        assert!(matcher.matches_str("192.168.44.3"));
        assert!(!matcher.matches_str("192.169.0.1"));
        assert!(!matcher.matches_str("not-an-ip"));
    }

    #[test]
    fn ipv6_and_mapped_ipv4() {
        let matcher = m(&["fe80::/10", "::1", "10.0.0.0/8"]);
        assert!(matcher.matches_str("fe80::1"));
        assert!(matcher.matches_str("::1"));
        assert!(!matcher.matches_str("2001:db8::1"));
        assert!(matcher.matches_str("::ffff:10.1.2.3"));
        assert!(!matcher.matches_str("::ffff:11.1.2.3"));
    }

    #[test]
    fn host_bits_are_masked_and_zero_prefix_matches_all() {
        assert!(m(&["10.1.2.3/8"]).matches_str("10.200.0.1"));
        assert!(m(&["0.0.0.0/0"]).matches_str("8.8.8.8"));
        assert!(!m(&["0.0.0.0/0"]).matches_str("::2"));
        assert!(m(&["::/0"]).matches_str("2001:db8::1"));
    }

    #[test]
    fn bad_entries_report_index() {
        let err = IpMatcher::parse(["10.0.0.1", "10.0.0.0/33"]).expect_err("bad len");
        assert_eq!(err.0, 1);
        assert!(err.1.contains("prefix length"), "{}", err.1);
        let err = IpMatcher::parse(["nope"]).expect_err("bad ip");
        assert_eq!(err, (0, "invalid IP address \"nope\"".to_string()));
        assert!(IpNet::parse("::1/129").is_err());
        assert!(IpNet::parse("1.2.3.4/").is_err());
    }
}
