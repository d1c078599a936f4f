#!/usr/bin/env bash
# Spend budgets against a real 2026.9.6 gateway (issue 19), with the suite's own priced model
# provider (tests/e2e/priced-gateway.sh: each run costs $0.02). clawguard has a global budget of
# $0.05 per day: after three runs through it the budget trips, the next chat.send is refused
# with BUDGET_EXCEEDED, and the gateway's own usage.cost agrees with clawguard_spend_usd.
# Prints TAP-like "ok - …" / "not ok - WHAT: DETAIL" lines (tests/e2e/run.sh folds them in).
#
#   tests/e2e/spend.sh CLAWGUARD WORK_DIR
set -uo pipefail

CLAWGUARD=${1:?clawguard binary} WORK=${2:?work dir}
E2E=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
# shellcheck source=tests/e2e/priced-gateway.sh
source "$E2E/priced-gateway.sh"
cleanup() {
  stop_priced_gateway spend
  [[ -f "$WORK/spend-cg.pid" ]] && kill "$(cat "$WORK/spend-cg.pid")" 2>/dev/null
}
trap cleanup EXIT

start_priced_gateway spend || { fail "spend e2e" "the gateway did not start: $(tail -5 "$WORK/spend-gw.err")"; exit 0; }
CG_PORT=$(free_port) ADMIN_PORT=$(free_port)
cat > "$WORK/spend-policy.toml" <<EOF2
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
EOF2
chmod 600 "$WORK/spend-policy.toml"
SPEND_POLL_TOKEN=$TOKEN "$CLAWGUARD" run --policy "$WORK/spend-policy.toml" > "$WORK/spend-cg.log" 2>&1 &
echo $! > "$WORK/spend-cg.pid"
wait_ready "$ADMIN_PORT"
wait_polled "$ADMIN_PORT"

runs=0
for i in 1 2 3; do
  answer=$(send_run "$CG_PORT" "$i" spend)
  grep -q '"ok":true' <<< "$answer" && runs=$((runs + 1))
  wait_spend "$ADMIN_PORT" "$(python3 -c "print(0.02 * $i)")" || break
done
measured=$(metric "$ADMIN_PORT" 'clawguard_spend_usd{budget="daily"}')
refused=$(send_run "$CG_PORT" 4 spend)
if [[ $runs == 3 ]] && grep -q '"BUDGET_EXCEEDED"' <<< "$refused" && grep -q '"budget":"daily"' <<< "$refused"; then
  pass "issue 19: three \$0.02 runs through clawguard trip a \$0.05 daily budget; the next chat.send is refused with BUDGET_EXCEEDED naming the budget ($measured measured)"
else
  fail "spend budget trip" "runs $runs, measured $measured, 4th answer $(head -c 600 <<< "$refused"); log: $(tail -5 "$WORK/spend-cg.log")"
fi

# The gateway's own figure for today (usage.cost is cached up to 30 s).
for _ in $(seq 1 60); do
  gw=$(gateway_usd spend)
  same_usd "$gw" "$measured" && break
  sleep 1
done
same_usd "$gw" "$measured" \
  && pass "issue 19: the gateway's own usage.cost for today (\$$gw) agrees with clawguard's figure" \
  || fail "usage.cost agreement" "gateway $gw, clawguard $measured"

# A second clawguard in front of the same gateway reads spend from its clients' own
# sessions.usage answers (its poll runs once, at start) and stops runs in flight when its budget
# trips (spend.abort_running): a slow run is in flight on one connection, another run's cost
# ($0.02) takes today's spend past $0.07, a client asks sessions.usage through clawguard, and
# clawguard sends chat.abort for the slow run on the connection that started it.
kill "$(cat "$WORK/spend-cg.pid")" 2>/dev/null
CG_PORT=$(free_port) ADMIN_PORT=$(free_port)
sed -e "s/^listen = \[.*/listen = [\"127.0.0.1:$CG_PORT\"]/" -e "s/^listen = \"127.0.0.1:.*/listen = \"127.0.0.1:$ADMIN_PORT\"/" \
  -e 's/^poll_interval_seconds = .*/poll_interval_seconds = 3600\nabort_running = true/' -e 's/^max_report_age_seconds = .*/max_report_age_seconds = 7200/' \
  -e 's/^usd = 0.05/usd = 0.07/' "$WORK/spend-policy.toml" > "$WORK/abort-policy.toml"
