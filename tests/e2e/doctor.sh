#!/usr/bin/env bash
# `clawguard doctor` against real OpenClaw gateways (issue 18), one gateway per case:
#   - a correct deployment (gateway on loopback behind clawguard, trustedProxies = clawguard,
#     token by SecretRef, no auto-approved pairing, exec asks) scores A with no high finding, and
#     the findings of `openclaw security audit --json` are in the report;
#   - the same gateway bound to an address on a veth into a network namespace this script creates
#     (reachable from there around clawguard) is reported critical;
#   - a config with gateway.controlUi.allowInsecureAuth is reported (2026.9.6 itself retires the
#     key at start-up; older releases honour it).
# Prints TAP-like "ok - …" / "not ok - WHAT: DETAIL" lines (tests/e2e/run.sh folds them in).
#
#   tests/e2e/doctor.sh CLAWGUARD WORK_DIR       (needs root and iproute2 for the namespace)
set -uo pipefail

CLAWGUARD=${1:?clawguard binary} WORK=${2:?work dir}
E2E=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$WORK"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pass() { echo "ok - $1"; }
fail() { echo "not ok - $1: $2"; }
NETNS="cg-doc-$$" VETH_HOST="cgd$$h" VETH_PEER="cgd$$c"
OCTET=$(( $$ % 250 + 1 ))
HOST_IP="198.19.$OCTET.1" PEER_IP="198.19.$OCTET.2"
GATEWAYS=()
cleanup() {
  for dir in "${GATEWAYS[@]}"; do "$E2E/openclaw.sh" stop "$dir" 2>/dev/null; done
  [[ -f "$WORK/doctor-cg.pid" ]] && kill "$(cat "$WORK/doctor-cg.pid")" 2>/dev/null
  ip netns del "$NETNS" 2>/dev/null; ip link del "$VETH_HOST" 2>/dev/null
}
trap cleanup EXIT

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
TOKEN_SHA256=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)
GW_PORT=$(free_port) CG_PORT=$(free_port) ADMIN_PORT=$(free_port)

# hardened_config BIND_FIELDS [EXTRA_GATEWAY_FIELDS]: the correct gateway config, as JSON.
hardened_config() {
  cat <<JSON
{
  "gateway": {
    "mode": "local", "port": $GW_PORT, $1,
    "auth": { "mode": "token", "token": { "source": "env", "provider": "default", "id": "OPENCLAW_GATEWAY_TOKEN" } },
    "trustedProxies": ["127.0.0.1"],
    "nodes": { "pairing": { "autoApproveLocal": false } }${2:+, $2}
  },
  "tools": { "exec": { "mode": "ask" } },
  "agents": { "defaults": { "heartbeat": { "every": "0m" }, "sandbox": { "mode": "all" } } },
  "session": { "dmScope": "per-channel-peer" },
  "update": { "checkOnStart": false },
  "nodeHost": { "autoUpdate": { "enabled": false } }
}
JSON
}

# clawguard in front of the gateway's port, its policy private to its owner.
cat > "$WORK/doctor-policy.toml" <<EOF
[server]
listen = ["127.0.0.1:$CG_PORT"]
[upstream]
address = "127.0.0.1:$GW_PORT"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[audit]
dir = "doctor-audit"

[[identity]]
name = "operator"
match.token_sha256 = ["$TOKEN_SHA256"]
roles = ["operator"]
scopes = ["operator.read", "operator.write"]

[[identity]]
name = "default"
roles = ["operator"]
scopes = ["operator.read"]
EOF
chmod 600 "$WORK/doctor-policy.toml"
"$CLAWGUARD" run --policy "$WORK/doctor-policy.toml" > "$WORK/doctor-cg.log" 2>&1 &
echo $! > "$WORK/doctor-cg.pid"
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz" 2>/dev/null && break; sleep 0.1; done

# start_gateway NAME CONFIG_JSON: a gateway with that config on GW_PORT (one at a time).
start_gateway() {
  local dir="$WORK/doctor-gw-$1"
  printf '%s\n' "$2" > "$WORK/doctor-$1.json"
  GATEWAYS+=("$dir")
  "$E2E/openclaw.sh" start "$GW_PORT" "$TOKEN" "$dir" "$WORK/doctor-$1.json" 2> "$WORK/doctor-gw-$1.err"
}
stop_gateway() { "$E2E/openclaw.sh" stop "$WORK/doctor-gw-$1"; }
# doctor NAME: clawguard doctor --json with the gateway's CLI environment; the exit code in NAME.rc.
doctor() {
  (
    # shellcheck disable=SC1091
    source "$WORK/doctor-gw-$1/env.sh"
    "$CLAWGUARD" doctor --policy "$WORK/doctor-policy.toml" --gateway-config "$WORK/doctor-gw-$1/openclaw.json" --gateway-version 2026.9.6 --json
  ) > "$WORK/doctor-$1.out.json" 2> "$WORK/doctor-$1.err"
  echo $? > "$WORK/doctor-$1.rc"
}
# summary NAME: "grade critical high" and every check id with its severity. (Matched with
# `grep -q … <<< "$(summary …)"`: in a pipeline under pipefail, grep -q's early exit would fail it.)
summary() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["counts"]; print(d["grade"], c["critical"], c["high"]); [print(f["check"], f["severity"], f["found"].replace("\n", " ")) for f in d["findings"]]' "$WORK/doctor-$1.out.json" 2>&1; }

