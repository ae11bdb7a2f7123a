#!/usr/bin/env bash
# Export throughput: a job of N synthetic preference pairs (default 1,000,000) is run with the
# simulated provider, then exported (dedup, splits, Parquet in the Hugging Face layout) to
# file://. Prints rows/s, MB/s of dataset written, and the export's peak RSS; the same
# export without near-duplicate detection runs beside it as the baseline.
#
#   scripts/bench-export.sh [rows]
#
# Scale mode: for each size, a synthetic committed job (tiny researchqa rows written straight
# into committed parts and markers by crates/export/examples/synthetic_job.rs, 1% exact
# duplicates) exported with near-duplicate detection on; prints rows/s and peak RSS per size,
# and the ratio of the largest size's peak RSS to the smallest's (target: at most 1.5).
#
#   scripts/bench-export.sh --scale [rows ...]     # default sizes: 1000000 10000000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ "${1:-}" = "--scale" ]; then
  shift
  sizes=("$@")
  [ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
  build_release
  # $RUBRICMILL_SYNTHETIC_JOB: the example built elsewhere (as $RUBRICMILL_BIN for the binary).
  synth=${RUBRICMILL_SYNTHETIC_JOB:-}
  if [ -z "$synth" ]; then
    cargo build --release -q --locked -p rubricmill-export --example synthetic_job
    synth="${CARGO_TARGET_DIR:-target}/release/examples/synthetic_job"
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  export TMPDIR="$work"
  printf '%-10s %10s %10s %10s %10s %14s\n' rows rows_out write_s export_s rows/s peak_rss_MiB
  results=()
  for size in "${sizes[@]}"; do
    cat >"$work/job-$size.toml" <<TOML
name = "scale-$size"
pipeline = "researchqa"
[input]
url = "$work/none/*.md"
[output]
url = "$work/out"
[llm]
provider = "simulated"
model = "simulated"
TOML
    start=$(date +%s.%N)
    "$synth" "$work/job-$size.toml" "$size" 20000 >/dev/null
    made=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$work/rss-$size" "$bin" export "$work/job-$size.toml" --target "$work/export-$size" \
      --json >"$work/report-$size.json" 2>"$work/export-$size.log"
    end=$(date +%s.%N)
    line=$(python3 - "$size" "$work/report-$size.json" "$work/rss-$size" "$start" "$made" "$end" <<'PY'
import json, sys
size, report = sys.argv[1], json.load(open(sys.argv[2]))
rss = int(open(sys.argv[3]).read().split()[-1])
start, made, end = map(float, sys.argv[4:7])
secs = end - made
print(f"{size:<10} {report['rows_written']:10} {made - start:10.1f} {secs:10.1f} {report['rows_read'] / secs:10.0f} {rss / 1024:14.1f}")
PY
)
    echo "$line"
    results+=("$(awk '{print $6}' <<<"$line")")
    rm -rf "$work/out" "$work/export-$size"
  done
  python3 - "${sizes[0]}" "${sizes[-1]}" "${results[0]}" "${results[-1]}" <<'PY'
import sys
small, large, rss_small, rss_large = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
ratio = rss_large / rss_small
verdict = "within" if ratio <= 1.5 else "above"
print(f"peak RSS {large} rows / {small} rows: {ratio:.2f}x ({verdict} the 1.5x target)")
PY
  exit 0
fi

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
  /usr/bin/time -f '%M' -o "$work/rss-$variant" "$bin" export "$work/job.toml" --target "$work/export-$variant" --json "${flags[@]}" \
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
