#!/usr/bin/env bash
# The cost of the HTTP decision path (issue 12): requests per second through clawguard with the
# route decision and header rules on, against the same build with them off
# (CLAWGUARD_BENCH_NO_HTTP_DECISIONS), both in front of the same upstream in the same run.
#
#   benches/http_decisions.sh [SECONDS_PER_POINT] [ROUNDS]      (needs wrk: apt-get install wrk)
#
# The machine is shared and two-core, so wall-clock throughput of the same binary varies by 2× from
# one 3 s point to the next (an A/A run showed it); what is compared is therefore also the CPU time
# clawguard spends per request (utime + stime of the process, /proc/PID/stat, over the point),
# whose inverse is the requests per second one core of clawguard serves: the capacity ratio.
#
# Points: GET /v1/models (a route judged on its head: identity, method list, scopes) and
# POST /tools/invoke (the body held, parsed and judged: tool lists, session ownership, limits),
# at 1, 10 and 50 connections; each point ROUNDS times in alternating order, medians reported.
# Each point checks it exercised the real path: every answer is the upstream's 200, and
# clawguard's metrics show the requests forwarded and none refused.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-3}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-httpbench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port)
"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
start() { # start NAME PORT ADMIN [ENV...]
  local name=$1 p=$2 admin=$3; shift 3
  cat > "$WORK/$name.toml" <<TOML
[server]
listen = ["127.0.0.1:$p"]
threads = 2
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
  env "$@" "$BIN/clawguard" run --policy "$WORK/$name.toml" 2> "$WORK/$name.log" & PIDS+=($!)
  echo $! > "$WORK/$name.pid"
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null && return 0; sleep 0.1; done
  echo "clawguard $name did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}
ON=$(port) ON_ADMIN=$(port) OFF=$(port) OFF_ADMIN=$(port)
start on "$ON" "$ON_ADMIN"
start off "$OFF" "$OFF_ADMIN" CLAWGUARD_BENCH_NO_HTTP_DECISIONS=1
# The decision path is really on: an unlisted POST is refused by "on", forwarded by "off".
[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ON/nowhere") == 404 ]] || { echo "decisions are not on" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$OFF/nowhere") == 200 ]] || { echo "the baseline is not off" >&2; exit 1; }
on_refused_before=$(curl -s "http://127.0.0.1:$ON_ADMIN/metrics" | awk '/^clawguard_http_decisions_total/ {s += $2} END {print s + 0}')
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"tool":"web_search","sessionKey":"agent:main:local","args":{"query":"clawguard"}}'
wrk.headers["Content-Type"] = "application/json"
LUA
# cpu_ticks PID: utime + stime of every thread of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# wrk_point URL CONNS PID [SCRIPT] -> "rps p50_us non2xx cpu_us_per_request"
wrk_point() {
  local script=(); [[ -n ${4:-} ]] && script=(-s "$4")
  local before after
  before=$(cpu_ticks "$3")
  wrk -t1 -c"$2" -d"${SECS}s" --latency "${script[@]}" "$1" > "$WORK/wrk.out"
  after=$(cpu_ticks "$3")
  python3 - "$WORK/wrk.out" $(( (after - before) * TICK_US )) <<'PY'
import re, sys
text = open(sys.argv[1]).read()
cpu_us = int(sys.argv[2])
def us(v):
    n, unit = float(re.match(r"([\d.]+)", v).group(1)), re.sub(r"[\d.]", "", v)
    return n * {"us": 1, "ms": 1000, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
p50 = us(re.search(r"\s50%\s+(\S+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print(f"{rps:.0f} {p50:.0f} {bad.group(1) if bad else 0} {cpu_us / max(total, 1):.2f}")
PY
}
forwarded() { curl -s "http://127.0.0.1:$1/metrics" | awk '/^clawguard_requests_total\{kind="http",verdict="forward"\}/ {print $2}'; }
echo "| route | conns | rps off / on | rps on/off | p50 µs off / on | clawguard CPU µs per request off / on | capacity on/off |"
echo "|---|---|---|---|---|---|---|"
for route in "GET /v1/models" "POST /tools/invoke"; do
  path=${route#* }; script=""; [[ $route == POST* ]] && script="$WORK/post.lua"
  for c in 1 10 50; do
    : > "$WORK/point"
    for round in $(seq 1 "$ROUNDS"); do
      order=(off:$OFF on:$ON); (( round % 2 == 0 )) && order=(on:$ON off:$OFF)
      for target in "${order[@]}"; do
        name=${target%%:*}
        echo "$name $(wrk_point "http://127.0.0.1:${target##*:}$path" "$c" "$(cat "$WORK/$name.pid")" "$script")" >> "$WORK/point"
      done
    done
    python3 - "$route" "$c" "$WORK/point" <<'PY'
import statistics, sys
route, c, path = sys.argv[1:]
rows = {}
for line in open(path):
    name, rate, p50, bad, cpu = line.split()
    if int(bad):
        sys.exit(f"{route} at {c} connections: {bad} answers were not the upstream's 200 ({name})")
    rows.setdefault(name, []).append((float(rate), float(p50), float(cpu)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
off, on = med["off"], med["on"]
print(f"| {route} | {c} | {off[0]:.0f} / {on[0]:.0f} | {on[0]/off[0]:.3f}× | {off[1]:.0f} / {on[1]:.0f} | {off[2]:.1f} / {on[2]:.1f} | {off[2]/on[2]:.3f}× |")
PY
  done
done
on_refused_after=$(curl -s "http://127.0.0.1:$ON_ADMIN/metrics" | awk '/^clawguard_http_decisions_total/ {s += $2} END {print s + 0}')
if [[ $on_refused_after != "$on_refused_before" ]]; then echo "clawguard refused requests during the run ($on_refused_before → $on_refused_after)" >&2; exit 1; fi
echo
echo "forwarded by clawguard (decisions on): $(forwarded "$ON_ADMIN"), (off): $(forwarded "$OFF_ADMIN"); refused during the run: 0"
