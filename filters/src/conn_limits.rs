//! Open-connection counts per client address and per identity, with their caps.

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
    /// Too many as one identity.
    #[error("identity {identity:?} already has {limit} open WebSocket connections (websocket.max_connections_per_identity)")]
    PerIdentity {
        /// The identity.
        identity: String,
        /// The cap.
        limit: usize,
    },
}

/// Open connections by address and identity.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    per_ip: HashMap<IpAddr, usize>,
    per_identity: HashMap<String, usize>,
}

impl ConnectionCounts {
    /// Counts a new connection unless a cap (0: none) is reached.
    pub fn try_open(&mut self, ip: IpAddr, identity: &str, max_per_ip: usize, max_per_identity: usize) -> Result<(), LimitExceeded> {
        let by_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if max_per_ip > 0 && by_ip >= max_per_ip {
            return Err(LimitExceeded::PerIp { ip, limit: max_per_ip });
        }
        let by_identity = self.per_identity.get(identity).copied().unwrap_or(0);
        if max_per_identity > 0 && by_identity >= max_per_identity {
            return Err(LimitExceeded::PerIdentity { identity: identity.to_string(), limit: max_per_identity });
        }
        *self.per_ip.entry(ip).or_default() += 1;
        *self.per_identity.entry(identity.to_string()).or_default() += 1;
        Ok(())
    }

    /// Uncounts a connection opened with [`ConnectionCounts::try_open`].
    pub fn close(&mut self, ip: IpAddr, identity: &str) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        if let Some(n) = self.per_identity.get_mut(identity) {
            *n -= 1;
            if *n == 0 {
                self.per_identity.remove(identity);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_identity() {
        let mut c = ConnectionCounts::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(c.try_open(a, "x", 2, 3).is_ok());
        assert!(c.try_open(a, "x", 2, 3).is_ok());
        assert_eq!(c.try_open(a, "x", 2, 3), Err(LimitExceeded::PerIp { ip: a, limit: 2 }));
        assert!(c.try_open(b, "x", 2, 3).is_ok());
        assert!(matches!(c.try_open(b, "x", 2, 3), Err(LimitExceeded::PerIdentity { .. })));
        c.close(a, "x");
        assert!(c.try_open(b, "x", 2, 3).is_ok(), "a closed connection frees its slot");
        assert_eq!(c.try_open(b, "y", 2, 3), Err(LimitExceeded::PerIp { ip: b, limit: 2 }), "b is at its address cap");
        let mut unlimited = ConnectionCounts::default();
        for _ in 0..1000 {
            assert!(unlimited.try_open(a, "x", 0, 0).is_ok());
        }
        for _ in 0..1000 {
            unlimited.close(a, "x");
        }
        assert!(unlimited.per_ip.is_empty() && unlimited.per_identity.is_empty(), "no entry outlives its connections");
    }
}
