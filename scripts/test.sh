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

# CI runs in a fresh clone each time: keep its build outside the checkout so runs reuse it.
if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="$HOME/.cache/rubricmill/ci-target"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# Real services the tests start on free loopback ports: an S3-protocol server (moto).
if ! command -v moto_server >/dev/null 2>&1; then
  echo "--- installing moto[server] (S3-protocol server for the tests)"
  python3 -m pip install -q --disable-pip-version-check "moto[server]"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
fi
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
# One closing line over all test binaries and the readers check.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^export readers:/ { p += $3; f += $5 }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
