//! Client attribution: which forwarding headers the gateway must see.
//!
//! The gateway grants a lot to clients it believes are local, and refuses a
//! forwarded loopback address outright. So for a local peer every forwarding
//! header is removed (the client really is local); for any other peer they are
//! overwritten, never appended, with the real peer address.

use clawguard_policies::{canonical_ip, Attribution};
use std::net::IpAddr;

/// Request headers a client may never set: clawguard removes them, then sets its own.
pub const CLIENT_HEADERS_REMOVED: &[&str] = &[
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-openclaw-scopes",
];

/// Whether a plaintext request from `peer` may be served: always over TLS; without
/// TLS only from a loopback peer while `require_tls_for_remote` is set.
pub fn plaintext_allowed(peer: Option<IpAddr>, tls: bool, require_tls_for_remote: bool) -> bool {
    tls || !require_tls_for_remote || peer.is_some_and(|ip| canonical_ip(ip).is_loopback())
}

/// The forwarding headers to add for a peer, after removing [`CLIENT_HEADERS_REMOVED`].
pub fn forwarding_headers(peer: IpAddr, tls: bool, attribution: &Attribution) -> Vec<(&'static str, String)> {
    if attribution.is_local(peer) {
        return Vec::new();
    }
    let ip = canonical_ip(peer);
    let forwarded_for = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let proto = if tls { "https" } else { "http" };
    vec![
        ("x-forwarded-for", ip.to_string()),
        ("x-real-ip", ip.to_string()),
        ("forwarded", format!("for={forwarded_for};proto={proto}")),
        ("x-forwarded-proto", proto.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_from_loopback_when_required() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(plaintext_allowed(ip("127.0.0.1"), false, true));
        assert!(plaintext_allowed(ip("127.0.0.2"), false, true));
        assert!(plaintext_allowed(ip("::1"), false, true));
        assert!(plaintext_allowed(ip("::ffff:127.0.0.1"), false, true));
        assert!(!plaintext_allowed(ip("192.0.2.7"), false, true));
        assert!(!plaintext_allowed(ip("::ffff:192.0.2.7"), false, true));
        assert!(!plaintext_allowed(None, false, true), "a peer without an IP address is not loopback");
        assert!(plaintext_allowed(ip("192.0.2.7"), true, true));
        assert!(plaintext_allowed(ip("192.0.2.7"), false, false));
    }

    #[test]
    fn loopback_peer_gets_no_forwarding_headers() {
        assert!(forwarding_headers("127.0.0.1".parse().unwrap(), false, &Attribution::default()).is_empty());
        assert!(forwarding_headers("::1".parse().unwrap(), true, &Attribution::default()).is_empty());
    }

    #[test]
    fn remote_peer_is_named_in_every_header() {
        let h = forwarding_headers("203.0.113.9".parse().unwrap(), true, &Attribution::default());
        assert!(h.contains(&("x-forwarded-for", "203.0.113.9".into())));
        assert!(h.contains(&("x-real-ip", "203.0.113.9".into())));
        assert!(h.contains(&("forwarded", "for=203.0.113.9;proto=https".into())));
        let h = forwarding_headers("2001:db8::1".parse().unwrap(), false, &Attribution::default());
        assert!(h.contains(&("forwarded", "for=\"[2001:db8::1]\";proto=http".into())));
    }

    #[test]
    fn narrowed_local_cidrs_make_other_loopback_addresses_remote() {
        let a = Attribution { local_cidrs: vec!["127.0.0.1/32".parse().unwrap()] };
        assert!(forwarding_headers("127.0.0.1".parse().unwrap(), false, &a).is_empty());
        let h = forwarding_headers("::ffff:127.0.0.2".parse().unwrap(), false, &a);
        assert!(h.contains(&("x-forwarded-for", "127.0.0.2".into())));
    }
}
