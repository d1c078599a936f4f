//! What is known about the other end of a connection before any frame is read: its address,
//! whether it came over TLS, and the client certificate it presented (mTLS). Identity
//! matching works from this.

use std::net::IpAddr;

/// A verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// Lowercase hex SHA-256 of the certificate's DER bytes (its fingerprint).
    pub sha256: String,
    /// The subject's organization, when present.
    pub organization: Option<String>,
    /// The serial number, when present.
    pub serial: Option<String>,
}

/// The peer of one request or connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The TCP peer address.
    pub ip: IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate, when the TLS client presented one (it was verified in the handshake).
    pub client_cert: Option<ClientCert>,
}
