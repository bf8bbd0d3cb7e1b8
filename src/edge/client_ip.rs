//! Which address a request comes from: the socket peer, unless that peer is one of
//! `server.trusted_proxies`; then the address the proxies wrote into the one header
//! they write (`server.client_ip_header`).
//!
//! The header is read right to left, over all its lines, because each proxy appends
//! the address it received the request from: the right-most entries are written by
//! the proxies mcpgate trusts, and everything left of the first untrusted address is
//! whatever the client sent. So the client is the right-most untrusted address; a
//! client that writes addresses into the header only adds entries to the left of it.
//! Only one header is read: a proxy that writes `X-Forwarded-For` passes a
//! client's `Forwarded` through untouched, and reading both would let the client
//! choose.
//!
//! An entry that is not an address (`unknown`, an obfuscated `_hidden`, garbage)
//! ends the walk: nothing to its left can be trusted, and the last trusted hop (the
//! proxy that passed it on) is taken as the client. That address may be shared by
//! many clients, so they share its limits: stricter than they should be, never
//! looser, and never an address a client chose.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ClientIpHeader, ConfigError, ServerConfig};

/// The client's address as resolved for a request (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// `server.trusted_proxies` and `server.client_ip_header`, compiled.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ClientIpHeader,
}

impl ClientIpResolver {
    /// Each proxy is a CIDR (`10.0.0.0/8`) or one address; errors name the entry.
    pub fn from_config(server: &ServerConfig) -> Result<Self, ConfigError> {
        let trusted = server
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(index, text)| {
                parse_network(text.trim()).map_err(|message| {
                    ConfigError::invalid(format!("server.trusted_proxies[{index}]"), message)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trusted,
            header: server.client_ip_header,
        })
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let name = match self.header {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
        };
        let lines: Vec<_> = headers.get_all(name).iter().collect();
        let mut last_trusted = peer;
        for line in lines.into_iter().rev() {
            let Ok(line) = line.to_str() else {
                return last_trusted;
            };
            for entry in split_outside_quotes(line, ',').into_iter().rev() {
                let address = match self.header {
                    ClientIpHeader::XForwardedFor => parse_address(entry.trim()),
                    ClientIpHeader::Forwarded => forwarded_for(entry),
                };
                let Some(address) = address.map(|address| address.to_canonical()) else {
                    return last_trusted;
                };
                if !self.is_trusted(address) {
                    return address;
                }
                last_trusted = address;
            }
        }
        // Every hop is a trusted proxy: the left-most is the nearest to the client.
        last_trusted
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted
            .iter()
            .any(|network| network.contains(&address))
    }
}

/// Checks `server.trusted_proxies` (for `gateway::validate`).
pub(crate) fn check(server: &ServerConfig) -> Result<(), ConfigError> {
    ClientIpResolver::from_config(server).map(drop)
}

/// The key per-address limits count under: an IPv4 address, or an IPv6 address's
/// /64 (one host is commonly given a whole /64, so counting per address would give
/// it 2^64 budgets).
pub fn limit_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(bits))
        }
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    if let Ok(address) = IpAddr::from_str(text) {
        return Ok(IpNet::from(address.to_canonical()));
    }
    let network = IpNet::from_str(text).map_err(|_| {
        format!("{text:?} is not an address or a CIDR (e.g. 10.0.0.0/8 or 2001:db8::/32)")
    })?;
    if network.trunc() != network {
        return Err(format!(
            "{text:?} has bits set past its prefix: did you mean {}?",
            network.trunc()
        ));
    }
    Ok(network)
}

/// An address as proxies write it: bare, `v4:port`, `[v6]` or `[v6]:port`.
fn parse_address(text: &str) -> Option<IpAddr> {
    if let Ok(address) = IpAddr::from_str(text) {
        return Some(address);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        return port_ok
            .then(|| Ipv6Addr::from_str(inside).ok().map(IpAddr::V6))
            .flatten();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    std::net::Ipv4Addr::from_str(host).ok().map(IpAddr::V4)
}

/// The `for=` of one `Forwarded` element (RFC 7239 §4), quoted or not.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in split_outside_quotes(element, ';') {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        // Two `for=` in one element: which one a reader takes is not defined.
        if found.is_some() {
            return None;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => quoted.strip_suffix('"')?,
            None => value,
        };
        found = Some(parse_address(value)?);
    }
    found
}