chmod 600 "$WORK/abort-policy.toml"
SPEND_POLL_TOKEN=$TOKEN "$CLAWGUARD" run --policy "$WORK/abort-policy.toml" > "$WORK/abort-cg.log" 2>&1 &
echo $! > "$WORK/spend-cg.pid"
if ! { wait_ready "$ADMIN_PORT" && wait_polled "$ADMIN_PORT"; }; then
  fail "abort_running" "the second clawguard did not start or poll: $(tail -5 "$WORK/abort-cg.log")"
  exit 0
fi
before=$(metric "$ADMIN_PORT" 'clawguard_spend_usd{budget="daily"}')
llm_stat() { curl -s "http://127.0.0.1:$LLM_PORT/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1" 2>/dev/null || echo 0; }
completions_before=$(llm_stat completions)
(
  # shellcheck disable=SC1091
  source "$WORK/spend-gw/env.sh"
  WS_REQUESTS='[["chat.send",{"sessionKey":"agent:main:slow","message":"SLOWRUN please","idempotencyKey":"slow-'$$'"}]]' WS_LISTEN_MS=150000 WS_UNTIL_STATE=aborted \
    node "$E2E/ws-session.cjs" "ws://127.0.0.1:$CG_PORT" "$TOKEN" operator.read,operator.write 127.0.0.1 > "$WORK/abort-slow.json"
) &
slow_pid=$!
# The slow run is in flight once the provider has its request.
for _ in $(seq 1 120); do
  (( $(llm_stat completions) > completions_before )) && break
  sleep 0.5
done
(
  # shellcheck disable=SC1091
  source "$WORK/spend-gw/env.sh"
  WS_REQUESTS='[["chat.send",{"sessionKey":"agent:main:other","message":"run 5","idempotencyKey":"run-5-'$$'"}]]' WS_LISTEN_MS=8000 \
    node "$E2E/ws-session.cjs" "ws://127.0.0.1:$CG_PORT" "$TOKEN" operator.read,operator.write 127.0.0.1 > "$WORK/abort-run5.json"
)
# A client's usage view, through clawguard (the gateway caches usage up to 30 s).
today=$(date -u +%F)
for _ in $(seq 1 45); do
  (
    # shellcheck disable=SC1091
    source "$WORK/spend-gw/env.sh"
    WS_REQUESTS="[[\"sessions.usage\",{\"startDate\":\"$today\",\"endDate\":\"$today\",\"mode\":\"utc\",\"agentScope\":\"all\"}]]" \
      node "$E2E/ws-session.cjs" "ws://127.0.0.1:$CG_PORT" "$TOKEN" operator.read 127.0.0.1 > /dev/null
  )
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) + 0.02 - 1e-9 else 1)' "$(metric "$ADMIN_PORT" 'clawguard_spend_usd{budget="daily"}')" "$before" && break
  sleep 1
done
after=$(metric "$ADMIN_PORT" 'clawguard_spend_usd{budget="daily"}')
polls=$(metric "$ADMIN_PORT" 'clawguard_spend_polls_total{outcome="ok"}')
if python3 -c 'import sys; sys.exit(0 if float(sys.argv[2]) >= float(sys.argv[1]) + 0.02 - 1e-9 else 1)' "$before" "$after" && [[ $polls == 1 ]]; then
  pass "issue 19: a client's own sessions.usage answer through clawguard is counted (\$$before → \$$after with one poll, at start)"
else
  fail "spend read from a client's answer" "before $before, after $after, polls $polls; run 5: $(head -c 300 "$WORK/abort-run5.json"); log: $(tail -5 "$WORK/abort-cg.log")"
fi
wait "$slow_pid"
aborts=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^clawguard_decisions_total{' | grep 'verdict="abort"' | grep 'rule="spend:daily"' | awk '{ n += $2 } END { print n + 0 }')
cut=$(llm_stat cut)
if python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); sys.exit(0 if any(e["event"] == "chat" and e["state"] == "aborted" and e["sessionKey"] == "agent:main:slow" for e in d["events"]) and d["responses"][0]["ok"] else 1)' "$WORK/abort-slow.json" && [[ $aborts == 1 ]]; then
  pass "issue 19: abort_running: when the budget trips, clawguard stops the run in flight with chat.abort on the connection that started it (the client sees its run aborted; the provider's stream was cut $cut time(s))"
else
  fail "abort_running" "aborts $aborts, cut $cut; slow client: $(head -c 600 "$WORK/abort-slow.json"); log: $(grep -i 'abort\|spend' "$WORK/abort-cg.log" | tail -5)"
fi
