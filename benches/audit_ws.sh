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
# shellcheck source=benches/audit_policy.sh
source "$ROOT/benches/audit_policy.sh"
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
  audit_policy "$2" "$3" "$UP" 2 "$4" > "$WORK/$1/policy.toml"
  "$BIN/clawguard" run --policy "$WORK/$1/policy.toml" 2> "$WORK/$1/log" & PIDS+=($!)
  echo $! > "$WORK/$1/pid"
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$3/readyz" 2>/dev/null && return 0; sleep 0.1; done
  echo "clawguard $1 did not start" >&2; cat "$WORK/$1/log" >&2; exit 1
}
OFF=$(port) OFF_ADMIN=$(port) ON=$(port) ON_ADMIN=$(port)
start off "$OFF" "$OFF_ADMIN" 'enabled = false'
# ON_AUDIT adds lines to the audited instance's [audit] (such as `fsync = "never"` or a `dir`).
# AA=1 starts both with the log off: the harness's own bias between its two instances.
if [[ -n ${AA:-} ]]; then
  start on "$ON" "$ON_ADMIN" 'enabled = false'
else
  start on "$ON" "$ON_ADMIN" "record_allowed = \"all\"
${ON_AUDIT:-}"
fi
# cpu_ticks NAME: utime + stime of every thread of that clawguard (the audit writer included).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$WORK/$1/pid")/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {printf "%d", s + 0}'; }
declare -A rps p50 p99 cpu
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
      ticks0=$(cpu_ticks "$name")
      out=$("$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns "$conns" --depth "$depth" --seconds "$SECS")
      sleep 0.3   # the writer drains its queue
      ticks=$(( $(cpu_ticks "$name") - ticks0 ))
      fwd=$(( $(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}') - fwd0 ))
      ref=$(( $(metric "$admin" 'clawguard_decisions_total') - ref0 ))
      rec=$(( $(metric "$admin" 'clawguard_audit_records_total') - rec0 ))
      trips=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["round_trips"])' "$out")
      (( ref == 0 )) || { echo "$name $point: clawguard refused $ref messages" >&2; exit 1; }
      (( fwd >= trips )) || { echo "$name $point: $fwd forwarded for $trips round trips" >&2; exit 1; }
      if [[ $name == on && -z ${AA:-} ]]; then
        # Every forwarded request (round trips, warm-up, connects) is one allowed record, and
        # each connect also a ws.connect record.
        (( rec >= fwd )) || { echo "on $point: $rec audit records for $fwd requests forwarded" >&2; exit 1; }
      else
        (( rec == 0 )) || { echo "off $point: $rec audit records with the log off" >&2; exit 1; }
      fi
      read -r r a b < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["per_second"], d["p50_us"], d["p99_us"])' "$out")
      # CPU per request forwarded (warm-up and connects included, the same on both).
      c=$(python3 -c "print($ticks * $TICK_US / max($fwd, 1))")
      rps[$name.$point]+="$r "; p50[$name.$point]+="$a "; p99[$name.$point]+="$b "; cpu[$name.$point]+="$c "
      echo "round $round $point $name: $r/s p50 $a µs p99 $b µs, $c µs CPU per request" >&2
    done
  done
done
# Medians of each figure, and the median of the ratios within a round: the two runs of a round
# are back to back, so a round's ratio is less exposed to this VM's slow phases (when every
# round trip takes three times as long) than a ratio of medians.
echo "| conns | in flight | answers/s off / on | on/off (medians) | on/off (median of rounds) | p50 µs off / on | p50 added (median of rounds) | p99 µs off / on | clawguard CPU µs per request off / on | CPU on/off (median of rounds) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for point in $POINTS; do
  python3 - "${point%:*}" "${point#*:}" "${rps[off.$point]}" "${rps[on.$point]}" "${p50[off.$point]}" "${p50[on.$point]}" "${p99[off.$point]}" "${p99[on.$point]}" "${cpu[off.$point]}" "${cpu[on.$point]}" <<'PY'
import statistics as st, sys
c, d, *cols = sys.argv[1:]
ro, rn, po, pn, qo, qn, co, cn = ([float(x) for x in col.split()] for col in cols)
m = st.median
print(f"| {c} | {d} | {m(ro):.0f} / {m(rn):.0f} | {m(rn)/m(ro):.3f}× | {m(b / a for a, b in zip(ro, rn)):.3f}× | {m(po):.0f} / {m(pn):.0f} | {m(b - a for a, b in zip(po, pn)):+.0f} µs | {m(qo):.0f} / {m(qn):.0f} | {m(co):.1f} / {m(cn):.1f} | {m(b / a for a, b in zip(co, cn)):.3f}× |")
PY
done
echo
echo "audit records written by the audited instance: $(metric "$ON_ADMIN" 'clawguard_audit_records_total'); log: $(du -sh "$WORK/on/audit" | cut -f1)"
