#!/usr/bin/env bash
# Every clawguard test: unit, property and integration tests (cargo), then the end-to-end
# suite against the real OpenClaw gateway. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace
bash tests/e2e/run.sh
