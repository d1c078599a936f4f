#!/usr/bin/env bash
# The cost of shared state on Redis (issue 19): two clawguards of the same release build in front
# of the same upstream, one with `[state] backend = "memory"`, one with `"redis"` (a loopback
# redis-server started here), measured alternately with one connection and one request in
# flight: `chat.send` (counted by the per-session inference limit: one GCRA call to Redis per
# request with the redis backend) and `chat.history` (no shared state: the same work on both).
# ROUNDS rounds, medians; the added p50 per round trip is the redis instance's less the memory
# instance's, per round.
#
#   benches/state_ws.sh [SECONDS_PER_POINT] [ROUNDS]
#
# Each point checks it exercised the real path: every answer is the upstream's (the load client
# fails otherwise), clawguard refused nothing, forwarded one message per round trip, and the
# redis instance made one successful Redis call per chat.send (clawguard_state_calls_total).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/audit_policy.sh
source "$ROOT/benches/audit_policy.sh"
SECS=${1:-3}
ROUNDS=${2:-5}
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-statews.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port) REDIS=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" & PIDS+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
start() { # start NAME PORT ADMIN STATE-LINES
  mkdir -p "$WORK/$1"
  {
    audit_policy "$2" "$3" "$UP" 2 'enabled = false'
    # The stand-in upstream never ends a run: sends are not serialised; the inference limit is
    # on but never reached, so each chat.send is counted and forwarded.
    printf '[sessions]\nserialize_sends = false\n[state]\n%s\n' "$4"
  } | sed 's/^\[limits\]$/[limits]\nsession_inference_per_minute = 4000000000/' > "$WORK/$1/policy.toml"
  REDIS_URL="redis://127.0.0.1:$REDIS/0" "$BIN/clawguard" run --policy "$WORK/$1/policy.toml" 2> "$WORK/$1/log" & PIDS+=($!)
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$3/readyz" 2>/dev/null && return 0; sleep 0.1; done
  echo "clawguard $1 did not start" >&2; cat "$WORK/$1/log" >&2; exit 1
}
MEM=$(port) MEM_ADMIN=$(port) RED=$(port) RED_ADMIN=$(port)
start memory "$MEM" "$MEM_ADMIN" 'backend = "memory"'
start redis "$RED" "$RED_ADMIN" 'backend = "redis"
url = "env:REDIS_URL"'
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {printf "%d", s + 0}'; }
declare -A p50 p99
METHODS=${METHODS:-"chat.send chat.history"}
for method in $METHODS; do
  for round in $(seq 1 "$ROUNDS"); do
    order=(memory redis); (( round % 2 == 0 )) && order=(redis memory)
    for name in "${order[@]}"; do
      p=$([[ $name == redis ]] && echo "$RED" || echo "$MEM"); admin=$([[ $name == redis ]] && echo "$RED_ADMIN" || echo "$MEM_ADMIN")
      fwd0=$(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}')
      ref0=$(metric "$admin" 'clawguard_decisions_total')
      calls0=$(metric "$admin" 'clawguard_state_calls_total{kind="rate",outcome="ok"}')
      out=$("$BIN/clawguard-load" ws --url "ws://127.0.0.1:$p/" --conns 1 --depth 1 --seconds "$SECS" --method "$method")
      fwd=$(( $(metric "$admin" 'clawguard_ws_messages_total{direction="c2s",verdict="forward"}') - fwd0 ))
      ref=$(( $(metric "$admin" 'clawguard_decisions_total') - ref0 ))
      calls=$(( $(metric "$admin" 'clawguard_state_calls_total{kind="rate",outcome="ok"}') - calls0 ))
      trips=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["round_trips"])' "$out")
      (( ref == 0 )) || { echo "$name $method: clawguard refused $ref messages" >&2; exit 1; }
      (( fwd >= trips )) || { echo "$name $method: $fwd forwarded for $trips round trips" >&2; exit 1; }
      if [[ $name == redis && $method == chat.send ]]; then
        (( calls >= trips )) || { echo "redis $method: $calls Redis calls for $trips round trips" >&2; exit 1; }
      else
        (( calls == 0 )) || { echo "$name $method: $calls Redis calls where none was expected" >&2; exit 1; }
      fi
      read -r a b < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["p50_us"], d["p99_us"])' "$out")
      p50[$name.$method]+="$a "; p99[$name.$method]+="$b "
      echo "round $round $method $name: p50 $a µs p99 $b µs ($trips round trips, $calls Redis calls)" >&2
    done
  done
done
echo "| request | p50 µs memory / redis | p50 added by Redis (median of rounds) | p99 µs memory / redis |"
echo "|---|---|---|---|"
for method in $METHODS; do
  python3 - "$method" "${p50[memory.$method]}" "${p50[redis.$method]}" "${p99[memory.$method]}" "${p99[redis.$method]}" <<'PY'
import statistics as st, sys
method, *cols = sys.argv[1:]
pm, pr, qm, qr = ([float(x) for x in col.split()] for col in cols)
m = st.median
print(f"| `{method}` | {m(pm):.0f} / {m(pr):.0f} | {m(b - a for a, b in zip(pm, pr)):+.0f} µs | {m(qm):.0f} / {m(qr):.0f} |")
PY
done
