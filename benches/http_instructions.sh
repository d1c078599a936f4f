#!/usr/bin/env bash
# The cost of the HTTP decision path (issue 12) in instructions: user-space instructions clawguard
# executes per request with the route decision and header rules on, against the same build with
# them off (CLAWGUARD_BENCH_NO_HTTP_DECISIONS), counted by valgrind's callgrind over a fixed
# number of keep-alive requests in the same run. Unlike CPU time on a shared VM, the count does
# not vary from run to run (kernel time is not in it: see http_decisions.sh for that).
#
#   benches/http_instructions.sh [REQUESTS]      (needs valgrind: apt-get install valgrind)
#   KEEP_DUMPS=DIR keeps the callgrind dumps there (for callgrind_annotate).
#
# Each point checks it exercised the real path: every answer is the upstream's 200 (the client
# fails otherwise) and clawguard's metrics count every request as forwarded, none refused.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-2000}
command -v valgrind >/dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-httpinstr.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n ${KEEP_DUMPS:-} ]]; then mkdir -p "$KEEP_DUMPS" && cp "$WORK"/*.cg.* "$KEEP_DUMPS"/ 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
start() { # start NAME PORT ADMIN [ENV...]: one worker thread, under callgrind
  local name=$1 p=$2 admin=$3; shift 3
  cat > "$WORK/$name.toml" <<TOML
[server]
listen = ["127.0.0.1:$p"]
threads = 1
[upstream]
address = "127.0.0.1:$UP"
[admin]
listen = "127.0.0.1:$admin"
[logging]
level = "warn"
[limits]
http_tools_invoke_per_minute = 1000000000
http_inference_per_minute = 1000000000
# The audit log (on by default, recording what writes, grants or runs) is measured by
# benches/audit_*.sh; here both instances leave it off, so only the decision path differs.
[audit]
enabled = false
TOML
  env "$@" valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.cg" "$BIN/clawguard" run --policy "$WORK/$name.toml" 2> "$WORK/$name.log" & PIDS+=($!)
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null && return 0; sleep 0.2; done
  echo "clawguard $name did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}
ON=$(port) ON_ADMIN=$(port) OFF=$(port) OFF_ADMIN=$(port)
start on "$ON" "$ON_ADMIN"
start off "$OFF" "$OFF_ADMIN" CLAWGUARD_BENCH_NO_HTTP_DECISIONS=1
[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ON/nowhere") == 404 ]] || { echo "decisions are not on" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$OFF/nowhere") == 200 ]] || { echo "the baseline is not off" >&2; exit 1; }
cat > "$WORK/client.py" <<'PY'
import http.client, sys
port, n, route = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
body = b'{"tool":"web_search","sessionKey":"agent:main:local","args":{"query":"clawguard"}}'
for _ in range(n):
    if route == "GET":
        c.request("GET", "/v1/models")
    else:
        c.request("POST", "/tools/invoke", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    answer = r.read()
    if r.status != 200 or answer != b"hello, world\n":
        sys.exit(f"{route}: answer {r.status} {answer[:80]!r} is not the upstream's")
PY
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $2} END {print s + 0}'; }
echo "| route | requests | instructions per request off / on | on/off |"
echo "|---|---|---|---|"
for route in GET POST; do
  declare -A per
  for name in off on; do
    p=$([[ $name == on ]] && echo "$ON" || echo "$OFF"); admin=$([[ $name == on ]] && echo "$ON_ADMIN" || echo "$OFF_ADMIN")
    python3 "$WORK/client.py" "$p" 300 "$route"   # warm-up: connections, caches, allocator
    forwarded=$(metric "$admin" 'clawguard_requests_total{kind="http",verdict="forward"}')
    refused_before=$(metric "$admin" 'clawguard_http_decisions_total')
    callgrind_control -z "$(cat "$WORK/$name.pid")" > /dev/null 2>&1
    python3 "$WORK/client.py" "$p" "$N" "$route"
    callgrind_control -d "$route" "$(cat "$WORK/$name.pid")" > /dev/null 2>&1
    after=$(metric "$admin" 'clawguard_requests_total{kind="http",verdict="forward"}')
    (( after - forwarded == N )) || { echo "$name $route: clawguard counted $((after - forwarded)) of $N requests forwarded" >&2; exit 1; }
    refused=$(( $(metric "$admin" 'clawguard_http_decisions_total') - refused_before ))
    (( refused == 0 )) || { echo "$name $route: clawguard refused $refused requests" >&2; exit 1; }
    dump=$(ls -t "$WORK/$name.cg".* | head -1)
    per[$name]=$(awk -v n="$N" '/^summary:/ {printf "%d", $2 / n}' "$dump")
  done
  python3 -c "import sys; r, n, off, on = sys.argv[1:]; print(f'| {r} | {n} | {int(off):,} / {int(on):,} | {int(on)/int(off):.3f}× |')" \
    "$([[ $route == GET ]] && echo 'GET /v1/models' || echo 'POST /tools/invoke')" "$N" "${per[off]}" "${per[on]}"
done
