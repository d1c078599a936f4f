#!/usr/bin/env bash
# The audit log's cost on the WebSocket path (issue 14) in instructions: user-space instructions
# clawguard executes per forwarded request with `record_allowed = "all"` (every request
# recorded), against the same build with the audit log off, counted by valgrind's callgrind
# (every thread, the audit writer included) over the same load in the same run. Unlike time on
# a shared VM, the count hardly varies from run to run (kernel time is not in it: see
# audit_ws.sh for wall-clock figures). Caveat: valgrind does not offer the CPU's SHA extensions,
# so under callgrind sha2 runs its software path (about 40 % of the audited instance's count in
# session 8); the count overstates the hashing against a real run.
#
#   benches/audit_instructions.sh [SECONDS]      (needs valgrind: apt-get install valgrind)
#   KEEP_DUMPS=DIR keeps the callgrind dumps there (for callgrind_annotate).
#
# Each point checks it exercised the real path: every answer is the upstream's (the load client
# fails otherwise), clawguard refused nothing, and the audited instance wrote one record per
# request forwarded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/audit_policy.sh
source "$ROOT/benches/audit_policy.sh"
SECS=${1:-8}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-auditinstr.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n ${KEEP_DUMPS:-} ]]; then mkdir -p "$KEEP_DUMPS" && for n in off on; do for f in "$WORK/$n"/cg.*; do cp "$f" "$KEEP_DUMPS/$n.${f##*/}"; done; done 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
start() { # start NAME PORT ADMIN AUDIT-LINES: one worker thread, under callgrind
  mkdir -p "$WORK/$1"
  audit_policy "$2" "$3" "$UP" 1 "$4" > "$WORK/$1/policy.toml"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$1/cg" "$BIN/clawguard" run --policy "$WORK/$1/policy.toml" 2> "$WORK/$1/log" & PIDS+=($!)
  echo $! > "$WORK/$1/pid"
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$3/readyz" 2>/dev/null && return 0; sleep 0.2; done
  echo "clawguard $1 did not start" >&2; cat "$WORK/$1/log" >&2; exit 1
}
OFF=$(port) OFF_ADMIN=$(port) ON=$(port) ON_ADMIN=$(port)
start off "$OFF" "$OFF_ADMIN" 'enabled = false'
start on "$ON" "$ON_ADMIN" 'record_allowed = "all"'
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {printf "%d", s + 0}'; }
echo "| in flight | requests forwarded off / on | instructions per request off / on | on/off |"
echo "|---|---|---|---|"
for depth in 1 32; do
  declare -A per count
  for name in off on; do
    p=$([[ $name == on ]] && echo "$ON" || echo "$OFF"); admin=$([[ $name == on ]] && echo "$ON_ADMIN" || echo "$OFF_ADMIN")
    "$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns 1 --depth "$depth" --seconds 2 > /dev/null   # warm-up
    sleep 0.5
    fwd0=$(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}')
    ref0=$(metric "$admin" 'clawguard_decisions_total')
    rec0=$(metric "$admin" 'clawguard_audit_records_total')
    callgrind_control -z "$(cat "$WORK/$name/pid")" > /dev/null 2>&1
    "$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns 1 --depth "$depth" --seconds "$SECS" > /dev/null
    sleep 0.5   # the writer drains its queue
    callgrind_control -d "d$depth" "$(cat "$WORK/$name/pid")" > /dev/null 2>&1
    fwd=$(( $(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}') - fwd0 ))
    ref=$(( $(metric "$admin" 'clawguard_decisions_total') - ref0 ))
    rec=$(( $(metric "$admin" 'clawguard_audit_records_total') - rec0 ))
    (( fwd > 100 )) || { echo "$name depth $depth: only $fwd requests forwarded" >&2; exit 1; }
    (( ref == 0 )) || { echo "$name depth $depth: clawguard refused $ref messages" >&2; exit 1; }
    if [[ $name == on ]]; then
      (( rec >= fwd )) || { echo "on depth $depth: $rec audit records for $fwd requests forwarded" >&2; exit 1; }
    else
      (( rec == 0 )) || { echo "off depth $depth: $rec audit records with the log off" >&2; exit 1; }
    fi
    dump=$(ls -t "$WORK/$name/cg".* | head -1)
    per[$name]=$(awk -v n="$fwd" '/^summary:/ {printf "%d", $2 / n}' "$dump")
    count[$name]=$fwd
  done
  python3 -c "import sys; d, fo, fn, off, on = sys.argv[1:]; print(f'| {d} | {fo} / {fn} | {int(off):,} / {int(on):,} | {int(on)/int(off):.3f}× |')" \
    "$depth" "${count[off]}" "${count[on]}" "${per[off]}" "${per[on]}"
done
