# Shared helpers of the benchmark scripts; source it, don't run it.

# build_release: builds the rubricmill binary in release mode and sets $bin.
build_release() {
  cargo build --release -q --locked -p rubricmill-cli
  bin="${CARGO_TARGET_DIR:-target}/release/rubricmill"
}

# generate_pairs COUNT PATH: writes COUNT synthetic preference pairs as JSONL, each with its
# own random words (so they are not near-duplicates of each other).
generate_pairs() {
  python3 - "$1" "$2" <<'PY'
import json, random, sys
count, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "la", "gu", "fe", "ri", "zo", "ba"]
vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(4000)]
topics = ["olive oil", "sourdough", "bike chains", "tax forms", "houseplants", "python lists", "sql joins"]
with open(path, "w") as out:
    for i in range(count):
        words = " ".join(rng.choice(vocab) for _ in range(10))
        t = topics[i % len(topics)]
        out.write(json.dumps({
            "id": f"bench-{i:07d}",
            "prompt": f"In under 80 words, how should I look after {t} given {words}?",
            "chosen": f"Keep {t} clean, check them weekly, and mind the {words}.",
            "rejected": f"{t} need no care at all.",
        }) + "\n")
PY
}

# start_mock WORKDIR [mock-llm flags...]: starts `rubricmill mock-llm` on a free port, sets
# $mock_pid and $mock_url (…/v1). stop_mock stops it.
start_mock() {
  local work=$1
  shift
  "$bin" mock-llm --port 0 "$@" >"$work/mock.out" 2>"$work/mock.err" &
  mock_pid=$!
  mock_url=""
  for _ in $(seq 1 100); do
    mock_url=$(sed -n 's/^mock-llm listening on \(http[^ ]*\).*/\1/p' "$work/mock.out" | head -n 1)
    [ -n "$mock_url" ] && return 0
    sleep 0.1
  done
  echo "mock-llm did not start: $(cat "$work/mock.err")" >&2
  return 1
}

stop_mock() {
  if [ -n "${mock_pid:-}" ] && kill -0 "$mock_pid" 2>/dev/null; then
    kill -TERM "$mock_pid" 2>/dev/null || true
    wait "$mock_pid" 2>/dev/null || true
  fi
  mock_pid=""
}

# mock_stats: the mock's /stats JSON.
mock_stats() {
  python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1].removesuffix('/v1') + '/stats').read().decode())" "$mock_url"
}
