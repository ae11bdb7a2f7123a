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

echo "--- cargo fmt --check"
cargo fmt --all -- --check
echo "--- cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "--- cargo test"
cargo test --workspace --locked
