#!/usr/bin/env bash
# Measures the survey section rules against the hand labels in crates/mine/tests/labels/ on the
# surveys in ../shared/corpus/surveys: non-content headings kept, content headings dropped,
# precision and recall of the section kind and of review-method marking, per survey and overall.
# Exits non-zero when a figure misses its target.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p rubricmill-mine --test it -- sections_eval --nocapture --test-threads=1
