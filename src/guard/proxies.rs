//! Trusted proxies (`NAS_SYNC_TRUSTED_PROXIES`): whose `X-Forwarded-For` is believed.
//!
//! Behind `tailscale serve` (or any reverse proxy) every request comes from the
//! proxy's address. Only when the TCP peer is a trusted proxy is `X-Forwarded-For`
//! believed: its entries are read from the right (the hop nearest to nas-sync) and
//! the first one that is not itself a trusted proxy is the client. A peer that is not
//! trusted is the client, whatever its headers say. The web layer's middleware
//! (`api::proxies`) records the address found here for the limits and the log.

use std::net::{IpAddr, SocketAddr};

use anyhow::bail;
use axum::http::HeaderMap;
use ipnet::IpNet;

/// The addresses and networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of addresses (`172.30.0.10`, `::1`) and CIDRs
    /// (`10.0.0.0/8`); empty trusts nobody.
    pub fn parse(spec: &str) -> anyhow::Result<TrustedProxies> {
        let mut nets = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match (part.parse::<IpNet>(), part.parse::<IpAddr>()) {
                (Ok(net), _) => net.trunc(),
                (_, Ok(addr)) => IpNet::from(addr),
                _ => bail!(
                    "NAS_SYNC_TRUSTED_PROXIES: '{part}' is not an IP address or a CIDR \
                     network (e.g. 172.30.87.10 or 10.0.0.0/8)"
                ),
            };
            nets.push(net);
        }
        Ok(TrustedProxies(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` is one of the trusted proxies (IPv4-mapped IPv6 counts as IPv4).
    pub fn trusts(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Every X-Forwarded-For header, in order, as one list; walked from the right.
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            // Anything unreadable ends the walk: the last trusted hop is the client.
            let Some(addr) = parse_entry(entry) else {
                break;
            };
            client = addr;
            if !self.trusts(addr) {
                break;
            }
        }
        client
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_networks_and_names_a_bad_entry() {
        let t = TrustedProxies::parse(" 172.30.87.10, 10.0.0.0/8,::1 ").unwrap();
        assert!(t.trusts(ip("172.30.87.10")));
        assert!(t.trusts(ip("10.1.2.3")));
        assert!(t.trusts(ip("::1")));
        assert!(t.trusts(ip("::ffff:10.9.9.9")));
        assert!(!t.trusts(ip("172.30.87.11")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in ["tailscale", "10.0.0.0/33", "1.2.3"] {
            let e = TrustedProxies::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("NAS_SYNC_TRUSTED_PROXIES") && e.contains(bad),
                "{e}"
            );
        }
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let t = TrustedProxies::parse("172.30.87.10,10.0.0.0/8").unwrap();
        let proxy = ip("172.30.87.10");
        // A forged left-most entry is not believed.
        let h = headers(&["6.6.6.6, 100.64.0.7", "10.0.0.2"]);
        assert_eq!(t.client_of(proxy, &h), ip("100.64.0.7"));
        assert_eq!(
            t.client_of(proxy, &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // No header, or only trusted hops: the nearest trusted hop.
        assert_eq!(t.client_of(proxy, &HeaderMap::new()), proxy);
        assert_eq!(t.client_of(proxy, &headers(&["10.0.0.3"])), ip("10.0.0.3"));
        // Garbage ends the walk at the last trusted hop.
        assert_eq!(t.client_of(proxy, &headers(&["1.1.1.1, junk"])), proxy);
        // An untrusted peer's header is ignored.
        let peer = ip("192.168.1.20");
        assert_eq!(t.client_of(peer, &headers(&["1.1.1.1"])), peer);
        assert_eq!(TrustedProxies::default().client_of(proxy, &h), proxy);
    }
}
