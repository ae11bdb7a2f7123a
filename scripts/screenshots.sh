#!/usr/bin/env bash
# The README's screenshots of the web UI: runs the quickstart's surveys against mock-llm (with
# latency, a few 429s and a price, so the charts and the cost have something to show), serves
# the job's output with `rubricmill view` and has headless Chromium photograph the jobs page
# and the dataset viewer into docs/images/.
#
#   scripts/screenshots.sh
#
# The binary is the release build (scripts/lib.sh build_release); set RUBRICMILL_BIN to use
# another. Chromium is installed with apt-get when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_chromium
chromium=$(command -v chromium || command -v chromium-browser)
build_release
work=$(mktemp -d)
view_pid=""
cleanup() {
  [ -n "$view_pid" ] && kill "$view_pid" 2>/dev/null && wait "$view_pid" 2>/dev/null
  stop_mock
  rm -rf "$work"
}
trap cleanup EXIT

start_mock "$work" --latency-lognormal 120,0.5 --rpm 400
cat >"$work/screens.toml" <<TOML
name = "surveys"
pipeline = "researchqa"

[input]
url = "$repo/samples/surveys/**/*.md"
format = "markdown"
records_per_shard = 1

[output]
url = "$work/out"

[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-model"
api_key_env = "RUBRICMILL_SCREENSHOT_KEY"
requests_per_minute = 400
price_per_million = { input = 0.15, output = 0.60 }

[researchqa]
max_rubric_items = 8
TOML
RUBRICMILL_SCREENSHOT_KEY=not-a-real-key "$bin" run "$work/screens.toml" --workers 1 --shard-concurrency 1 --no-progress >"$work/run.out"

read -r port <<<"$(free_ports 1)"
"$bin" view "$work/screens.toml" --addr "127.0.0.1:$port" >"$work/view.out" 2>"$work/view.err" &
view_pid=$!
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/api/info')" 2>/dev/null && break
  sleep 0.1
done

mkdir -p docs/images
shoot() {
  local fragment=$1 file=$2 height=$3 profile
  profile=$(mktemp -d "$work/chromium.XXXX")
  "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --hide-scrollbars --window-size="1400,$height" \
    --virtual-time-budget=10000 --screenshot="$repo/docs/images/$file" \
    "http://127.0.0.1:$port/$fragment" 2>/dev/null
  echo "docs/images/$file"
}
shoot "#/jobs" ui-jobs.png 760
shoot "#/rows/surveys?limit=5" ui-rows.png 1000
