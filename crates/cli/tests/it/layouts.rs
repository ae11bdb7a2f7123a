//! Preference layouts end to end: `rubricmill validate` reports, per input file of the
//! project's layout samples (`samples/pairs/layouts/`), the layouts its records were read as,
//! the pairs they give, the first pair and the reasons of the records that fit none (text and
//! `--json`); bad pair settings fail before any work naming the field; and `rubricmill run`
//! accounts for every record and every comparison.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::{Committed, repo_root, rubricmill, run_job, succeeded, write_spec};

fn samples() -> String {
    format!(
        "{}/*.ndjson",
        repo_root().join("samples/pairs/layouts").display()
    )
}

/// A crg job over `input` with the simulated provider; `settings` go into `[input]`.
fn layouts_job(dir: &Path, name: &str, input: &str, settings: &str) -> std::path::PathBuf {
    write_spec(
        dir,
        name,
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{input}\"\nrecords_per_shard = 4\n{settings}\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            dir.join("out").display()
        ),
    )
}

/// `rubricmill validate --json`'s layout files, by file name.
fn validate_layouts(spec: &Path) -> BTreeMap<String, Value> {
    let output = succeeded(rubricmill().arg("validate").arg(spec).arg("--json"));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    report["layouts"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| {
            let name = file["file"].as_str().unwrap().rsplit('/').next().unwrap();
            (name.to_owned(), file.clone())
        })
        .collect()
}

/// (layout, records, pairs, skipped) of one layout.
type Fit = (String, u64, u64, u64);

/// What a file's records fit: per layout, and the records that fit none.
type Fits = (Vec<Fit>, u64);

fn fits(file: &Value) -> Fits {
    let fits = file["fits"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(layout, c)| {
            let n = |k: &str| c[k].as_u64().unwrap();
            (layout.clone(), n("records"), n("pairs"), n("skipped"))
        })
        .collect();
    (fits, file["fits_none"].as_u64().unwrap())
}

fn fit(layout: &str, records: u64, pairs: u64, skipped: u64) -> Fit {
    (layout.to_owned(), records, pairs, skipped)
}

#[test]
fn validate_reports_the_detected_layouts_of_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layouts_job(dir.path(), "layouts", &samples(), "");
    let files = validate_layouts(&spec);
    let expected: BTreeMap<&str, Fits> = [
        ("argilla-dpo.ndjson", (vec![fit("argilla-dpo", 5, 3, 2)], 0)),
        ("helpsteer.ndjson", (vec![fit("helpsteer", 3, 3, 2)], 1)),
        ("hh-prompt.ndjson", (vec![fit("hh-rlhf", 3, 3, 0)], 1)),
        (
            "listwise-scored.ndjson",
            (vec![fit("listwise", 1, 3, 0)], 3),
        ),
        (
            "llama-factory-alpaca.ndjson",
            (vec![fit("alpaca", 3, 3, 0)], 1),
        ),
        (
            "llama-factory-sharegpt.ndjson",
            (vec![fit("sharegpt", 3, 3, 0)], 1),
        ),
        (
            "llama-factory.ndjson",
            (vec![fit("llama-factory", 3, 3, 0)], 2),
        ),
        ("nectar.ndjson", (vec![fit("nectar", 3, 10, 1)], 1)),
        (
            "openai-messages.ndjson",
            (vec![fit("messages", 3, 3, 0)], 1),
        ),
        (
            "trl-conversational.ndjson",
            (vec![fit("messages", 4, 4, 0)], 1),
        ),
        (
            "trl-standard.ndjson",
            (
                vec![fit("strings", 2, 2, 0), fit("trl-implicit", 2, 2, 0)],
                1,
            ),
        ),
        (
            "ultrafeedback.ndjson",
            (vec![fit("ultrafeedback", 4, 10, 4)], 1),
        ),
    ]
    .into();
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    for (name, want) in &expected {
        let file = &files[*name];
        assert_eq!(&fits(file), want, "{name}");
        assert_eq!(file["all_records_examined"], true, "{name}");
        // Every record that fits none comes with its location and reason.
        let reasons = file["fits_none_reasons"].as_array().unwrap();
        assert_eq!(reasons.len() as u64, want.1, "{name}");
        assert!(
            reasons
                .iter()
                .all(|r| r["location"].as_str().unwrap().starts_with("line "))
        );
        // The first pair is shown, truncated.
        let first = &file["first_pair"];
        assert!(
            first["chosen"].as_str().unwrap().chars().count() <= 73,
            "{name}"
        );
        let first_readable = if *name == "listwise-scored.ndjson" {
            "line 3"
        } else {
            "line 1"
        };
        assert_eq!(first["location"], first_readable, "{name}");
    }
    let ultrafeedback = &files["ultrafeedback.ndjson"];
    assert_eq!(
        ultrafeedback["fits_none_reasons"][0]["reason"],
        "field `completions.1.overall_score`: expected a number, found string (read as ultrafeedback)"
    );
    assert!(
        ultrafeedback["first_pair"]["chosen"]
            .as_str()
            .unwrap()
            .ends_with('…')
    );

    // The text report says the same per file.
    let output = succeeded(rubricmill().arg("validate").arg(&spec));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("layouts    detected per record"), "{text}");
    assert!(
        text.contains("ultrafeedback  4 records -> 10 pairs, 4 comparisons skipped"),
        "{text}"
    );
    assert!(
        text.contains("fits none      line 3: missing field `answers.1.rank` (read as nectar)"),
        "{text}"
    );
}

