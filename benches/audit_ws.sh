#!/usr/bin/env bash
# The audit log's cost on the WebSocket path (issue 14): two clawguards of the same release build
# in front of the same upstream, one with the audit log off, one with `record_allowed = "all"`
# (every request recorded, checkpoints every 1000 records, fsync at checkpoints), measured
# alternately at 1, 10 and 50 connections with one request in flight per connection (round
# trips), and at 1 and 10 connections with 32 in flight (pipelined throughput); ROUNDS rounds,
# medians. POINTS="conns:depth …" chooses other points.
#
#   benches/audit_ws.sh [SECONDS_PER_POINT] [ROUNDS]
#
# Each point checks it exercised the real path: every answer is the upstream's (the load client
# fails otherwise), clawguard refused nothing (clawguard_decisions_total does not move), and the
# audited instance recorded one record per request forwarded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-3}
ROUNDS=${2:-3}
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-auditws.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
start() { # start NAME PORT ADMIN AUDIT-LINES
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/policy.toml" <<TOML
[server]
listen = ["127.0.0.1:$2"]
threads = 2
[upstream]
address = "127.0.0.1:$UP"
[admin]
listen = "127.0.0.1:$3"
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
$4
TOML
  "$BIN/clawguard" run --policy "$WORK/$1/policy.toml" 2> "$WORK/$1/log" & PIDS+=($!)
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$3/readyz" 2>/dev/null && return 0; sleep 0.1; done
  echo "clawguard $1 did not start" >&2; cat "$WORK/$1/log" >&2; exit 1
}
OFF=$(port) OFF_ADMIN=$(port) ON=$(port) ON_ADMIN=$(port)
start off "$OFF" "$OFF_ADMIN" 'enabled = false'
start on "$ON" "$ON_ADMIN" 'record_allowed = "all"'
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {printf "%d", s + 0}'; }
declare -A rps p50 p99
POINTS=${POINTS:-"1:1 10:1 50:1 1:32 10:32"}
for point in $POINTS; do
  conns=${point%:*} depth=${point#*:}
  for round in $(seq 1 "$ROUNDS"); do
    order=(off on); (( round % 2 == 0 )) && order=(on off)
    for name in "${order[@]}"; do
      p=$([[ $name == on ]] && echo "$ON" || echo "$OFF"); admin=$([[ $name == on ]] && echo "$ON_ADMIN" || echo "$OFF_ADMIN")
      fwd0=$(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}')
      ref0=$(metric "$admin" 'clawguard_decisions_total')
      rec0=$(metric "$admin" 'clawguard_audit_records_total')
      out=$("$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns "$conns" --depth "$depth" --seconds "$SECS")
      sleep 0.3   # the writer drains its queue
      fwd=$(( $(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}') - fwd0 ))
      ref=$(( $(metric "$admin" 'clawguard_decisions_total') - ref0 ))
      rec=$(( $(metric "$admin" 'clawguard_audit_records_total') - rec0 ))
      trips=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["round_trips"])' "$out")
      (( ref == 0 )) || { echo "$name $point: clawguard refused $ref messages" >&2; exit 1; }
      (( fwd >= trips )) || { echo "$name $point: $fwd forwarded for $trips round trips" >&2; exit 1; }
      if [[ $name == on ]]; then
        # Every forwarded request (round trips, warm-up, connects) is one allowed record, and
        # each connect also a ws.connect record.
        (( rec >= fwd )) || { echo "on $point: $rec audit records for $fwd requests forwarded" >&2; exit 1; }
      else
        (( rec == 0 )) || { echo "off $point: $rec audit records with the log off" >&2; exit 1; }
      fi
      read -r r a b < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["per_second"], d["p50_us"], d["p99_us"])' "$out")
      rps[$name.$point]+="$r "; p50[$name.$point]+="$a "; p99[$name.$point]+="$b "
    done
  done
done
med() { python3 -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' $1; }
echo "| conns | in flight | answers/s off / on | on/off | p50 µs off / on | p50 added | p99 µs off / on |"
echo "|---|---|---|---|---|---|---|"
for point in $POINTS; do
  ro=$(med "${rps[off.$point]}") rn=$(med "${rps[on.$point]}") po=$(med "${p50[off.$point]}") pn=$(med "${p50[on.$point]}") qo=$(med "${p99[off.$point]}") qn=$(med "${p99[on.$point]}")
  python3 -c 'import sys; c,d,ro,rn,po,pn,qo,qn=sys.argv[1:]; ro,rn,po,pn,qo,qn=map(float,(ro,rn,po,pn,qo,qn)); print(f"| {c} | {d} | {ro:.0f} / {rn:.0f} | {rn/ro:.3f}× | {po:.0f} / {pn:.0f} | {pn-po:+.0f} µs | {qo:.0f} / {qn:.0f} |")' "${point%:*}" "${point#*:}" "$ro" "$rn" "$po" "$pn" "$qo" "$qn"
done
echo
echo "audit records written by the audited instance: $(metric "$ON_ADMIN" 'clawguard_audit_records_total'); log: $(du -sh "$WORK/on/audit" | cut -f1)"
