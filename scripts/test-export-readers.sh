#!/usr/bin/env bash
# Reads exports back with the tools training teams use: pyarrow, DuckDB, polars and
# `datasets.load_dataset("parquet", data_dir=…)`. Installs them into a virtualenv under
# ~/.cache/rubricmill when missing. Builds the binary, runs two small jobs with the simulated
# provider (the real corpora when ../shared/corpus exists, the samples otherwise), exports them
# twice into the same target (the second time with another --target-file-mb, so a new version
# replaces the first) and checks counts, splits, unique ids, that no source document straddles
# two splits, and that the `data/` glob and the card see the new version only.
#
#   scripts/test-export-readers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

venv="${RUBRICMILL_PY_VENV:-$HOME/.cache/rubricmill/py-readers}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pyarrow, duckdb, polars, datasets" 2>/dev/null; then
  echo "--- installing pyarrow, duckdb, polars, datasets into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check pyarrow duckdb polars datasets
fi

cargo build -q -p rubricmill-cli
bin="${CARGO_TARGET_DIR:-target}/debug/rubricmill"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

surveys="samples/surveys/**/*.md"
pairs="samples/pairs/*.jsonl"
if [ -d ../shared/corpus ]; then
  surveys="$(cd ../shared/corpus && pwd)/surveys/**/*.md"
  pairs="$(cd ../shared/corpus && pwd)/pairs/*.jsonl.gz"
fi
cat >"$work/rq.toml" <<TOML
name = "readers-rq"
pipeline = "researchqa"
[input]
url = "$surveys"
records_per_shard = 2
[output]
url = "$work/out"
[llm]
provider = "simulated"
model = "simulated"
[dataset]
license = "cc-by-4.0"
TOML
cat >"$work/crg.toml" <<TOML
name = "readers-crg"
pipeline = "crg"
[input]
url = "$pairs"
records_per_shard = 200
[output]
url = "$work/out"
[llm]
provider = "simulated"
model = "simulated"
TOML
for job in rq crg; do
  "$bin" run "$work/$job.toml" --json --no-progress >/dev/null 2>"$work/$job.log"
  "$bin" export "$work/$job.toml" --target "$work/export-$job" --splits train=0.8,validation=0.1,test=0.1 --json >"$work/first-$job.json"
  "$bin" export "$work/$job.toml" --target "$work/export-$job" --splits train=0.8,validation=0.1,test=0.1 --target-file-mb 1 \
    --json >"$work/report-$job.json"
done
HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 "$venv/bin/python" - "$work" <<'PY'
import glob, json, os, sys
import duckdb, polars as pl, pyarrow.dataset as ds, pyarrow.parquet as pq
from datasets import load_dataset

work = sys.argv[1]
passed = failed = 0

def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")

for job, key, id_col in [("rq", "doc_id", "id"), ("crg", "pair_id", "pair_id")]:
    root = f"{work}/export-{job}"
    report = json.load(open(f"{work}/report-{job}.json"))
    first = json.load(open(f"{work}/first-{job}.json"))
    expected = report["rows_written"]
    check(f"{job}: re-export is a new version", report["version"] != first["version"] and report["committed"])
    check(f"{job}: only the new version is under data/", os.listdir(f"{root}/data") == [report["version"]], str(os.listdir(f"{root}/data")))
    check(f"{job}: no staging left", not os.path.exists(f"{root}/.staging"))
    table = ds.dataset(f"{root}/data", format="parquet").to_table()
    check(f"{job}: pyarrow row count", table.num_rows == expected, f"{table.num_rows} != {expected}")
    ids = table.column(id_col).to_pylist()
    check(f"{job}: no id twice", len(ids) == len(set(ids)))
    con = duckdb.connect()
    n = con.execute(f"select count(*) from read_parquet('{root}/data/**/*.parquet')").fetchone()[0]
    check(f"{job}: duckdb row count", n == expected, f"{n}")
    straddling = con.execute(
        f"select count(*) from (select {key}, count(distinct split) s from "
        f"(select {key}, regexp_extract(filename, '/([a-z]+)-[0-9]+-of-', 1) split "
        f"from read_parquet('{root}/data/**/*.parquet', filename=true)) group by {key}) where s > 1"
    ).fetchone()[0]
    check(f"{job}: no {key} in two splits", straddling == 0, f"{straddling}")
    frame = pl.read_parquet(f"{root}/data/**/*.parquet")
    check(f"{job}: polars row count", frame.height == expected, f"{frame.height}")
    loaded = load_dataset("parquet", data_dir=f"{root}/data")
    # the card's configs (data_files under data/<version>/) as the hub reads them
    from_card = load_dataset(root)
    for split, counts in report["splits"].items():
        if counts["rows"] == 0:
            continue
        got = loaded[split].num_rows if split in loaded else -1
        check(f"{job}: datasets split {split}", got == counts["rows"], f"{got} != {counts['rows']}")
        got = from_card[split].num_rows if split in from_card else -1
        check(f"{job}: datasets from the card, split {split}", got == counts["rows"], f"{got} != {counts['rows']}")
    card = open(f"{root}/README.md").read()
    check(f"{job}: card has front matter", card.startswith("---\n") and "configs:" in card)
    for path in glob.glob(f"{root}/data/**/*.parquet", recursive=True):
        meta = pq.read_metadata(path).metadata
        check(f"{job}: simulated label in {os.path.basename(path)}", meta.get(b"rubricmill.provider") == b"simulated")
print(f"export readers: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
