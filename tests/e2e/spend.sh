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
