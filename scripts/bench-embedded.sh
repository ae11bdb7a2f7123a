#!/usr/bin/env bash
# Benchmark of the embedded pipeline with the simulated provider (no network, no latency, one
# generation call per pair):
# records/s and peak RSS on 10k and 100k synthetic preference pairs, and the RSS ratio between
# the two sizes (memory must not grow with input size).
#
#   scripts/bench-embedded.sh [sizes...]      default: 10000 100000
#
# Targets on a 2-core machine: >= 20,000 records/s, peak RSS <= 200 MiB, ratio close to 1.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-10000 100000}")
read -r -a sizes <<<"${sizes[*]}"

. scripts/lib.sh
build_release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-10s %10s %12s %14s %12s\n' records seconds records/s peak_rss_MiB rows+rejects
declare -A rss
for n in "${sizes[@]}"; do
  generate_pairs "$n" "$work/pairs-$n.jsonl"
  cat >"$work/bench-$n.toml" <<TOML
name = "bench-$n"
pipeline = "crg"
[input]
url = "$work/pairs-$n.jsonl"
records_per_shard = 1000
[output]
url = "$work/out"
[llm]
provider = "simulated"
model = "simulated"
max_concurrency = 64
# One call per pair: this measures the embedded machinery (read, pipeline, encode, commit);
# scripts/bench-crg.sh measures the consistency filter's extra judge calls.
[crg]
consistency_filter = false
TOML
  /usr/bin/time -f '%M' -o "$work/rss-$n" "$bin" run "$work/bench-$n.toml" --json --no-progress --workers 2 --shard-concurrency 2 \
    >"$work/summary-$n.json" 2>"$work/log-$n"
  python3 - "$n" "$work/summary-$n.json" "$work/rss-$n" <<'PY'
import json, sys
n, summary, rss = int(sys.argv[1]), json.load(open(sys.argv[2])), int(open(sys.argv[3]).read().split()[-1])
run = summary["this_run"]
secs = summary["elapsed_s"]
assert run["records"] == n, f"read {run['records']} of {n}"
assert run["rows"] + run["rejects"] == n, "rows + rejects != inputs"
print(f"{n:<10} {secs:10.2f} {n / secs:12.0f} {rss / 1024:14.1f} {run['rows'] + run['rejects']:12}")
PY
  rss[$n]=$(tail -n 1 "$work/rss-$n")
done
if [ "${#sizes[@]}" -ge 2 ]; then
  first=${sizes[0]}; last=${sizes[-1]}
  python3 -c "print(f'peak RSS ratio {${last}}/{${first}} records: {${rss[$last]}/${rss[$first]}:.2f}')"
fi
