#!/usr/bin/env bash
# Throughput of mock-llm on loopback: a release server with zero latency and a release load
# generator (keep-alive connections) sharing this machine's cores.
#
#   scripts/bench-mock-llm.sh [requests] [connections]      default: 200000 64
#
# Target on a 2-core machine: well over 20,000 requests/s, so mock-llm never bounds a benchmark.
# CARGO_TARGET_DIR is respected.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-200000}"
connections="${2:-64}"

cargo build --release -q -p rubricmill-mock-llm --example serve --example load
target="${CARGO_TARGET_DIR:-target}"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$target/release/examples/serve" --port 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^mock-llm listening on //p' "$work/server.out")
  [[ -n "$url" ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$work/server.err" >&2
    echo "mock-llm did not start" >&2
    exit 1
  fi
  sleep 0.1
done
[[ -n "$url" ]] || { echo "mock-llm did not print its address" >&2; exit 1; }
echo "server: $url"

"$target/release/examples/load" --url "$url" --requests "$requests" --connections "$connections"

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "server final stats:"
sed -n '/^{/,$p' "$work/server.out"
