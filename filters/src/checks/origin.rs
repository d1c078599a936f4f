//! Browser origins: a WebSocket upgrade or a state-changing request that carries an `Origin`
//! must come from one of clawguard's own origins or one the policy lists (the cross-site
//! WebSocket hijacking and CSRF class of CVE-2026-25253 / CVE-2026-32302). Requests without an
//! `Origin` (CLIs, servers) are not browsers' and are unaffected.
//!
//! clawguard's own origins are its listeners: `http://` for plaintext, `https://` for TLS, with
//! their port, for their address or, on a loopback or unspecified address, `localhost`,
//! `127.0.0.1` and `[::1]`. The `Host` header is not trusted for this: a DNS-rebound page sends a
//! `Host` and an `Origin` that agree.

use std::net::SocketAddr;

/// The origins requests may come from.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Vec<String>,
}

/// Lowercase, without a default port (`:80` for http, `:443` for https), as browsers send it.
fn normal(origin: &str) -> String {
    let o = origin.trim().to_ascii_lowercase();
    let o = o.strip_suffix('/').unwrap_or(&o).to_string();
    match o.split_once("://") {
        Some(("http", host)) => format!("http://{}", host.strip_suffix(":80").unwrap_or(host)),
        Some(("https", host)) => format!("https://{}", host.strip_suffix(":443").unwrap_or(host)),
        _ => o,
    }
}

fn listener_origins(scheme: &str, addr: &SocketAddr) -> Vec<String> {
    let port = addr.port();
    let ip = addr.ip();
    let hosts: Vec<String> = if ip.is_loopback() || ip.is_unspecified() {
        vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()]
    } else if addr.is_ipv6() {
        vec![format!("[{ip}]")]
    } else {
        vec![ip.to_string()]
    };
    hosts.into_iter().map(|h| normal(&format!("{scheme}://{h}:{port}"))).collect()
}

impl Origins {
    /// The listeners' origins and `http.allowed_origins`.
    pub fn new(plain: &[SocketAddr], tls: &[SocketAddr], extra: &[String]) -> Self {
        let mut allowed: Vec<String> = plain.iter().flat_map(|a| listener_origins("http", a)).chain(tls.iter().flat_map(|a| listener_origins("https", a))).collect();
        allowed.extend(extra.iter().map(|o| normal(o)));
        allowed.sort();
        allowed.dedup();
        Origins { allowed }
    }

    /// Why a request with this `Origin` is refused, if it is.
    pub fn refusal(&self, origin: &str) -> Option<String> {
        let o = normal(origin);
        if self.allowed.contains(&o) {
            return None;
        }
        Some(format!("origin {origin:?} is not one of clawguard's own origins or http.allowed_origins"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listeners_and_listed_origins_only() {
        let o = Origins::new(&["127.0.0.1:18790".parse().unwrap()], &["0.0.0.0:8443".parse().unwrap()], &["https://ops.example.com".into()]);
        for ok in ["http://127.0.0.1:18790", "http://localhost:18790", "HTTP://LOCALHOST:18790", "https://localhost:8443", "https://ops.example.com", "https://ops.example.com:443"] {
            assert_eq!(o.refusal(ok), None, "{ok}");
        }
        for bad in ["http://evil.example", "http://127.0.0.1:18789", "https://127.0.0.1:18790", "null", "", "http://localhost:18790.evil.example", "https://ops.example.com.evil"] {
            assert!(o.refusal(bad).is_some(), "{bad}");
        }
    }
}
