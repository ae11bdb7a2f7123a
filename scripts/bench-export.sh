#!/usr/bin/env bash
# Export throughput: a job of N synthetic preference pairs (default 1,000,000) is run with the
# simulated provider, then exported (dedup, splits, Parquet in the Hugging Face layout) to
# file://. Prints rows/s, MB/s of dataset written, and the export's peak RSS; the same
# export without near-duplicate detection runs beside it as the baseline.
#
#   scripts/bench-export.sh [rows]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rows="${1:-1000000}"
build_release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

generate_pairs "$rows" "$work/pairs.jsonl"
cat >"$work/job.toml" <<TOML
name = "bench-export"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
records_per_shard = 5000
[output]
url = "$work/out"
[llm]
provider = "simulated"
model = "simulated"
max_concurrency = 64
TOML
"$bin" run "$work/job.toml" --json --no-progress >"$work/run.json" 2>"$work/run.log"
printf '%-22s %10s %10s %10s %10s %14s\n' export rows_out seconds rows/s MB/s peak_rss_MiB
for variant in "near-dedup" "exact-only"; do
  flags=()
  [ "$variant" = "exact-only" ] && flags=(--no-near-dedup)
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss-$variant" "$bin" export "$work/job.toml" --to "$work/export-$variant" --json "${flags[@]}" \
    >"$work/report-$variant.json" 2>"$work/export-$variant.log"
  end=$(date +%s.%N)
  python3 - "$variant" "$work/report-$variant.json" "$work/rss-$variant" "$start" "$end" <<'PY'
import json, sys
variant, report = sys.argv[1], json.load(open(sys.argv[2]))
rss = int(open(sys.argv[3]).read().split()[-1])
secs = float(sys.argv[5]) - float(sys.argv[4])
print(f"{variant:<22} {report['rows_written']:10} {secs:10.2f} {report['rows_read'] / secs:10.0f} {report['bytes_written'] / secs / 1e6:10.1f} {rss / 1024:14.1f}")
PY
done
