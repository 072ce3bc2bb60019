//! Who the client is behind a reverse proxy. Only a connection from a configured proxy
//! may say so (`Forwarded`, else `X-Forwarded-For`); its hops are read from the right, and
//! the first one that is not a trusted proxy is the client. Anyone else's headers are
//! ignored, so a client cannot pick the address its guesses are counted against.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

#[derive(Debug, thiserror::Error)]
#[error("trusted_proxies: {0:?} is neither an address nor a CIDR (10.0.0.0/8, ::1)")]
pub struct BadProxy(String);

impl TrustedProxies {
    /// Addresses (`127.0.0.1`, `::1`) and CIDRs (`10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxy> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>().or_else(|_| e.parse::<IpAddr>().map(IpNet::from)).map_err(|_| BadProxy(e.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets.into()))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy that names the
    /// client in its headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded(headers).unwrap_or_else(|| x_forwarded_for(headers));
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop that is no address (`unknown`, an obfuscated name) ends what can be
            // known: the proxy that reported it is the client as far as lintel can tell.
            let Some(ip) = hop else { break };
            client = *ip;
            if !self.trusts(*ip) {
                break;
            }
        }
        client
    }
}

/// The `for=` of each element of every `Forwarded` header (RFC 7239), in order; `None`
/// when there is no such header.
fn forwarded(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all("forwarded") {
        any = true;
        let Ok(value) = value.to_str() else { return Some(vec![None]) };
        for element in value.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            hops.push(node.and_then(node_address));
        }
    }
    any.then_some(hops)
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else { return vec![None] };
        hops.extend(value.split(',').map(|h| node_address(h.trim())));
    }
    hops
}

/// `192.0.2.7`, `192.0.2.7:4711`, `[2001:db8::17]:4711`, `2001:db8::17`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse()
        .ok()
        .or_else(|| node.rsplit_once(':').and_then(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().ok()).map(IpAddr::V4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_trusted_peers_are_believed_rightmost_untrusted_hop_first() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let xff = |v: &str| headers(&[("x-forwarded-for", v)]);
        // From a proxy: the address it saw.
        assert_eq!(proxies.client(ip("127.0.0.1"), &xff("203.0.113.9")), ip("203.0.113.9"));
        // A client's own claim to the left of what the proxy appended is not believed.
        assert_eq!(proxies.client(ip("127.0.0.1"), &xff("1.2.3.4, 203.0.113.9")), ip("203.0.113.9"));
        // Through two trusted proxies.
        assert_eq!(proxies.client(ip("127.0.0.1"), &xff("203.0.113.9, 10.1.1.1")), ip("203.0.113.9"));
        // Not from a proxy: the header is ignored.
        assert_eq!(proxies.client(ip("198.51.100.2"), &xff("203.0.113.9")), ip("198.51.100.2"));
        // A proxy without the header is the client.
        assert_eq!(proxies.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        // Garbage stops at the proxy that reported it.
        assert_eq!(proxies.client(ip("127.0.0.1"), &xff("unknown")), ip("127.0.0.1"));
        assert_eq!(proxies.client(ip("::ffff:127.0.0.1"), &xff("203.0.113.9")), ip("203.0.113.9"));
        // Forwarded wins over X-Forwarded-For; quoted IPv6 with a port.
        let both = headers(&[
            ("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.5"), &both), ip("2001:db8:cafe::17"));
        assert_eq!(proxies.client(ip("10.0.0.5"), &headers(&[("forwarded", "For=192.0.2.60:8080")])), ip("192.0.2.60"));
        // Without the setting nothing is believed.
        assert_eq!(TrustedProxies::default().client(ip("127.0.0.1"), &xff("203.0.113.9")), ip("127.0.0.1"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
    }
}