# 1. The correct deployment.
if start_gateway good "$(hardened_config '"bind": "loopback"')"; then
  proxied=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CG_PORT/readyz")
  doctor good
  read -r grade critical high < <(summary good)
  if [[ $proxied == 200 && $grade == A && $critical == 0 && $high == 0 && $(cat "$WORK/doctor-good.rc") == 0 ]]; then
    pass "issue 18: a correct deployment (gateway on loopback behind clawguard, trustedProxies set) scores A with no critical or high finding (doctor exits 0)"
  else
    fail "doctor on a correct deployment" "through clawguard $proxied; rc $(cat "$WORK/doctor-good.rc"); $(summary good | head -c 1500)"
  fi
  if grep -q '^openclaw\.summary\.attack_surface ' <<< "$(summary good)" && ! grep -q '^openclaw\.audit\.unavailable ' <<< "$(summary good)"; then
    pass "issue 18: the findings of openclaw security audit --json are in the report (openclaw.summary.attack_surface)"
  else
    fail "openclaw audit findings in doctor" "$(summary good | head -c 1500)"
  fi
  stop_gateway good
else
  fail "correct gateway" "did not start: $(tail -c 600 "$WORK/doctor-gw-good.err")"
fi

# 2. The same gateway bound to the host's end of a veth into a namespace: reachable from there
#    without clawguard.
if ip netns add "$NETNS" && ip link add "$VETH_HOST" type veth peer name "$VETH_PEER" \
   && ip link set "$VETH_PEER" netns "$NETNS" && ip addr add "$HOST_IP/30" dev "$VETH_HOST" && ip link set "$VETH_HOST" up \
   && ip netns exec "$NETNS" ip addr add "$PEER_IP/30" dev "$VETH_PEER" && ip netns exec "$NETNS" ip link set "$VETH_PEER" up; then
  if start_gateway exposed "$(hardened_config "\"bind\": \"custom\", \"customBindHost\": \"$HOST_IP\"")"; then
    around=$(ip netns exec "$NETNS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HOST_IP:$GW_PORT/readyz")
    doctor exposed
    if [[ $around == 200 ]] && grep -q "^bypass\.gateway_listens_beyond_loopback critical $HOST_IP:$GW_PORT " <<< "$(summary exposed)" && [[ $(cat "$WORK/doctor-exposed.rc") == 1 ]]; then
      pass "issue 18: a gateway bound to $HOST_IP (answering from namespace $NETNS around clawguard) is reported critical, and doctor exits 1"
    else
      fail "doctor on an exposed gateway" "from $NETNS: $around; rc $(cat "$WORK/doctor-exposed.rc"); $(summary exposed | head -c 1500)"
    fi
    stop_gateway exposed
  else
    fail "exposed gateway" "did not start: $(tail -c 600 "$WORK/doctor-gw-exposed.err")"
  fi
else
  fail "doctor network namespace" "cannot create $NETNS (needs root and iproute2)"
fi

# 3. The same gateway with the Control UI's insecure-auth flag. 2026.9.6 retires the key: it
#    migrates it out of openclaw.json at start-up (older releases honour it). The doctor judges
#    the operator's file as written, the one older releases would run with.
if start_gateway insecure "$(hardened_config '"bind": "loopback"' '"controlUi": { "allowInsecureAuth": true }')"; then
  if grep -q allowInsecureAuth "$WORK/doctor-gw-insecure/openclaw.json"; then
    pass "issue 18: the gateway keeps gateway.controlUi.allowInsecureAuth in its config"
  else
    pass "issue 18: gateway 2026.9.6 retires gateway.controlUi.allowInsecureAuth at start-up (its rewritten openclaw.json has no such key)"
  fi
  cp "$WORK/doctor-insecure.json" "$WORK/doctor-gw-insecure/operator.json"
  (
    # shellcheck disable=SC1091
    source "$WORK/doctor-gw-insecure/env.sh"
    "$CLAWGUARD" doctor --policy "$WORK/doctor-policy.toml" --gateway-config "$WORK/doctor-gw-insecure/operator.json" --gateway-version 2026.9.6 --json
  ) > "$WORK/doctor-insecure.out.json" 2> "$WORK/doctor-insecure.err"
  if grep -q '^gateway\.control_ui\.allow_insecure_auth ' <<< "$(summary insecure)"; then
    pass "issue 18: a gateway config with gateway.controlUi.allowInsecureAuth is reported ($(summary insecure | awk '$1 == "gateway.control_ui.allow_insecure_auth" {print $2}'))"
  else
    fail "doctor on allowInsecureAuth" "$(summary insecure | head -c 1500)"
  fi
  stop_gateway insecure
else
  fail "insecure gateway" "did not start: $(tail -c 600 "$WORK/doctor-gw-insecure.err")"
fi