#[test]
fn validate_follows_the_pair_settings_and_a_forced_layout() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layouts_job(
        dir.path(),
        "settings",
        &samples(),
        "score_order = \"higher_is_better\"\ndrop_non_text = true\npairing = \"best_vs_worst\"",
    );
    let files = validate_layouts(&spec);
    // A stated direction reads every scored list; best versus worst gives one pair per record.
    assert_eq!(
        fits(&files["listwise-scored.ndjson"]),
        (vec![fit("listwise", 4, 4, 0)], 0)
    );
    assert_eq!(
        fits(&files["ultrafeedback.ndjson"]),
        (vec![fit("ultrafeedback", 4, 3, 1)], 1)
    );
    // Image parts are dropped instead of rejecting the record.
    assert_eq!(
        fits(&files["openai-messages.ndjson"]),
        (vec![fit("messages", 4, 4, 0)], 0)
    );
    assert_eq!(
        fits(&files["llama-factory.ndjson"]),
        (vec![fit("llama-factory", 4, 4, 0)], 1)
    );

    // A forced layout reads every record as that layout.
    let input = repo_root().join("samples/pairs/layouts/trl-standard.ndjson");
    let spec = layouts_job(
        dir.path(),
        "forced",
        input.to_str().unwrap(),
        "layout = \"strings\"",
    );
    let output = succeeded(rubricmill().arg("validate").arg(&spec).arg("--json"));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["layouts"]["forced"], "strings");
    let file = &report["layouts"]["files"][0];
    assert_eq!(fits(file), (vec![fit("strings", 2, 2, 0)], 3));
    assert_eq!(
        file["fits_none_reasons"][0]["reason"],
        "missing field `prompt`"
    );
}

#[test]
fn bad_pair_settings_fail_before_any_work_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "layout = \"nectar\"\nscore_order = \"higher_is_better\"",
            "input.score_order",
        ),
        ("helpsteer_attribute = \"verbosity\"", "input.score_order"),
        ("fields = { prompt = \"/meta/q~x\" }", "input.fields.prompt"),
        (
            "fields = { chosen = \"answers..text\" }",
            "input.fields.chosen",
        ),
        ("pairing = \"everything\"", "pairing"),
    ];
    for (i, (settings, field)) in cases.iter().enumerate() {
        let spec = layouts_job(dir.path(), &format!("bad{i}"), &samples(), settings);
        for command in ["validate", "run"] {
            let output = rubricmill().arg(command).arg(&spec).output().unwrap();
            assert_eq!(output.status.code(), Some(1), "{command} {settings}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(field), "{command} {settings}: {stderr}");
        }
        assert!(!dir.path().join("out").join(format!("bad{i}")).exists());
    }
}

#[test]
fn run_accounts_for_every_record_and_every_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let spec = layouts_job(dir.path(), "run", &samples(), "");
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/run"));
    let stage = |name: &str, counter: &str| out.stage_sum(name, counter);
    // 53 records: 39 readable, 14 rejected at parse.
    assert_eq!(out.marker_sum("records"), 53);
    assert_eq!(stage("parse", "input"), 53);
    assert_eq!(
        (stage("parse", "output"), stage("parse", "rejected")),
        (39, 14)
    );
    // 61 comparisons: 52 pairs, 9 skipped (ties, and no others in these samples).
    assert_eq!(stage("pairs", "input"), 61);
    assert_eq!(
        (stage("pairs", "output"), stage("pairs", "rejected")),
        (52, 9)
    );
    // Every pair is a row or a generate reject; every skipped comparison and unreadable record
    // is a reject row with its stage and reason.
    assert_eq!(
        out.row_count() as u64 + stage("generate", "rejected"),
        stage("pairs", "output")
    );
    assert_eq!(
        out.reject_count() as u64,
        stage("parse", "rejected") + stage("pairs", "rejected") + stage("generate", "rejected")
    );
    let stages = out.reject_strings("stage");
    let reasons = out.reject_strings("reason");
    let ties: Vec<&String> = stages
        .iter()
        .zip(&reasons)
        .filter(|(s, _)| *s == "pairs")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(ties.len(), 9);
    assert!(ties.iter().all(|r| r.starts_with("tie: ")), "{ties:?}");
    assert!(reasons.iter().all(|r| !r.is_empty()));
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("set input.score_order") && r.ends_with("(read as listwise)")),
        "{reasons:?}"
    );
}
