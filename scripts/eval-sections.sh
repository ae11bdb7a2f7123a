#!/usr/bin/env bash
# Measures the survey section rules against the hand labels in crates/mine/tests/labels/ on the
# surveys in ../shared/corpus/surveys: non-content headings kept, content headings dropped,
# precision and recall of the section kind and of review-method marking, per survey and overall;
# and on a hand-checked sample of citations, the recall per survey and the share of resolved
# citations whose first author, year and title are all right; and, needing no labels, the share
# of every survey's citation markers (of its own style) that resolve to a reference entry.
# Exits non-zero when a figure misses its target.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -p rubricmill-mine --test it -- sections_eval --nocapture --test-threads=1
