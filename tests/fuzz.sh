#!/usr/bin/env bash
# Bounded fuzzing of the exec policy (issue 5): the shell parser and the whole check, of
# the request model (issue 11: unreadable params never forwarded), and of the HTTP surface
# (issue 12: arbitrary requests through http::decide), on
# stable Rust (RUSTC_BOOTSTRAP lets cargo-fuzz pass its flags; no sanitizer), seeded with the
# bypass and benign corpora. Any crash fails the run and leaves its input in
# filters/fuzz/artifacts/ (turn it into a regression case in tests/exec/bypass/).
#
#   tests/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT
mkdir -p "$SEEDS/shell" "$SEEDS/argv" "$SEEDS/request" "$SEEDS/http"
python3 - "$SEEDS" <<'PY'
import json, os, sys, tomllib, glob, hashlib
out = sys.argv[1]
def put(kind, data):
    open(os.path.join(out, kind, hashlib.sha256(data).hexdigest()[:16]), "wb").write(data)
for path in glob.glob("tests/exec/bypass/*.toml"):
    case = tomllib.load(open(path, "rb"))
    if "shell" in case: put("shell", case["shell"].encode())
    if "argv" in case: put("argv", "\0".join(case["argv"]).encode())
methods = ["node.invoke", "exec.approval.request", "exec.approval.resolve", "tools.invoke", "chat.send", "agent", "sessions.get", "device.token.rotate", "node.pair.approve", "sessions.patch"]
for path in glob.glob("tests/cases/*.toml"):
    frame = tomllib.load(open(path, "rb")).get("frame")
    try:
        f = json.loads(frame) if frame else None
    except ValueError:
        f = None
    if isinstance(f, dict) and f.get("method") in methods and "params" in f:
        put("request", bytes([methods.index(f["method"])]) + json.dumps(f["params"]).encode())
for path in glob.glob("tests/cases/http/*.toml"):
    case = tomllib.load(open(path, "rb"))
    method, target = case["request"].split(" ", 1)
    pick = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"].index(method) if method in ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"] else 0
    pick |= 0x20 if case.get("upgrade") else 0
    headers = "\n".join(f"{k}: {v}" for k, v in case.get("headers", {}).items())
    put("http", bytes([pick]) + f"{target}\0{headers}\0{case.get('body', '')}".encode())
for line in open("tests/exec/benign.txt"):
    line = line.rstrip("\n")
    if line and not line.startswith("#"):
        put("shell", line.encode())
        put("argv", "\0".join(line.split(" ")).encode())
PY
# -max_len=20000 covers exec.max_command_bytes (16384) and past it. -timeout=5: a slow input
# fails the run, as a crash does (tests/exec/bypass/parser-blowup.toml was found this way).
cd filters
for target in exec_shell exec_argv request http; do
  kind=${target#exec_}
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "$SEEDS/$kind" -- \
    -max_len=20000 -max_total_time="$SECONDS_PER_TARGET" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12
done
echo "fuzz: no crash, hang or panic"
