#!/usr/bin/env bash
# Spend budgets against a real 2026.9.6 gateway (issue 19). The suite's own model provider
# (tests/e2e/fake-llm.py: every completion 1000 input + 500 output tokens) is configured as
# `fake/m1` at 10 / 20 USD per million tokens, so each run costs $0.02 in the gateway's own
# accounting. clawguard has a global budget of $0.05 per day: after three runs through it the
# budget trips, the next chat.send is refused with BUDGET_EXCEEDED, and the gateway's own
# usage.cost agrees with clawguard_spend_usd.
# Prints TAP-like "ok - …" / "not ok - WHAT: DETAIL" lines (tests/e2e/run.sh folds them in).
#
#   tests/e2e/spend.sh CLAWGUARD WORK_DIR
set -uo pipefail

CLAWGUARD=${1:?clawguard binary} WORK=${2:?work dir}
E2E=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pass() { echo "ok - $1"; }
fail() { echo "not ok - $1: $2"; }
cleanup() {
  "$E2E/openclaw.sh" stop "$WORK/spend-gw" 2>/dev/null
  for f in spend-cg.pid spend-llm.pid; do [[ -f "$WORK/$f" ]] && kill "$(cat "$WORK/$f")" 2>/dev/null; done
}
trap cleanup EXIT

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
TOKEN_SHA256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
GW_PORT=$(free_port) CG_PORT=$(free_port) ADMIN_PORT=$(free_port) LLM_PORT=$(free_port)

python3 "$E2E/fake-llm.py" "$LLM_PORT" 1000 500 > "$WORK/spend-llm.log" 2>&1 &
echo $! > "$WORK/spend-llm.pid"

cat > "$WORK/spend-gw.json" <<JSON
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
"$E2E/openclaw.sh" start "$GW_PORT" "$TOKEN" "$WORK/spend-gw" "$WORK/spend-gw.json" 2> "$WORK/spend-gw.err" || { fail "spend e2e" "the gateway did not start: $(tail -5 "$WORK/spend-gw.err")"; exit 0; }

cat > "$WORK/spend-policy.toml" <<EOF
[server]
listen = ["127.0.0.1:$CG_PORT"]
[upstream]
address = "127.0.0.1:$GW_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[[identity]]
name = "operator"
match.token_sha256 = ["$TOKEN_SHA256"]
roles = ["operator"]
scopes = ["operator.read", "operator.write"]
sessions = ["**"]

[[identity]]
name = "default"
roles = ["operator"]
scopes = ["operator.read"]

[spend]
poll = true
poll_token = "env:SPEND_POLL_TOKEN"
poll_interval_seconds = 2
max_report_age_seconds = 120

[[spend.budget]]
name = "daily"
period = "day"
usd = 0.05
EOF
chmod 600 "$WORK/spend-policy.toml"
SPEND_POLL_TOKEN=$TOKEN "$CLAWGUARD" run --policy "$WORK/spend-policy.toml" > "$WORK/spend-cg.log" 2>&1 &
echo $! > "$WORK/spend-cg.pid"
for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break; sleep 0.1; done

# metric NAME: the value of a clawguard_spend_* series for budget "daily" (0 when absent).
metric() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1{budget=\"daily\"}" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'; }
# send N: one chat.send through clawguard on the operator's main session; prints its answer.
send() {
  (
    # shellcheck disable=SC1091
    source "$WORK/spend-gw/env.sh"
    WS_REQUESTS="[[\"chat.send\",{\"sessionKey\":\"main\",\"message\":\"run $1\",\"idempotencyKey\":\"spend-$1-$$\"}]]" WS_LISTEN_MS=8000 \
      node "$E2E/ws-session.cjs" "ws://127.0.0.1:$CG_PORT" "$TOKEN" operator.read,operator.write 127.0.0.1
  )
}
# wait_spend AT_LEAST: waits (up to 120 s: the poll interval plus the gateway's 30 s usage cache)
# until clawguard has measured at least that much.
wait_spend() {
  for _ in $(seq 1 240); do
    python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) - 1e-9 else 1)' "$(metric clawguard_spend_usd)" "$1" && return 0
    sleep 0.5
  done
  return 1
}

# Runs are refused (SPEND_UNKNOWN) until clawguard has read a first report: wait for it.
for _ in $(seq 1 240); do
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep -q '^clawguard_spend_polls_total{outcome="ok"} [1-9]' && break
  sleep 0.5
done
runs=0
for i in 1 2 3; do
  answer=$(send "$i")
  grep -q '"ok":true' <<< "$answer" && runs=$((runs + 1))
  wait_spend "$(python3 -c "print(0.02 * $i)")" || break
done
measured=$(metric clawguard_spend_usd)
refused=$(send 4)
if [[ $runs == 3 ]] && grep -q '"BUDGET_EXCEEDED"' <<< "$refused" && grep -q '"budget":"daily"' <<< "$refused"; then
  pass "issue 19: three \$0.02 runs through clawguard trip a \$0.05 daily budget; the next chat.send is refused with BUDGET_EXCEEDED naming the budget ($measured measured)"
else
  fail "spend budget trip" "runs $runs, measured $measured, 4th answer $(head -c 600 <<< "$refused"); log: $(tail -5 "$WORK/spend-cg.log")"
fi

# The gateway's own figure for today, asked directly (usage.cost is cached up to 30 s).
gateway_usd=0
for _ in $(seq 1 60); do
  gateway_usd=$(
    source "$WORK/spend-gw/env.sh"
    WS_REQUESTS="[[\"usage.cost\",{\"startDate\":\"$(date -u +%F)\",\"endDate\":\"$(date -u +%F)\",\"mode\":\"utc\"}]]" \
      node "$E2E/ws-session.cjs" "ws://127.0.0.1:$GW_PORT" "$TOKEN" operator.read 127.0.0.1 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["responses"][0]["payload"]["totals"]["totalCost"])' 2>/dev/null || echo 0
  )
  python3 -c 'import sys; sys.exit(0 if abs(float(sys.argv[1]) - float(sys.argv[2])) < 1e-6 else 1)' "$gateway_usd" "$measured" && break
  sleep 1
done
if python3 -c 'import sys; sys.exit(0 if abs(float(sys.argv[1]) - float(sys.argv[2])) < 1e-6 and float(sys.argv[1]) > 0 else 1)' "$gateway_usd" "$measured"; then
  pass "issue 19: the gateway's own usage.cost for today (\$$gateway_usd) agrees with clawguard's figure"
else
  fail "usage.cost agreement" "gateway $gateway_usd, clawguard $measured"
fi
