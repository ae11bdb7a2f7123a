#!/usr/bin/env bash
# Online against batch mode: the same crg job (synthetic pairs, 200 a shard, generation then
# the judge in both orders) run once with llm.mode = "online" against mock-llm answering each
# call after 200 ms, and once with llm.mode = "batch" against mock-llm finishing each batch
# after a processing delay (30 s by default). Both runs use one shard slot
# (`--shard-concurrency 1`): a shard waiting for its batch must hold no slot, or the batch run
# would take shards × rounds × delay. Prints wall time, calls (online requests, batch items,
# batches), cost at list prices (USD per million tokens: 0.40 in, 1.60 out; batches at half),
# the run's CPU time, and its CPU while no batch was being submitted or collected.
#
#   scripts/bench-batch.sh [PAIRS] [BATCH_DELAY_MS]      (default 10000 pairs, 30000 ms)
set -euo pipefail
trap 'echo "bench-batch: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
source scripts/lib.sh

pairs=${1:-10000}
delay_ms=${2:-30000}
build_release
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT
generate_pairs "$pairs" "$work/pairs.jsonl"

# run_mode MODE MOCK-FLAGS...: runs the job in MODE against a fresh mock-llm and prints one
# line of figures.
run_mode() {
  local mode=$1
  shift
  start_mock "$work" "$@"
  cat >"$work/$mode.toml" <<TOML
name = "bench-$mode"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
records_per_shard = 200
[output]
url = "$work/out-$mode"
[llm]
provider = "openai"
base_url = "$mock_url"
model = "mock-model"
max_concurrency = 64
max_tokens = 400
price_per_million = { input = 0.40, output = 1.60 }
mode = "$mode"
batch_poll_s = 5
TOML
  python3 - "$bin" "$work/$mode.toml" "$mock_url" "$mode" <<'PY'
import json, subprocess, sys, time, urllib.request
binary, spec, mock_url, mode = sys.argv[1:5]
stats_url = mock_url.removesuffix("/v1") + "/stats"
hz = 100
def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / hz
def stats():
    return json.load(urllib.request.urlopen(stats_url))
started = time.monotonic()
run = subprocess.Popen([binary, "run", spec, "--json", "--no-progress", "--shard-concurrency", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
samples = []  # (seconds, cpu seconds, batches created, batch items answered)
while run.poll() is None:
    try:
        s, c = stats(), cpu(run.pid)
        samples.append((time.monotonic() - started, c, s["batches"]["batches_created"], s["batches"]["items_answered"]))
    except (OSError, ValueError):
        pass
    time.sleep(1)
out, _ = run.communicate()
wall = time.monotonic() - started
summary = json.loads(out)
assert run.returncode == 0, summary
final = stats()
batches = final["batches"]
online_calls = final["requests"]
paid = summary["this_run"]
calls = paid["llm_calls"] + summary["uncommitted"]["llm_calls"]
rows = paid["rows"]
total_cpu = samples[-1][1] if samples else 0.0
# Waiting: one-second samples in which no batch was created and no answer came back.
waiting = [(b[1] - a[1]) for a, b in zip(samples, samples[1:]) if b[2] == a[2] and b[3] == a[3]]
waiting_s = len(waiting)
waiting_cpu = sum(waiting)
waiting_text = f"{waiting_s:7} {100 * waiting_cpu / max(waiting_s, 1):10.2f}%" if mode == "batch" else f"{'-':>7} {'-':>11}"
print(f"{mode:7} {rows:7} {wall:9.1f} {online_calls:8} {batches['items_answered']:8} {batches['batches_created']:8} "
      f"{summary['spent_usd']:9.4f} {total_cpu:8.1f} {waiting_text}")
assert calls == online_calls + batches["items_answered"], (calls, online_calls, batches)
assert all(n == 1 for n in batches["batches_by_name"].values()), "a batch was submitted twice"
PY
  stop_mock
}

printf '%-7s %7s %9s %8s %8s %8s %9s %8s %7s %11s\n' \
  mode rows wall_s online batch_it batches cost_usd cpu_s wait_s cpu_waiting
run_mode online --latency-ms 200
run_mode batch --batch-delay-ms "$delay_ms"
echo "serial bound if waiting held the slot: $(( pairs / 200 )) shards × 2 rounds × $(( delay_ms / 1000 )) s = $(( pairs * 2 * delay_ms / 200 / 1000 )) s"
