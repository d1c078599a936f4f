#!/usr/bin/env bash
# The cost of a WebSocket request in instructions (issue 17): user-space instructions clawguard
# executes per forwarded request (the request, its answer, the pump around them) in an older
# build and in this one, counted by valgrind's callgrind over the same load in the same run.
# Unlike CPU time on a shared VM, the count hardly varies from run to run (kernel time is not in
# it: benches/run.sh measures that).
#
#   benches/ws_instructions.sh BASELINE_BINARY [SECONDS]   (needs valgrind)
#   KEEP_DUMPS=DIR keeps the callgrind dumps there (for callgrind_annotate).
#
# Each point checks it exercised the real path: the load client fails on any answer that is not
# the upstream's, and each clawguard's metrics must count the requests as forwarded and nothing
# decided otherwise. The audit log is off in both (benches/audit_*.sh measure it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/benches/audit_policy.sh"
BASELINE=${1:?usage: benches/ws_instructions.sh BASELINE_BINARY [SECONDS]}
SECS=${2:-8}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-wsinstr.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n ${KEEP_DUMPS:-} ]]; then mkdir -p "$KEEP_DUMPS" && for n in baseline this; do for f in "$WORK/$n"/cg.*; do cp "$f" "$KEEP_DUMPS/$n.${f##*/}"; done; done 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
start() { # start NAME BINARY PORT ADMIN: one worker thread, under callgrind
  mkdir -p "$WORK/$1"
  audit_policy "$3" "$4" "$UP" 1 'enabled = false' > "$WORK/$1/policy.toml"
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$1/cg" "$2" run --policy "$WORK/$1/policy.toml" 2> "$WORK/$1/log" & PIDS+=($!)
  echo $! > "$WORK/$1/pid"
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$4/readyz" 2>/dev/null && return 0; sleep 0.2; done
  echo "clawguard $1 did not start" >&2; cat "$WORK/$1/log" >&2; exit 1
}
B=$(port) B_ADMIN=$(port) T=$(port) T_ADMIN=$(port)
start baseline "$BASELINE" "$B" "$B_ADMIN"
start this "$BIN/clawguard" "$T" "$T_ADMIN"
echo "| in flight | requests forwarded baseline / this build | instructions per request baseline / this build | this/baseline |"
echo "|---|---|---|---|"
for depth in 1 32; do
  declare -A per count
  for name in baseline this; do
    p=$([[ $name == this ]] && echo "$T" || echo "$B"); admin=$([[ $name == this ]] && echo "$T_ADMIN" || echo "$B_ADMIN")
    "$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns 1 --depth "$depth" --seconds 2 --admin "127.0.0.1:$admin" > /dev/null   # warm-up
    sleep 0.5
    callgrind_control -z "$(cat "$WORK/$name/pid")" > /dev/null 2>&1
    out=$("$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns 1 --depth "$depth" --seconds "$SECS" --admin "127.0.0.1:$admin")
    callgrind_control -d "d$depth" "$(cat "$WORK/$name/pid")" > /dev/null 2>&1
    # --admin made the load client check the metrics: every request and answer forwarded,
    # nothing decided; what it forwarded is what the instructions are divided by.
    fwd=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["forwarded"]["c2s"])' "$out")
    (( fwd > 100 )) || { echo "$name depth $depth: only $fwd requests forwarded" >&2; exit 1; }
    dump=$(ls -t "$WORK/$name/cg".* | head -1)
    per[$name]=$(awk -v n="$fwd" '/^summary:/ {printf "%d", $2 / n}' "$dump")
    count[$name]=$fwd
  done
  python3 -c "import sys; d, fb, ft, b, t = sys.argv[1:]; print(f'| {d} | {fb} / {ft} | {int(b):,} / {int(t):,} | {int(t)/int(b):.3f}× |')" \
    "$depth" "${count[baseline]}" "${count[this]}" "${per[baseline]}" "${per[this]}"
done
