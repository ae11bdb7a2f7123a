#!/usr/bin/env bash
# Survey mining throughput: the researchqa pipeline over the 20 real surveys in
# ../shared/corpus/surveys against a zero-latency mock-llm (HTTP, JSON schema, parsing, query
# judge, item checks, field classification, Parquet). Prints kept sections per second and LLM
# calls per kept query (generation + judge + repairs + one classification per document).
#
#   scripts/bench-researchqa.sh [rounds]      default: 3 (the job is run this many times)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rounds="${1:-3}"
corpus="$(cd .. && pwd)/shared/corpus/surveys"
if [ ! -d "$corpus" ]; then
  echo "skipping: ../shared/corpus not found" >&2
  exit 0
fi
build_release
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT
start_mock "$work"

printf '%-6s %9s %6s %8s %7s %9s %11s %14s %12s\n' round sections rows rejects calls seconds sections/s calls/query peak_rss_MiB
for round in $(seq 1 "$rounds"); do
  cat >"$work/job-$round.toml" <<TOML
name = "bench-rq-$round"
pipeline = "researchqa"
[input]
url = "$corpus/**/*.md"
format = "markdown"
records_per_shard = 2
[output]
url = "$work/out"
[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-model"
max_tokens = 1024
max_concurrency = 64
[researchqa]
classify_taxonomy = [
  "Computer Science > Machine Learning > Generative Models",
  "Computer Science > Information Retrieval > Recommender Systems",
  "Medicine > Endocrinology > Diabetes",
  "Medicine > Oncology > Precision Oncology",
]
TOML
  /usr/bin/time -f '%M' -o "$work/rss-$round" "$bin" run "$work/job-$round.toml" --json --no-progress \
    --no-cache >"$work/summary-$round.json" 2>"$work/log-$round"
  python3 - "$round" "$work/summary-$round.json" "$work/rss-$round" "$work/out/bench-rq-$round" <<'PY'
import glob, json, sys
round_, summary, rss_path, job = sys.argv[1:]
summary = json.load(open(summary))
rss = int(open(rss_path).read().split()[-1])
stages = {}
for path in glob.glob(f"{job}/commits/*.json"):
    for name, counts in json.load(open(path))["stages"].items():
        total = stages.setdefault(name, {"input": 0, "output": 0, "rejected": 0})
        for key in total:
            total[key] += counts.get(key, 0)
run = summary["this_run"]
sections = stages["generate"]["input"]
kept = stages["min_items"]["output"]
assert kept == run["rows"], (kept, run["rows"])
assert sections == kept + stages["generate"]["rejected"] + stages.get("query_judge", {}).get("rejected", 0) + stages["min_items"]["rejected"]
calls = run["llm_calls"]
secs = summary["elapsed_s"]
print(f"{round_:<6} {sections:9} {kept:6} {run['rejects']:8} {calls:7} {secs:9.2f} {sections / secs:11.1f} {calls / kept:14.3f} {rss / 1024:12.1f}")
PY
done
echo "mock-llm: $(mock_stats)"
