#!/usr/bin/env bash
# Load harness: HTTP and WebSocket request/response, direct to the upstream, through clawguard
# and through nginx (Debian's, as a plain reverse proxy), at 1, 10 and 50 connections, all in
# one run on this machine. Prints a markdown table with ratios; see docs/benchmarks.md.
#
#   benches/run.sh [SECONDS_PER_POINT] [ROUNDS]    (needs wrk and nginx: apt-get install wrk nginx-light)
#
# Each point is measured ROUNDS times (default 3), the targets in a rotated order each
# round, and the medians are reported: on a shared 2-core machine a single sequential
# measurement drifts too much to compare.
#
# PROTOS="ws" (or "http") measures one protocol only.
# BASELINE=/path/to/an/older/clawguard adds that binary as a fourth target with the same
# policy, for a before/after comparison in the same run (a second table, "this build / baseline").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-3}
ROUNDS=${2:-3}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nginx is needed: apt-get install nginx-light" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p clawguard -p clawguard-benches)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK=$(mktemp -d -t clawguard-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -f $WORK/nginx.pid ]] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
UP=$(port) CG=$(port) CG_ADMIN=$(port) NG=$(port) BASE=$(port) BASE_ADMIN=$(port)

"$BIN/clawguard-load" upstream --listen "127.0.0.1:$UP" & PIDS+=($!)
cat > "$WORK/clawguard.toml" <<TOML
[server]
listen = ["127.0.0.1:$CG"]
threads = 2
[upstream]
address = "127.0.0.1:$UP"
[admin]
listen = "127.0.0.1:$CG_ADMIN"
[logging]
level = "warn"
# Every limit is checked on every message, as in production, with budgets a load test cannot
# exhaust (the harness itself is one address opening 50 connections at once).
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
http_hooks_per_minute = 1000000000
# The load's connect and requests are granted (read and write, every session), so every
# WebSocket request is judged and forwarded; the load client fails on any answer that is not
# the upstream's.
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
TOML
"$BIN/clawguard" run --policy "$WORK/clawguard.toml" 2> "$WORK/clawguard.log" & PIDS+=($!)
if [[ -n ${BASELINE:-} ]]; then
  sed -e "s/127.0.0.1:$CG\"/127.0.0.1:$BASE\"/" -e "s/127.0.0.1:$CG_ADMIN\"/127.0.0.1:$BASE_ADMIN\"/" "$WORK/clawguard.toml" > "$WORK/baseline.toml"
  "$BASELINE" run --policy "$WORK/baseline.toml" 2> "$WORK/baseline.log" & PIDS+=($!)
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$BASE_ADMIN/readyz" 2>/dev/null && break; sleep 0.1; done
fi
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  upstream gateway { server 127.0.0.1:$UP; keepalive 64; }
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_buffering off;
    }
  }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -g 'daemon on;'
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$CG_ADMIN/readyz" 2>/dev/null && break; sleep 0.1; done

