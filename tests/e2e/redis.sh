#!/usr/bin/env bash
# Shared state on Redis (issue 19): Debian's redis-server on loopback, two clawguard processes
# (A, B) in front of one real gateway with the suite's priced provider, sharing
#   - a spend budget: runs through both add up, counted once, and the budget trips on both;
#   - the auth-failure lockout: failures spread over both lock the address out on both;
#   - a rate limit (POST /tools/invoke, 4 per minute per identity) across both;
# and two more (C, D) in front of a stand-in gateway that repeats one challenge nonce
# (tests/e2e/fixed-challenge.cjs), where a real node's signed connect used through C is refused
# by D. Then Redis is killed: signed connects and lockout checks refuse (fail closed), the rate
# limit passes on each replica's own and counts the errors; Redis returns and all recovers.
# Prints TAP-like "ok - …" / "not ok - WHAT: DETAIL" lines (tests/e2e/run.sh folds them in).
#
#   tests/e2e/redis.sh CLAWGUARD WORK_DIR
set -uo pipefail

CLAWGUARD=${1:?clawguard binary} WORK=${2:?work dir}
E2E=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
# shellcheck source=tests/e2e/priced-gateway.sh
source "$E2E/priced-gateway.sh"
cleanup() {
  stop_priced_gateway shared
  for f in "$WORK"/*.pid; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
}
trap cleanup EXIT

REDIS_PORT=$(free_port)
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$WORK/redis.log" 2>&1 &
  echo $! > "$WORK/redis.pid"
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  return 1
}
start_redis || { fail "redis e2e" "redis-server did not start: $(tail -3 "$WORK/redis.log")"; exit 0; }
start_priced_gateway shared || { fail "redis e2e" "the gateway did not start: $(tail -5 "$WORK/shared-gw.err")"; exit 0; }

# gw_node SCRIPT ARGS…: node with the gateway install's modules (ws) on its path.
gw_node() { ( source "$WORK/shared-gw/env.sh"; exec node "$@" ); }

declare -A PORT ADMIN
# start_clawguard NAME UPSTREAM_PORT EXTRA_TOML: a clawguard on the shared Redis.
start_clawguard() {
  local name=$1 upstream=$2 extra=$3
  PORT[$name]=$(free_port) ADMIN[$name]=$(free_port)
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name/policy.toml" <<EOF
[server]
listen = ["127.0.0.1:${PORT[$name]}"]
[upstream]
address = "127.0.0.1:$upstream"
[admin]
listen = "127.0.0.1:${ADMIN[$name]}"
[state]
backend = "redis"
url = "env:REDIS_URL"

[[identity]]
name = "operator"
match.token_sha256 = ["$TOKEN_SHA256"]
roles = ["operator", "node"]
scopes = ["operator.read", "operator.write"]
sessions = ["**"]

[[identity]]
name = "default"
roles = ["operator", "node"]
scopes = ["operator.read"]
$extra
EOF
  chmod 600 "$WORK/$name/policy.toml"
  REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 SPEND_POLL_TOKEN=$TOKEN "$CLAWGUARD" run --policy "$WORK/$name/policy.toml" > "$WORK/$name.log" 2>&1 &
  echo $! > "$WORK/$name.pid"
  wait_ready "${ADMIN[$name]}"
}
GATEWAY_POLICY='
[limits]
auth_failures = 4
http_tools_invoke_per_minute = 4
[spend]
poll = true
poll_token = "env:SPEND_POLL_TOKEN"
poll_interval_seconds = 2
[[spend.budget]]
name = "daily"
period = "day"
usd = 0.05
'
start_clawguard A "$GW_PORT" "$GATEWAY_POLICY"
start_clawguard B "$GW_PORT" "$GATEWAY_POLICY"

# --- a shared budget: $0.02 runs through A, B, A make $0.06, counted once; both refuse ----------
wait_polled "${ADMIN[A]}" && wait_polled "${ADMIN[B]}"
# Each run's cost is measured (by both) before the next is sent: a send while a run is still
# going would join that run (the gateway queues it) and cost less than a run of its own.
runs=0
for step in 1:A 2:B 3:A; do
  n=${step%%:*} via=${step##*:}
  grep -q '"ok":true' <<< "$(send_run "${PORT[$via]}" "$n" shared)" && runs=$((runs + 1))
  wait_spend "${ADMIN[A]}" "$(python3 -c "print(0.02 * $n)")" && wait_spend "${ADMIN[B]}" "$(python3 -c "print(0.02 * $n)")" || break
done
usd_a=$(metric "${ADMIN[A]}" 'clawguard_spend_usd{budget="daily"}') usd_b=$(metric "${ADMIN[B]}" 'clawguard_spend_usd{budget="daily"}')
refused_a=$(send_run "${PORT[A]}" 4 shared) refused_b=$(send_run "${PORT[B]}" 5 shared)
gw=0
for _ in $(seq 1 60); do gw=$(gateway_usd shared); same_usd "$gw" "$usd_a" && break; sleep 1; done
if [[ $runs == 3 ]] && same_usd "$usd_a" "$usd_b" && same_usd "$gw" "$usd_a" && grep -q '"BUDGET_EXCEEDED"' <<< "$refused_a" && grep -q '"BUDGET_EXCEEDED"' <<< "$refused_b"; then
  pass "issue 19: runs through two replicas add up on the shared budget, counted once (A \$$usd_a, B \$$usd_b, the gateway's usage.cost \$$gw), and it trips on both (BUDGET_EXCEEDED)"
else
  fail "shared budget" "runs $runs, A $usd_a, B $usd_b, gateway $gw; A: $(head -c 300 <<< "$refused_a"); B: $(head -c 300 <<< "$refused_b")"
fi

# --- a shared lockout: two wrong tokens through each replica (limit 4) lock 127.0.0.2 on both ---
for via in A B A B; do gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[$via]}" wrong-token operator.read 127.0.0.2 > /dev/null; done
locked_a=$(gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[A]}" "$TOKEN" operator.read 127.0.0.2)
locked_b=$(gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[B]}" "$TOKEN" operator.read 127.0.0.2)
other=$(gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[A]}" "$TOKEN" operator.read 127.0.0.1)
if [[ $locked_a == *auth-lockout* && $locked_b == *auth-lockout* && $other == *operator.read* && $other != *error* ]]; then
  pass "issue 19: four failed connects spread over two replicas (two each, limit 4) lock the address out on both; another address still connects"
else
  fail "shared lockout" "A: ${locked_a:0:300}; B: ${locked_b:0:300}; other: ${other:0:200}"
fi

# --- a shared rate limit: 4 POST /tools/invoke per minute for the identity, over both ----------
invoke() { curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"tool":"sessions_list","args":{}}' "http://127.0.0.1:${PORT[$1]}/tools/invoke"; }
codes=""
for via in A B A B A B; do codes+="$(invoke "$via") "; done
allowed=$(grep -o 200 <<< "$codes" | wc -l) limited=$(grep -o 429 <<< "$codes" | wc -l)
# Tolerance: the limit refills one request per 15 s, so a run slower than 15 s may pass a fifth.
if (( (allowed == 4 || allowed == 5) && allowed + limited == 6 )); then
  pass "issue 19: a rate limit of 4 per minute holds across two replicas ($allowed of 6 alternating requests passed, the rest 429; tolerance one per 15 s of test time)"
else
  fail "shared rate limit" "codes $codes"
fi

# --- the replay memory: a real node's signed connect through C, replayed through D --------------
NONCE="fixed-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" STAND_IN=$(free_port)
gw_node "$E2E/fixed-challenge.cjs" "$STAND_IN" "$NONCE" "$WORK/signed-connect.json" > "$WORK/stand-in.log" 2>&1 &
echo $! > "$WORK/stand-in.pid"
# capture: a real node host's first connect to the stand-in, answering its fixed nonce.
capture() {
  rm -f "$WORK/signed-connect.json"
  (
    # shellcheck disable=SC1091
    source "$WORK/shared-gw/env.sh"
    # The CLI can take a minute to start on a loaded machine.
    OPENCLAW_GATEWAY_URL=ws://127.0.0.1:$STAND_IN timeout 120 openclaw node run --host 127.0.0.1 --port "$STAND_IN" --display-name e2e-replay --commands system.which > "$WORK/capture-node.log" 2>&1 &
    for _ in $(seq 1 1200); do [[ -s "$WORK/signed-connect.json" ]] && break; sleep 0.1; done
    kill %1 2>/dev/null
  )
  cp "$WORK/signed-connect.json" "$WORK/signed-connect-$1.json" 2>/dev/null
}
REPLAY_POLICY='
[limits]
auth_failures = 0
'
start_clawguard C "$STAND_IN" "$REPLAY_POLICY"
start_clawguard D "$STAND_IN" "$REPLAY_POLICY"
capture 1
if grep -q '"signature"' "$WORK/signed-connect-1.json" 2>/dev/null; then
  first=$(WS_FRAME_FILE="$WORK/signed-connect-1.json" gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[C]}" "" "")
  again=$(WS_FRAME_FILE="$WORK/signed-connect-1.json" gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[D]}" "" "")
  [[ $first == *'"role":"node"'* && $first != *'"source":"clawguard"'* && $again == *DEVICE_AUTH_REPLAYED* && $again == *"another replica"* ]] \
    && pass "issue 19: a real node's signed connect used through one replica is refused by the other (DEVICE_AUTH_REPLAYED, seen by another replica)" \
    || fail "shared replay" "through C: ${first:0:300}; through D: ${again:0:300}"
else
  fail "shared replay" "no signed connect captured: $(tail -3 "$WORK/capture-node.log")"
fi

# --- Redis killed: fail closed for replay and lockout, the rate limit falls back ---------------
capture 2
kill "$(cat "$WORK/redis.pid")"; wait "$(cat "$WORK/redis.pid")" 2>/dev/null; rm -f "$WORK/redis.pid"
down_connect=$(gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[A]}" "$TOKEN" operator.read 127.0.0.1)
grep -q '"signature"' "$WORK/signed-connect-2.json" 2>/dev/null || fail "second capture" "no signed connect captured: $(tail -3 "$WORK/capture-node.log")"
down_replay=$(WS_FRAME_FILE="$WORK/signed-connect-2.json" gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[D]}" "" "")
[[ $down_connect == *STATE_UNAVAILABLE* && $down_connect == *"auth-failure lockout"* && $down_replay == *STATE_UNAVAILABLE* && $down_replay == *"replay memory"* ]] \
  && pass "issue 19: Redis down: a connect's lockout check and a signed connect's replay check both refuse (STATE_UNAVAILABLE, fail closed), naming the check" \
  || fail "redis down, fail closed" "connect: ${down_connect:0:300}; replay: ${down_replay:0:300}"
before=$(( $(metric "${ADMIN[B]}" 'clawguard_state_calls_total{kind="rate",outcome="error"}') + $(metric "${ADMIN[B]}" 'clawguard_state_calls_total{kind="rate",outcome="skipped"}') ))
down_code=$(invoke B)
after=$(( $(metric "${ADMIN[B]}" 'clawguard_state_calls_total{kind="rate",outcome="error"}') + $(metric "${ADMIN[B]}" 'clawguard_state_calls_total{kind="rate",outcome="skipped"}') ))
up=$(metric "${ADMIN[B]}" clawguard_state_up)
[[ $down_code == 200 ]] && (( after > before )) && [[ $up == 0 ]] \
  && pass "issue 19: Redis down: the rate limit passes on the replica's own limit (200) and counts the failed call (clawguard_state_calls_total, clawguard_state_up 0)" \
  || fail "redis down, rate limit" "code $down_code, failed calls $before -> $after, up $up"

# --- Redis back: everything recovers (the store is retried after its backoff, at most 5 s) -----
start_redis || fail "redis restart" "$(tail -3 "$WORK/redis.log")"
recovered=""
for _ in $(seq 1 40); do
  recovered=$(gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[A]}" "$TOKEN" operator.read 127.0.0.1)
  [[ $recovered != *STATE_UNAVAILABLE* ]] && break
  sleep 0.5
done
# C never saw the second capture (D's refusal while Redis was down kept it in D's own memory).
replayed_now=$(WS_FRAME_FILE="$WORK/signed-connect-2.json" gw_node "$E2E/ws-connect.cjs" "ws://127.0.0.1:${PORT[C]}" "" "")
[[ $recovered == *operator.read* && $recovered != *error* && $replayed_now == *'"role":"node"'* && $(metric "${ADMIN[A]}" clawguard_state_up) == 1 ]] \
  && pass "issue 19: Redis back: connects pass again, replay checks answer again, clawguard_state_up 1" \
  || fail "redis recovery" "connect: ${recovered:0:300}; replay: ${replayed_now:0:300}"
