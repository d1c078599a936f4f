//! Open-connection counts per client address and per identity, with their caps.
//!
//! A connection is pending until its handshake completes: it counts against its address
//! (open and pending caps) and the global pending cap, not against an identity, so that
//! unauthenticated clients (all `default`) cannot fill a shared identity's cap and lock
//! everyone else out. Once established it counts against its identity.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a new connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Too many from one address.
    #[error("{ip} already has {limit} open WebSocket connections (websocket.max_connections_per_ip)")]
    PerIp {
        /// The address.
        ip: IpAddr,
        /// The cap.
        limit: usize,
    },
    /// Too many handshakes in progress from one address.
    #[error("{ip} already has {limit} WebSocket connections that have not completed their handshake (limits.ip_pending_handshakes)")]
    PendingPerIp {
        /// The address.
        ip: IpAddr,
        /// The cap.
        limit: usize,
    },
    /// Too many handshakes in progress from all addresses.
    #[error("{limit} WebSocket connections have not completed their handshake (limits.pending_handshakes_total)")]
    PendingTotal {
        /// The cap.
        limit: usize,
    },
    /// Too many as one identity.
    #[error("identity {identity:?} already has {limit} open WebSocket connections (websocket.max_connections_per_identity)")]
    PerIdentity {
        /// The identity.
        identity: String,
        /// The cap.
        limit: usize,
    },
}

/// The caps on open connections (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// Open connections per address.
    pub per_ip: usize,
    /// Open connections per identity.
    pub per_identity: usize,
    /// Connections per address still in their handshake.
    pub pending_per_ip: usize,
    /// Connections from all addresses still in their handshake.
    pub pending_total: usize,
    /// The pending cap only counts (shadow mode): never refuses.
    pub pending_shadow: bool,
}

/// Open connections by address and identity, and handshakes in progress by address.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    per_ip: HashMap<IpAddr, usize>,
    per_identity: HashMap<String, usize>,
    pending_per_ip: HashMap<IpAddr, usize>,
    pending_total: usize,
}

impl ConnectionCounts {
    /// Counts a new connection (pending its handshake) unless a cap is reached; `identity`
    /// is the one known at the upgrade, whose established connections must be under its cap.
    pub fn try_open(&mut self, ip: IpAddr, identity: &str, caps: Caps) -> Result<(), LimitExceeded> {
        let (max_per_ip, max_per_identity) = (caps.per_ip, caps.per_identity);
        let by_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip > 0 && by_ip >= max_per_ip {
            return Err(LimitExceeded::PerIp { ip, limit: max_per_ip });
        }
        let pending = self.pending_per_ip.get(&ip).copied().unwrap_or(0);
        if caps.pending_per_ip > 0 && pending >= caps.pending_per_ip && !caps.pending_shadow {
            return Err(LimitExceeded::PendingPerIp { ip, limit: caps.pending_per_ip });
        }
        if caps.pending_total > 0 && self.pending_total >= caps.pending_total {
            return Err(LimitExceeded::PendingTotal { limit: caps.pending_total });
        }
        let by_identity = self.per_identity.get(identity).copied().unwrap_or(0);
        if max_per_identity > 0 && by_identity >= max_per_identity {
            return Err(LimitExceeded::PerIdentity { identity: identity.to_string(), limit: max_per_identity });
        }
        *self.per_ip.entry(ip).or_default() += 1;
        *self.pending_per_ip.entry(ip).or_default() += 1;
        self.pending_total += 1;
        Ok(())
    }

    /// A connection from `ip` completed its handshake as `identity` (call once per
    /// connection): it leaves the pending counts and counts against the identity.
    pub fn established(&mut self, ip: IpAddr, identity: &str) {
        decrement(&mut self.pending_per_ip, &ip);
        self.pending_total = self.pending_total.saturating_sub(1);
        *self.per_identity.entry(identity.to_string()).or_default() += 1;
    }

    /// Uncounts a connection opened with [`ConnectionCounts::try_open`]; `pending` when it
    /// never completed its handshake.
    pub fn close(&mut self, ip: IpAddr, identity: &str, pending: bool) {
        decrement(&mut self.per_ip, &ip);
        if pending {
            decrement(&mut self.pending_per_ip, &ip);
            self.pending_total = self.pending_total.saturating_sub(1);
        } else {
            decrement(&mut self.per_identity, identity);
        }
    }

    /// Handshakes in progress from `ip`.
    pub fn pending(&self, ip: IpAddr) -> usize {
        self.pending_per_ip.get(&ip).copied().unwrap_or(0)
    }
}

/// Why a new client connection (any protocol) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientLimit {
    /// Too many from one address.
    #[error("{ip} already has {limit} open connections (server.max_connections_per_ip)")]
    PerIp {
        /// The address.
        ip: IpAddr,
        /// The cap.
        limit: usize,
    },
    /// Too many in total.
    #[error("clawguard already has {limit} open connections (server.max_connections)")]
    Total {
        /// The cap.
        limit: usize,
    },
}

