# Sourced by audit_ws.sh and audit_instructions.sh: the policy both give their two clawguards.
# audit_policy LISTEN_PORT ADMIN_PORT UPSTREAM_PORT THREADS AUDIT_LINES: prints it. Every
# per-address and per-connection limit is lifted (one load client from one address), and the
# loopback identity `bench` may read and write every session, so each request is judged and
# forwarded, not refused.
audit_policy() {
  cat <<TOML
[server]
listen = ["127.0.0.1:$1"]
threads = $4
[upstream]
address = "127.0.0.1:$3"
[admin]
listen = "127.0.0.1:$2"
[logging]
level = "warn"
[limits]
ip_connections_per_second = 1000000
ip_connections_burst = 1000000
ip_pending_handshakes = 0
ip_handshakes_per_minute = 1000000000
connection_messages_per_second = 1000000000
connection_messages_burst = 1000000000
connection_bytes_per_second = 1000000000
connection_bytes_burst = 1000000000
gateway_messages_per_second = 1000000000
gateway_bytes_per_second = 1000000000
[[identity]]
name = "bench"
roles = ["operator"]
scopes = ["operator.read", "operator.write"]
sessions = ["**"]
[identity.match]
cidr = ["127.0.0.0/8"]
[[identity]]
name = "default"
scopes = []
[audit]
$5
TOML
}
