# Sourced by the spend and shared-state e2e scripts (issue 19): a real gateway whose default
# model is the suite's own priced provider (tests/e2e/fake-llm.py: every completion 1000 input
# + 500 output tokens, configured as `fake/m1` at 10 / 20 USD per million tokens, so each run
# costs $0.02 in the gateway's own accounting), and the clients the scripts share.
# Needs E2E and WORK; sets TOKEN, TOKEN_SHA256, GW_PORT, LLM_PORT (the provider's /stats).

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pass() { echo "ok - $1"; }
fail() { echo "not ok - $1: $2"; }

# start_priced_gateway NAME: the provider and the gateway, state in $WORK/NAME-gw.
start_priced_gateway() {
  local name=$1
  TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  TOKEN_SHA256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
  GW_PORT=$(free_port) LLM_PORT=$(free_port)
  python3 "$E2E/fake-llm.py" "$LLM_PORT" 1000 500 > "$WORK/$name-llm.log" 2>&1 &
  echo $! > "$WORK/$name-llm.pid"
  cat > "$WORK/$name-gw.json" <<JSON
{
  "gateway": { "mode": "local", "port": $GW_PORT, "bind": "loopback", "auth": { "mode": "token", "token": "$TOKEN" },
    "trustedProxies": ["127.0.0.1"] },
  "models": { "mode": "merge", "providers": { "fake": { "baseUrl": "http://127.0.0.1:$LLM_PORT/v1", "apiKey": "fake-key", "api": "openai-completions",
    "models": [ { "id": "m1", "name": "M1", "reasoning": false, "input": ["text"], "cost": { "input": 10, "output": 20, "cacheRead": 0, "cacheWrite": 0 },
      "contextWindow": 128000, "maxTokens": 4000 } ] } } },
  "agents": { "defaults": { "heartbeat": { "every": "0m" }, "model": { "primary": "fake/m1" } } },
  "update": { "checkOnStart": false },
  "nodeHost": { "autoUpdate": { "enabled": false } }
}
JSON
  "$E2E/openclaw.sh" start "$GW_PORT" "$TOKEN" "$WORK/$name-gw" "$WORK/$name-gw.json" 2> "$WORK/$name-gw.err"
}

# stop_priced_gateway NAME
stop_priced_gateway() {
  "$E2E/openclaw.sh" stop "$WORK/$1-gw" 2>/dev/null
  [[ -f "$WORK/$1-llm.pid" ]] && kill "$(cat "$WORK/$1-llm.pid")" 2>/dev/null
}

# metric ADMIN_PORT SERIES: a metric's value (0 when absent), e.g. 'clawguard_spend_usd{budget="daily"}'.
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'; }

# wait_ready ADMIN_PORT: until clawguard's /readyz answers 200 (30 s).
wait_ready() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

# wait_polled ADMIN_PORT: until the spend poll has read a first report (runs are refused as
# SPEND_UNKNOWN before; 120 s).
wait_polled() {
  for _ in $(seq 1 240); do
    curl -s "http://127.0.0.1:$1/metrics" | grep -q '^clawguard_spend_polls_total{outcome="ok"} [1-9]' && return 0
    sleep 0.5
  done
  return 1
}

# wait_spend ADMIN_PORT AT_LEAST: until budget "daily" has measured at least that much (120 s:
# the poll interval plus the gateway's 30 s usage cache).
wait_spend() {
  for _ in $(seq 1 240); do
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) - 1e-9 else 1)' "$(metric "$1" 'clawguard_spend_usd{budget="daily"}')" "$2" && return 0
    sleep 0.5
  done
  return 1
}

# send_run PORT N NAME: one chat.send through clawguard at PORT on the operator's main session,
# listening 8 s for the run to finish; prints the answer.
send_run() {
  (
    # shellcheck disable=SC1091
    source "$WORK/$3-gw/env.sh"
    WS_REQUESTS="[[\"chat.send\",{\"sessionKey\":\"main\",\"message\":\"run $2\",\"idempotencyKey\":\"run-$2-$$\"}]]" WS_LISTEN_MS=8000 \
      node "$E2E/ws-session.cjs" "ws://127.0.0.1:$1" "$TOKEN" operator.read,operator.write 127.0.0.1
  )
}

# gateway_usd NAME: the gateway's own usage.cost total for today, asked directly.
gateway_usd() {
  (
    # shellcheck disable=SC1091
    source "$WORK/$1-gw/env.sh"
    WS_REQUESTS="[[\"usage.cost\",{\"startDate\":\"$(date -u +%F)\",\"endDate\":\"$(date -u +%F)\",\"mode\":\"utc\"}]]" \
      node "$E2E/ws-session.cjs" "ws://127.0.0.1:$GW_PORT" "$TOKEN" operator.read 127.0.0.1 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["responses"][0]["payload"]["totals"]["totalCost"])' 2>/dev/null || echo 0
  )
}

# same_usd A B: whether two figures agree (to 1e-6) and are above 0.
same_usd() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) < 1e-6 and a > 0 else 1)' "$1" "$2"; }