/// `text` cut at `separator`, except inside double quotes.
fn split_outside_quotes(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            _ if c == separator && !quoted => {
                parts.push(text.get(start..index).unwrap_or_default());
                start = index + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(text.get(start..).unwrap_or_default());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(trusted: &[&str], header: ClientIpHeader) -> ClientIpResolver {
        let server = ServerConfig {
            trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
            client_ip_header: header,
            ..ServerConfig::default()
        };
        ClientIpResolver::from_config(&server).unwrap()
    }

    fn headers(name: &str, lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                http::HeaderName::from_str(name).unwrap(),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const XFF: ClientIpHeader = ClientIpHeader::XForwardedFor;

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_changes_nothing() {
        let none = resolver(&[], XFF);
        let spoofed = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(none.resolve(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        // Trusted proxies configured, but this peer is not one of them.
        let some = resolver(&["10.0.0.0/8"], XFF);
        assert_eq!(some.resolve(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let resolver = resolver(&["10.0.0.0/8", "192.168.1.1"], XFF);
        // The client wrote 1.1.1.1; the first proxy appended the client's address.
        let hops = headers("x-forwarded-for", &["1.1.1.1, 198.51.100.7, 10.0.0.2"]);
        assert_eq!(
            resolver.resolve(ip("192.168.1.1"), &hops),
            ip("198.51.100.7")
        );
        // Over several header lines, last line last.
        let lines = headers("x-forwarded-for", &["1.1.1.1", "198.51.100.7", "10.0.0.2"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &lines), ip("198.51.100.7"));
        // Every hop trusted: the left-most.
        let internal = headers("x-forwarded-for", &["10.0.0.5, 10.0.0.2"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &internal), ip("10.0.0.5"));
        // A trusted peer without the header: the peer.
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let resolver = resolver(&["10.0.0.0/8"], XFF);
        let garbage = headers("x-forwarded-for", &["198.51.100.7, unknown, 10.0.0.2"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &garbage), ip("10.0.0.2"));
        let empty = headers("x-forwarded-for", &["198.51.100.7,,10.0.0.2"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &empty), ip("10.0.0.2"));
        let mut binary = HeaderMap::new();
        binary.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
        );
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &binary), ip("10.0.0.1"));
        // Garbage left of an untrusted hop is never reached.
        let left = headers("x-forwarded-for", &["<script>, 198.51.100.7"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &left), ip("198.51.100.7"));
    }

    #[test]
    fn ports_and_brackets_are_read_and_mapped_addresses_are_ipv4() {
        let resolver = resolver(&["10.0.0.0/8"], XFF);
        for (entry, expected) in [
            ("198.51.100.7:5555", "198.51.100.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:198.51.100.7", "198.51.100.7"),
        ] {
            let hops = headers("x-forwarded-for", &[entry]);
            assert_eq!(
                resolver.resolve(ip("10.0.0.1"), &hops),
                ip(expected),
                "{entry}"
            );
        }
        // A mapped peer address is the IPv4 one, trusted as such.
        let hops = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(
            resolver.resolve(ip("::ffff:10.0.0.1"), &hops),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let xff = resolver(&["10.0.0.0/8"], XFF);
        let forwarded = resolver(&["10.0.0.0/8"], ClientIpHeader::Forwarded);
        let mut both = headers("x-forwarded-for", &["198.51.100.7"]);
        both.append("forwarded", HeaderValue::from_static("for=203.0.113.50"));
        assert_eq!(xff.resolve(ip("10.0.0.1"), &both), ip("198.51.100.7"));
        assert_eq!(forwarded.resolve(ip("10.0.0.1"), &both), ip("203.0.113.50"));
    }

    #[test]
    fn forwarded_elements_are_parsed_with_quotes_and_parameters() {
        let resolver = resolver(&["10.0.0.0/8"], ClientIpHeader::Forwarded);
        let hops = headers(
            "forwarded",
            &[
                r#"for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.2;by=10.0.0.1"#,
            ],
        );
        assert_eq!(
            resolver.resolve(ip("10.0.0.1"), &hops),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers(
            "forwarded",
            &["for=198.51.100.7, for=_hidden, for=10.0.0.2"],
        );
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &hidden), ip("10.0.0.2"));
        let twice = headers("forwarded", &["for=198.51.100.7;for=10.0.0.9"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &twice), ip("10.0.0.1"));
        let without = headers("forwarded", &["proto=https"]);
        assert_eq!(resolver.resolve(ip("10.0.0.1"), &without), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_keys_are_per_64() {
        assert_eq!(limit_key(ip("198.51.100.7")), "198.51.100.7");
        assert_eq!(limit_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limit_key(ip("2001:db8:1:2::5"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1")),
            limit_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(limit_key(ip("::ffff:198.51.100.7")), "198.51.100.7");
    }

    #[test]
    fn proxies_are_checked_naming_the_entry() {
        for (entry, fragment) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("proxy", "not an address"),
        ] {
            let server = ServerConfig {
                trusted_proxies: vec!["10.0.0.0/8".into(), entry.into()],
                ..ServerConfig::default()
            };
            let error = check(&server).unwrap_err().to_string();
            assert!(error.starts_with("server.trusted_proxies[1]: "), "{error}");
            assert!(error.contains(fragment), "{error}");
        }
    }
}
