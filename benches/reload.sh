#!/usr/bin/env bash
# Policy reload under open connections (issue 15): one release clawguard in front of the lean
# upstream (`clawguard-load upstream`), CONNS WebSocket connections held open (default 1000),
# ROUNDS rounds of: a reload to a version that allows them (timed: the admin answer's wall time
# and clawguard's own `last_reload_ms`, read to in force; then every connection must still get
# the upstream's answer), and a reload to a version whose ceiling they exceed (timed until the
# last of them is closed with 1008 "policy changed", with no traffic on them).
#
#   benches/reload.sh [CONNS] [ROUNDS]
#
# Target: a reload under 1,000 open connections in under 100 ms.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/audit_policy.sh
source "$ROOT/benches/audit_policy.sh"
CONNS=${1:-1000}
ROUNDS=${2:-3}
# Two sockets per connection in clawguard, one in the load client: raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)"
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-reload.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port) CG=$(port) ADMIN=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
# The audit log's policy with connection counts lifted too (one client address holds them all).
audit_policy "$CG" "$ADMIN" "$UP" 2 'enabled = false' | sed 's/^threads = 2$/threads = 2\nmax_connections_per_ip = 0/' > "$WORK/policy.toml"
printf '[websocket]\nmax_connections_per_ip = 0\nmax_connections_per_identity = 0\n' >> "$WORK/policy.toml"
"$BIN/clawguard" run --policy "$WORK/policy.toml" 2> "$WORK/log" & PIDS+=($!)
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { cat "$WORK/log" >&2; exit 1; }
"$BIN/clawguard-load" reload --url "ws://127.0.0.1:$CG/" --admin "127.0.0.1:$ADMIN" --policy "$WORK/policy.toml" \
  --tighten-from 'scopes = ["operator.read", "operator.write"]' --tighten-to 'scopes = ["operator.read"]' \
  --conns "$CONNS" --rounds "$ROUNDS" | tee "$WORK/rounds.jsonl"
python3 - "$WORK/rounds.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda k: statistics.median(r[k] for r in rows)
print(f"{rows[0]['connections']} open connections, {len(rows)} rounds (medians):")
print(f"  reload to a version that keeps them: {med('reload_server_ms'):.1f} ms in clawguard (read, validated, compiled, in force), {med('reload_wall_ms'):.1f} ms for POST /reload; all {rows[0]['connections']} answered after it")
print(f"  reload to a version they exceed: the last of them closed (1008 policy changed) {med('all_closed_ms'):.1f} ms after POST /reload")
PY
