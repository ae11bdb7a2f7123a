#!/usr/bin/env bash
# CRG throughput: the 2,312 HH-RLHF harmless-base test pairs through the full crg pipeline
# (generation, judge in both orders, rejection sampling with k = 3) against a zero-latency
# mock-llm whose judge errs at 0 % and at 30 %. Prints pairs/s, LLM calls, kept and dropped
# pairs and LLM calls per kept rubric for each rate, and checks kept + dropped = pairs.
#
#   scripts/bench-crg.sh [pairs.jsonl.gz]   default: ../shared/corpus/pairs/hh-rlhf-harmless-base-test.jsonl.gz
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
input="${1:-$(cd .. && pwd)/shared/corpus/pairs/hh-rlhf-harmless-base-test.jsonl.gz}"
[ -f "$input" ] || { echo "no input at $input" >&2; exit 1; }
build_release
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT

printf '%-9s %7s %6s %7s %8s %9s %8s %8s %16s\n' \
  judge_err pairs kept dropped rejects llm_calls seconds pairs/s calls/kept_rubric
for rate in 0 0.3; do
  name="crg-err${rate/./}"
  start_mock "$work" --judge-error-rate "$rate"
  cat >"$work/$name.toml" <<TOML
name = "$name"
pipeline = "crg"
[input]
url = "$input"
records_per_shard = 200
[output]
url = "$work/out-$name"
[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-writer"
max_concurrency = 64
max_tokens = 600
[llm.stages.judge]
model = "mock-judge"
max_tokens = 200
[crg]
max_resamples = 3
TOML
  "$bin" run "$work/$name.toml" --json --no-progress --workers 2 --shard-concurrency 2 \
    >"$work/summary-$name.json" 2>"$work/log-$name"
  stats=$(mock_stats)
  stop_mock
  python3 - "$rate" "$work/summary-$name.json" "$work/out-$name/$name/commits" "$stats" <<'PY'
import json, os, sys
rate, summary, commits, stats = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], json.loads(sys.argv[4])
run = summary["this_run"]
records = pairs = kept = 0
for name in os.listdir(commits):
    marker = json.load(open(os.path.join(commits, name)))
    records += marker["records"]
    consistency = marker.get("stages", {}).get("consistency", {})
    pairs += consistency.get("input", 0)
    kept += consistency.get("output", 0)
dropped = pairs - kept
# Pairwise input: every record is one pair (a row, kept or dropped) or a reject.
assert run["rows"] == pairs, (run["rows"], pairs)
assert run["rows"] + run["rejects"] == records, (run["rows"], run["rejects"], records)
calls = run["llm_calls"]
assert calls == stats["requests"], (calls, stats["requests"])
secs = summary["elapsed_s"]
print(f"{float(rate) * 100:8.0f}% {pairs:7} {kept:6} {dropped:7} {run['rejects']:8} {calls:9} {secs:8.2f} {pairs / secs:8.0f} {calls / max(kept, 1):16.2f}")
PY
done
