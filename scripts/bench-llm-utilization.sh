#!/usr/bin/env bash
# Rate-limit utilization: 600 requests through the full crg pipeline against mock-llm enforcing
# 20 requests/s (burst 20) with 200 ms latency, the job configured at 1,200 requests/minute.
# Ideal wall time is 30 s (600 / 20). Targets: wall <= 1.02 x ideal, 429s <= 1 % of requests.
#
#   scripts/bench-llm-utilization.sh [requests]      default: 600
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
requests="${1:-600}"
build_release
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT

start_mock "$work" --rps 20 --burst 20 --latency-ms 200
generate_pairs "$requests" "$work/pairs.jsonl"
cat >"$work/util.toml" <<TOML
name = "utilization"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
records_per_shard = 50
[output]
url = "$work/out"
[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-model"
requests_per_minute = 1200
max_concurrency = 64
max_tokens = 512
# One call per pair: the gateway is what is measured here (scripts/bench-crg.sh has the judge).
[crg]
consistency_filter = false
TOML
"$bin" run "$work/util.toml" --json --no-progress --workers 2 --shard-concurrency 4 >"$work/summary.json" 2>"$work/run.log"
mock_stats >"$work/stats.json"
python3 - "$work/summary.json" "$work/stats.json" "$requests" <<'PY'
import json, sys
summary, stats, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
by_status = {int(k): v for k, v in stats["by_status"].items()}
ok, throttled, total = by_status.get(200, 0), by_status.get(429, 0), stats["requests"]
wall = summary["elapsed_s"]
ideal = n / 20.0
assert summary["this_run"]["rows"] + summary["this_run"]["rejects"] == n, "rows + rejects != inputs"
print(f"requests sent     {total} ({ok} answered, {throttled} answered 429)")
print(f"wall time         {wall:.2f} s (ideal {ideal:.1f} s)")
print(f"wall / ideal      {wall / ideal:.3f}   (target <= 1.02)")
print(f"429 share         {100.0 * throttled / max(total, 1):.2f} %  (target <= 1 %)")
PY