# http_counts ADMIN -> "forwarded refused errors decided 2xx": clawguard's HTTP counters
# (requests forwarded, answered by clawguard itself, failed, HTTP decisions, 2xx answers).
http_counts() {
  curl -fsS "http://$1/metrics" | python3 -c '
import re, sys
fwd = ref = err = dec = ok = 0
for line in sys.stdin:
    if line.startswith("#"):
        continue
    series, value = line.rsplit(" ", 1)
    n = int(float(value))
    if series.startswith("clawguard_requests_total{") and "kind=\"http\"" in series:
        if "verdict=\"forward\"" in series:
            fwd += n
        elif "verdict=\"refuse\"" in series:
            ref += n
        else:
            err += n
    elif series.startswith("clawguard_http_decisions_total{"):
        dec += n
    elif series.startswith("clawguard_http_responses_total{") and "status_class=\"2xx\"" in series:
        ok += n
print(fwd, ref, err, dec, ok)'
}
# wrk_point URL CONNS [ADMIN] -> "rps p50_us p99_us"; fails on any answer that is not a 2xx.
# With ADMIN (a clawguard's admin listener) it also fails unless that clawguard forwarded every
# request wrk counted (and at most one more per connection: those in flight when wrk stopped,
# which may also end as errors when wrk hangs up), answered none itself, recorded no HTTP
# decision, and sent the upstream's 2xx for each.
wrk_point() {
  local before="" after
  [[ -n ${3:-} ]] && before=$(http_counts "$3")
  wrk -t1 -c"$2" -d"${SECS}s" --latency "$1" > "$WORK/wrk.out"
  [[ -n ${3:-} ]] && after=$(http_counts "$3")
  python3 - "$2" "$before" "${after:-}" "$WORK/wrk.out" <<'PY'
import re, sys
conns, before, after, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
text = open(path).read()
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
if bad or "Socket errors" in text:
    sys.exit(f"wrk saw answers that are not the upstream 200s: {text}")
def us(v):
    n, unit = float(re.match(r"([\d.]+)", v).group(1)), re.sub(r"[\d.]", "", v)
    return n * {"us": 1, "ms": 1000, "s": 1e6}[unit]
done = int(re.search(r"(\d+) requests in", text).group(1))
if before:
    fwd, ref, err, dec, ok = (a - b for a, b in zip(map(int, after.split()), map(int, before.split())))
    if ref or dec or err > conns:
        sys.exit(f"clawguard answered {ref} requests itself, {err} failed and it recorded {dec} HTTP decisions: the point did not measure forwarding")
    if not done <= fwd <= done + conns or not done <= ok <= done + conns:
        sys.exit(f"wrk counted {done} answers; clawguard forwarded {fwd} and sent {ok} 2xx answers")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = us(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = us(re.search(r"\s99%\s+(\S+)", text).group(1))
print(f"{rps:.0f} {p50:.0f} {p99:.0f}")
PY
}
# ws_point URL CONNS [ADMIN] -> "rate p50 p99"; with ADMIN (a clawguard's admin listener) the
# load client fails the point unless that clawguard forwarded every message and decided nothing.
ws_point() {
  "$BIN/clawguard-load" ws --url "$1" --conns "$2" --seconds "$SECS" ${3:+--admin "$3"} | python3 -c '
import json, sys
d = json.load(sys.stdin)
rate, p50, p99 = d["per_second"], d["p50_us"], d["p99_us"]
print(f"{rate:.0f} {p50:.0f} {p99:.0f}")'
}

echo "| protocol | conns | direct rps | clawguard rps | nginx rps | clawguard/direct | clawguard/nginx | p50 µs direct / clawguard / nginx | p99 µs direct / clawguard / nginx | clawguard p50 added |"
echo "|---|---|---|---|---|---|---|---|---|---|"
point() { # point PROTO TARGET_PORT CONNS [ADMIN] -> "rate p50 p99"
  if [[ $1 == http ]]; then wrk_point "http://127.0.0.1:$2/" "$3" "${4:-}"; else ws_point "ws://127.0.0.1:$2/" "$3" "${4:-}"; fi
}
for proto in ${PROTOS:-http ws}; do
  for c in 1 10 50; do
    : > "$WORK/point"
    for round in $(seq 1 "$ROUNDS"); do
      order=(direct:$UP: clawguard:$CG:127.0.0.1:$CG_ADMIN nginx:$NG:)
      [[ -n ${BASELINE:-} ]] && order+=(baseline:$BASE:127.0.0.1:$BASE_ADMIN)
      for i in $(seq 0 $(( (round - 1) % ${#order[@]} ))); do order=("${order[@]:1}" "${order[0]}"); done
      for target in "${order[@]}"; do
        IFS=: read -r name tport admin_host admin_port <<< "$target"
        # A point that did not measure what it claims (a refusal, an answer not the upstream's)
        # ends the run.
        figures=$(point "$proto" "$tport" "$c" "${admin_host:+$admin_host:$admin_port}") || { echo "the $proto point through $name at $c connections failed its checks" >&2; exit 1; }
        echo "$name $figures" >> "$WORK/point"
      done
    done
    python3 - "$proto" "$c" "$WORK/point" <<'PY'
import statistics, sys
proto, c, path = sys.argv[1:]
rows = {}
for line in open(path):
    name, rate, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(rate), float(p50), float(p99)))
med = {k: [statistics.median(x[i] for x in v) for i in range(3)] for k, v in rows.items()}
d, g, n = med["direct"], med["clawguard"], med["nginx"]
print(f"| {proto} | {c} | {d[0]:.0f} | {g[0]:.0f} | {n[0]:.0f} | {g[0]/d[0]:.2f}× | {g[0]/n[0]:.2f}× | "
      f"{d[1]:.0f} / {g[1]:.0f} / {n[1]:.0f} | {d[2]:.0f} / {g[2]:.0f} / {n[2]:.0f} | +{g[1]-d[1]:.0f} µs |")
if "baseline" in med:
    b = med["baseline"]
    with open(path + ".baseline", "a") as out:
        out.write(f"| {proto} | {c} | {b[0]:.0f} / {g[0]:.0f} | {g[0]/b[0]:.2f}× | {b[1]:.0f} / {g[1]:.0f} | {g[1]-b[1]:+.0f} µs | {b[2]:.0f} / {g[2]:.0f} |\n")
PY
    [[ -f $WORK/point.baseline ]] && cat "$WORK/point.baseline" >> "$WORK/baseline.table" && rm "$WORK/point.baseline"
  done
done
if [[ -n ${BASELINE:-} ]]; then
  echo
  echo "| protocol | conns | rps baseline / this build | this build / baseline | p50 µs baseline / this build | p50 change | p99 µs baseline / this build |"
  echo "|---|---|---|---|---|---|---|"
  cat "$WORK/baseline.table"
fi
if grep -qiE "panicked|error" "$WORK/clawguard.log"; then echo "clawguard logged errors:" >&2; grep -iE "panicked|error" "$WORK/clawguard.log" | head >&2; fi
