#!/usr/bin/env bash
# Gateway overhead: 20,000 calls through the full crg pipeline against a zero-latency mock-llm
# (HTTP, JSON schema, parsing, accounting, cache writes), side by side with the same job on the
# in-process simulated provider (no HTTP) as the baseline. Prints calls/s and peak RSS of each.
# Targets on a 2-core machine: >= 5,000 calls/s and <= 150 MiB through HTTP.
#
#   scripts/bench-llm-overhead.sh [calls]      default: 20000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
calls="${1:-20000}"
build_release
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT

start_mock "$work"
generate_pairs "$calls" "$work/pairs.jsonl"
spec() { # name provider-lines
  cat >"$work/$1.toml" <<TOML
name = "$1"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
records_per_shard = 1000
[output]
url = "$work/out"
[llm]
$2
model = "mock-model"
max_concurrency = 64
max_tokens = 512
# One call per pair: the gateway is what is measured here (scripts/bench-crg.sh has the judge).
[crg]
consistency_filter = false
TOML
}
spec http "provider = \"openai\"
base_url = \"$mock_url\""
spec simulated 'provider = "simulated"'

printf '%-10s %8s %10s %10s %14s\n' provider calls seconds calls/s peak_rss_MiB
for name in simulated http; do
  /usr/bin/time -f '%M' -o "$work/rss-$name" "$bin" run "$work/$name.toml" --json --no-progress \
    --workers 2 --shard-concurrency 2 >"$work/summary-$name.json" 2>"$work/log-$name"
  python3 - "$name" "$work/summary-$name.json" "$work/rss-$name" "$calls" <<'PY'
import json, sys
name, summary, rss, n = sys.argv[1], json.load(open(sys.argv[2])), int(open(sys.argv[3]).read().split()[-1]), int(sys.argv[4])
run = summary["this_run"]
assert run["rows"] + run["rejects"] == n, "rows + rejects != inputs"
calls = run["llm_calls"]
secs = summary["elapsed_s"]
print(f"{name:<10} {calls:8} {secs:10.2f} {calls / secs:10.0f} {rss / 1024:14.1f}")
PY
done
python3 - "$work/summary-simulated.json" "$work/summary-http.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
ra = a["this_run"]["llm_calls"] / a["elapsed_s"]
rb = b["this_run"]["llm_calls"] / b["elapsed_s"]
print(f"http / simulated calls/s ratio: {rb / ra:.2f}")
PY
