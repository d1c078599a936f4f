#!/usr/bin/env bash
# Every clawguard test: unit, property and integration tests (cargo), bounded fuzzing of the
# exec policy, then the end-to-end suite against the real OpenClaw gateway. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace
# The memory bound at the size the issue states (25 MiB in 1-byte fragments): in release, where it takes seconds.
CLAWGUARD_MEMORY_TEST_MIB=25 cargo test --release -p clawguard-filters --test memory
# The alert rules: valid, and every alert's unit tests (firing and not firing) pass.
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/tests/alerts_test.yml
bash tests/fuzz.sh "${CLAWGUARD_FUZZ_SECONDS:-60}"
bash tests/e2e/run.sh
