//! The reference pipeline end to end: `rubricmill run` of `configs/quickstart-reference.toml`
//! (the simulated provider on `samples/reference/prompts.jsonl`), checking that every input line ends as a row or a reject
//! with its reason, that points stay in [-10, 10], and that the prompt, reference answer and
//! passed-through tags reach the rows.

use std::collections::BTreeMap;

use arrow_array::{Array, Int32Array, ListArray, RecordBatch, StringArray, StructArray};

use crate::{Committed, repo_root, run_job, write_spec};

/// Per row: id → (points, categories) of its rubric.
fn rubrics(batches: &[RecordBatch]) -> BTreeMap<String, (Vec<i32>, Vec<String>)> {
    let mut out = BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let rubric = batch
            .column_by_name("rubric")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        for row in 0..batch.num_rows() {
            let items = rubric.value(row);
            let items = items.as_any().downcast_ref::<StructArray>().unwrap();
            let points = items
                .column_by_name("points")
                .unwrap()
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap();
            let categories = items
                .column_by_name("category")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            out.insert(
                ids.value(row).to_owned(),
                (
                    points.iter().map(Option::unwrap).collect(),
                    categories.iter().map(|c| c.unwrap().to_owned()).collect(),
                ),
            );
        }
    }
    out
}

#[test]
fn reference_sample_accounts_for_every_line_with_points_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let input = repo_root().join("samples/reference/prompts.jsonl");
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    let quickstart =
        std::fs::read_to_string(repo_root().join("configs/quickstart-reference.toml")).unwrap();
    let body = quickstart
        .replace("name = \"quickstart-reference\"\n", "")
        .replace(
            "url = \"samples/reference/prompts.jsonl\"",
            &format!("url = \"{}\"", input.display()),
        )
        .replace(
            "url = \"out\"",
            &format!("url = \"{}\"", dir.path().join("out").display()),
        );
    assert!(body.contains(&input.display().to_string()), "{body}");
    let spec = write_spec(dir.path(), "reference-sample", &body);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/reference-sample"));

    // Nothing lost: every line is a row or a reject.
    assert_eq!(out.row_count() + out.reject_count(), lines, "{summary}");
    assert_eq!(out.row_count(), 6, "{:?}", out.reject_strings("reason"));
    let reasons = out.reject_strings("reason");
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("no prompt")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("turn 0") && r.contains("role")),
        "{reasons:?}"
    );

    // Points in range and never 0; a pitfall has negative points, every other criterion positive.
    let rubrics = rubrics(&out.rows);
    let ids: Vec<&str> = rubrics.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "ref-001", "ref-002", "ref-003", "ref-004", "ref-007", "ref-009"
        ]
    );
    for (id, (points, categories)) in &rubrics {
        assert!((2..=6).contains(&points.len()), "{id}: {points:?}");
        assert!(
            points.iter().all(|p| (-10..=10).contains(p) && *p != 0),
            "{id}: {points:?}"
        );
        for (p, c) in points.iter().zip(categories) {
            assert_eq!(*p < 0, c == "pitfall", "{id}: {p} {c}");
        }
    }

    // The record's own fields reach the rows: reference answers under any of their names, none
    // for ref-003, and the domain.
    let references = out.strings("reference_answer");
    assert_eq!(references.iter().filter(|r| r.is_empty()).count(), 1);
    assert!(
        references
            .iter()
            .any(|r| r.starts_with("Use a fast-draining cactus"))
    );
    assert!(out.strings("domain").contains(&"gardening".to_owned()));
    assert_eq!(
        out.metadata.get("rubricmill.pipeline").map(String::as_str),
        Some("reference")
    );
}