/// Every open client connection, by address, with the per-address and total caps (0: none).
#[derive(Debug, Default)]
pub struct ClientConnections {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

impl ClientConnections {
    /// Counts a new connection from `ip` unless a cap is reached.
    pub fn try_open(&mut self, ip: IpAddr, per_ip: usize, total: usize) -> Result<(), ClientLimit> {
        if total > 0 && self.total >= total {
            return Err(ClientLimit::Total { limit: total });
        }
        let by_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if per_ip > 0 && by_ip >= per_ip {
            return Err(ClientLimit::PerIp { ip, limit: per_ip });
        }
        *self.per_ip.entry(ip).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    /// Uncounts a connection counted by [`ClientConnections::try_open`].
    pub fn close(&mut self, ip: IpAddr) {
        decrement(&mut self.per_ip, &ip);
        self.total = self.total.saturating_sub(1);
    }

    /// Open connections from all addresses.
    pub fn total(&self) -> usize {
        self.total
    }
}

fn decrement<K, Q>(map: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_identity() {
        let caps = |ip, id| Caps { per_ip: ip, per_identity: id, ..Caps::default() };
        let mut c = ConnectionCounts::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        // Established connections count against their identity.
        for ip in [a, a, b] {
            c.try_open(ip, "x", caps(2, 3)).unwrap();
            c.established(ip, "x");
        }
        assert_eq!(c.try_open(a, "x", caps(2, 3)), Err(LimitExceeded::PerIp { ip: a, limit: 2 }));
        assert!(matches!(c.try_open(b, "x", caps(2, 3)), Err(LimitExceeded::PerIdentity { .. })));
        c.close(a, "x", false);
        assert!(c.try_open(b, "x", caps(2, 3)).is_ok(), "a closed connection frees its slot");
        assert_eq!(c.try_open(b, "y", caps(2, 3)), Err(LimitExceeded::PerIp { ip: b, limit: 2 }), "b is at its address cap");
        let mut unlimited = ConnectionCounts::default();
        for i in 0..1000 {
            assert!(unlimited.try_open(a, "x", caps(0, 0)).is_ok());
            if i % 2 == 0 {
                unlimited.established(a, "x");
            }
        }
        for i in 0..1000 {
            unlimited.close(a, "x", i % 2 == 1);
        }
        assert!(unlimited.per_ip.is_empty() && unlimited.per_identity.is_empty() && unlimited.pending_per_ip.is_empty() && unlimited.pending_total == 0, "no entry outlives its connections");
    }

    #[test]
    fn issue6_pending_handshakes_are_capped_per_address() {
        let caps = Caps { pending_per_ip: 32, ..Caps::default() };
        let mut c = ConnectionCounts::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..32 {
            c.try_open(a, "x", caps).unwrap();
        }
        assert_eq!(c.try_open(a, "x", caps), Err(LimitExceeded::PendingPerIp { ip: a, limit: 32 }));
        assert!(c.try_open(b, "x", caps).is_ok(), "another address is unaffected");
        c.established(a, "x");
        assert!(c.try_open(a, "x", caps).is_ok(), "a completed handshake frees a pending slot");
        assert!(c.try_open(a, "x", caps).is_err());
        c.close(a, "x", true);
        assert_eq!(c.pending(a), 31, "a connection closed during its handshake frees its slot");
        assert!(c.try_open(a, "x", Caps { pending_shadow: true, ..caps }).is_ok() && c.try_open(a, "x", Caps { pending_shadow: true, ..caps }).is_ok(), "shadow mode never refuses");
    }

    #[test]
    fn issue13_pending_handshakes_do_not_fill_an_identitys_cap() {
        let caps = Caps { per_identity: 32, pending_per_ip: 1, pending_total: 100, ..Caps::default() };
        let mut c = ConnectionCounts::default();
        // 40 addresses each hold a handshake open as `default`.
        for i in 0..40u8 {
            c.try_open(IpAddr::from([192, 0, 2, i]), "default", caps).unwrap();
        }
        let newcomer = IpAddr::from([198, 51, 100, 1]);
        assert!(c.try_open(newcomer, "default", caps).is_ok(), "a new address still connects");
        // Established ones do count.
        let caps = Caps { per_identity: 2, ..caps };
        let d = IpAddr::from([203, 0, 113, 9]);
        for i in 0..2u8 {
            let ip = IpAddr::from([203, 0, 113, i]);
            c.try_open(ip, "ops", caps).unwrap();
            c.established(ip, "ops");
        }
        assert!(matches!(c.try_open(d, "ops", caps), Err(LimitExceeded::PerIdentity { limit: 2, .. })));
    }

    #[test]
    fn issue13_client_connections_are_capped_per_address_and_in_total() {
        let mut c = ClientConnections::default();
        let a = IpAddr::from([192, 0, 2, 1]);
        let b = IpAddr::from([192, 0, 2, 2]);
        c.try_open(a, 2, 3).unwrap();
        c.try_open(a, 2, 3).unwrap();
        assert_eq!(c.try_open(a, 2, 3), Err(ClientLimit::PerIp { ip: a, limit: 2 }));
        c.try_open(b, 2, 3).unwrap();
        assert_eq!(c.try_open(b, 2, 3), Err(ClientLimit::Total { limit: 3 }));
        c.close(a);
        assert!(c.try_open(b, 2, 3).is_ok());
        for _ in 0..3 {
            c.close(b);
            c.close(a);
        }
        assert_eq!(c.total(), 0);
        assert!(c.per_ip.is_empty(), "no entry outlives its connections");
    }

    #[test]
    fn issue13_pending_handshakes_are_capped_in_total() {
        let caps = Caps { pending_total: 3, ..Caps::default() };
        let mut c = ConnectionCounts::default();
        for i in 0..3u8 {
            c.try_open(IpAddr::from([192, 0, 2, i]), "default", caps).unwrap();
        }
        assert_eq!(c.try_open(IpAddr::from([192, 0, 2, 9]), "default", caps), Err(LimitExceeded::PendingTotal { limit: 3 }));
        c.established(IpAddr::from([192, 0, 2, 0]), "default");
        assert!(c.try_open(IpAddr::from([192, 0, 2, 9]), "default", caps).is_ok());
    }
}
