//! `rubricmill run` on the shipped samples and on the real corpora: rows = inputs − rejects,
//! schemas as documented, provenance filled, shards independent of the worker count.

use std::collections::HashSet;

use crate::researchqa::RESEARCHQA_COLUMNS;
use crate::{Committed, column_names, repo_root, rubricmill, run_job, write_pairs, write_spec};

const PROVENANCE: [&str; 12] = [
    "source_file",
    "source_location",
    "shard_id",
    "attempt_id",
    "provider",
    "model",
    "prompt_hash",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "cache_hits",
    "cached_from",
];

#[test]
fn quickstart_researchqa_writes_documented_rows_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let samples = repo_root().join("samples/surveys");
    let spec = write_spec(
        dir.path(),
        "rq",
        &format!(
            "pipeline = \"researchqa\"\n[input]\nurl = \"{}/**/*.md\"\nrecords_per_shard = 1\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            samples.display(),
            dir.path().join("out").display()
        ),
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["stop"], "complete");
    let out = Committed::read(&dir.path().join("out/rq"));
    assert_eq!(out.markers.len(), 4, "one shard per sample survey");
    let mut expected = RESEARCHQA_COLUMNS.to_vec();
    expected.extend([
        "doc_id",
        "doc_title",
        "section_heading",
        "heading_path",
        "section_text_hash",
        "section_kind",
        "section_text",
        "cited_references",
    ]);
    expected.extend(PROVENANCE);
    assert_eq!(column_names(&out.rows), expected);
    let rubric_type = out.rows[0]
        .schema()
        .field_with_name("rubric")
        .unwrap()
        .data_type()
        .to_string();
    assert!(
        rubric_type.contains("rubric_item") && rubric_type.contains("citation_metadata"),
        "{rubric_type}"
    );
    // Every document parsed; every kept section became a row or a reject.
    assert_eq!(out.stage_sum("parse", "input"), 4);
    assert_eq!(out.stage_sum("parse", "output"), 4);
    let generated = out.stage_sum("generate", "input");
    assert_eq!(
        generated,
        out.row_count() as u64 + out.stage_sum("generate", "rejected")
    );
    assert_eq!(out.row_count() as u64, out.marker_sum("rows"));
    assert_eq!(
        summary["this_run"]["rows"].as_u64().unwrap(),
        out.row_count() as u64
    );
    assert!(
        out.row_count() >= 20,
        "at least five sections a survey: {}",
        out.row_count()
    );
    // Dropped sections (abstract, references) are rejects with a stage and reason.
    assert_eq!(out.reject_count() as u64, out.marker_sum("rejects"));
    assert!(out.reject_strings("stage").iter().all(|s| {
        [
            "sections",
            "generate",
            "query_judge",
            "rubric_check",
            "min_items",
        ]
        .contains(&s.as_str())
    }));
    assert!(
        out.reject_strings("reason")
            .iter()
            .any(|r| r.to_lowercase().contains("reference"))
    );
    // ids are `<docid>-s<index>` and unique.
    let ids = out.strings("id");
    let docs = out.strings("doc_id");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    for (id, doc) in ids.iter().zip(&docs) {
        let index = id
            .strip_prefix(&format!("{doc}-s"))
            .unwrap_or_else(|| panic!("{id} does not start with {doc}-s"));
        assert!(index.parse::<u32>().is_ok(), "{id}");
    }
    // Provenance is filled and the simulated provider is labelled as such.
    for column in [
        "source_file",
        "source_location",
        "shard_id",
        "attempt_id",
        "prompt_hash",
    ] {
        assert!(
            out.strings(column).iter().all(|v| !v.is_empty()),
            "{column} empty"
        );
    }
    assert!(out.strings("provider").iter().all(|p| p == "simulated"));
    assert!(
        out.strings("source_file")
            .iter()
            .all(|f| f.starts_with("file:///") && f.ends_with(".md"))
    );
    assert_eq!(
        out.metadata.get("rubricmill.simulated").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        out.metadata.get("rubricmill.pipeline").map(String::as_str),
        Some("researchqa")
    );
    assert!(
        out.metadata
            .get("rubricmill.prompt_hashes")
            .unwrap()
            .contains("researchqa_generate")
    );
    assert!(out.strings("query").iter().all(|q| q.ends_with('?')));
}

fn crg_spec(dir: &std::path::Path, name: &str, input: &str, per_shard: u32) -> std::path::PathBuf {
    write_spec(
        dir,
        name,
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{input}\"\nrecords_per_shard = {per_shard}\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            dir.join("out").display()
        ),
    )
}

#[test]
fn quickstart_crg_accounts_for_every_pair() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!("{}/*.jsonl", repo_root().join("samples/pairs").display());
    let spec = crg_spec(dir.path(), "pairs", &input, 8);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/pairs"));
    // 40 lines in the two sample files: a duplicate-response pair and a broken line are rejected.
    assert_eq!(out.marker_sum("records"), 40);
    assert_eq!(out.row_count() + out.reject_count(), 40);
    assert_eq!(out.reject_count(), 2);
    let reasons = out.reject_strings("reason");
    assert!(
        reasons.iter().any(|r| r.contains("identical")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("invalid JSON")),
        "{reasons:?}"
    );
    let mut expected = vec![
        "pair_id",
        "source",
        "prompt",
        "chosen",
        "rejected",
        "rubric",
        "verdicts",
        "consistency",
        "attempts",
        "kept",
        "rubric_id",
        "drop_reason",
        "attempt_log",
        "judge_model",
        "judge_prompt_hash",
    ];
    expected.extend(PROVENANCE);
    assert_eq!(column_names(&out.rows), expected);
    let ids = out.strings("pair_id");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    // Per generation attempt of a pair: one generation and two judge calls (both orders).
    let attempts: u64 = out
        .rows
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("attempts").unwrap();
            let column = column.as_any().downcast_ref::<arrow_array::UInt32Array>();
            column.unwrap().values().to_vec()
        })
        .map(u64::from)
        .sum();
    assert!(attempts >= out.row_count() as u64);
    assert_eq!(
        summary["this_run"]["llm_calls"].as_u64().unwrap(),
        3 * attempts
    );
}

/// The `kept` column of committed crg rows: (kept, dropped).
fn kept_and_dropped(out: &Committed) -> (u64, u64) {
    let mut counts = (0, 0);
    for batch in &out.rows {
        let column = batch.column_by_name("kept").unwrap();
        let kept = column
            .as_any()
            .downcast_ref::<arrow_array::BooleanArray>()
            .unwrap();
        for value in kept.iter() {
            if value.unwrap() {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
    }
    counts
}

#[test]
fn crg_summary_counts_kept_and_dropped_rows() {
    // The quickstart's pairs, with a judge that errs often and no regeneration, so the
    // consistency filter drops some rubrics.
    let input = format!("{}/*.jsonl", repo_root().join("samples/pairs").display());
    let body = |out: &std::path::Path| {
        format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{input}\"\nrecords_per_shard = 8\n[output]\nurl = \"{}\"\n\
             [llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\nsimulated_judge_error_rate = 0.4\n\
             [crg]\nmax_resamples = 0\n",
            out.display()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(dir.path(), "kept", &body(&dir.path().join("out")));
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/kept"));
    let (kept, dropped) = kept_and_dropped(&out);
    assert!(
        kept > 0 && dropped > 0,
        "the test needs both: {kept} kept, {dropped} dropped"
    );
    let run = &summary["this_run"];
    assert_eq!(run["kept_rows"].as_u64(), Some(kept), "{summary}");
    assert_eq!(run["dropped_rows"].as_u64(), Some(dropped), "{summary}");
    assert_eq!(run["rows"].as_u64(), Some(kept + dropped));

    // The text summary says the same of its own run.
    let text_dir = tempfile::tempdir().unwrap();
    let spec = write_spec(text_dir.path(), "kept", &body(&text_dir.path().join("out")));
    let output = rubricmill()
        .arg("run")
        .arg(&spec)
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let (kept, dropped) = kept_and_dropped(&Committed::read(&text_dir.path().join("out/kept")));
    assert!(
        stdout.contains(&format!(
            "{kept} rows kept, {dropped} dropped by the consistency filter"
        )),
        "{stdout}"
    );
}

#[test]
fn shards_and_rows_do_not_depend_on_the_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_pairs(&input, 300);
    let mut outputs = Vec::new();
    for workers in ["1", "4"] {
        let sub = dir.path().join(format!("w{workers}"));
        std::fs::create_dir_all(&sub).unwrap();
        let spec = crg_spec(&sub, "same", input.to_str().unwrap(), 25);
        let (code, summary, _) = run_job(
            &spec,
            &["--workers", workers, "--shard-concurrency", workers],
        );
        assert_eq!(code, 0, "{summary}");
        outputs.push(Committed::read(&sub.join("out/same")));
    }
    let shard_ids = |c: &Committed| {
        c.markers
            .iter()
            .map(|m| m["shard_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(shard_ids(&outputs[0]).len(), 12);
    assert_eq!(shard_ids(&outputs[0]), shard_ids(&outputs[1]));
    let mut a = outputs[0].strings("pair_id");
    let mut b = outputs[1].strings("pair_id");
    a.sort();
    b.sort();
    assert_eq!(a.len(), 300);
    assert_eq!(a, b);
}

#[test]
fn bad_config_fails_before_any_work_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = write_spec(
        dir.path(),
        "bad",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"x.jsonl\"\nrecords_per_shard = 0\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\n",
            out.display()
        ),
    );
    let output = rubricmill().arg("run").arg(&spec).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("input.records_per_shard") && stderr.contains("bad.toml"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing may be written for a bad spec");
    let typo = write_spec(
        dir.path(),
        "typo",
        "pipeline = \"crg\"\n[input]\nurl = \"x\"\nrecord_per_shard = 5\n[output]\nurl = \"o\"\n",
    );
    let output = rubricmill().arg("validate").arg(&typo).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("record_per_shard"));
}

#[test]
fn hh_rlhf_corpus_every_pair_is_a_row_or_a_reject() {
    let corpus = repo_root().join("../shared/corpus/pairs/hh-rlhf-harmless-base-test.jsonl.gz");
    if !corpus.exists() {
        eprintln!("skipping: ../shared/corpus not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_spec(dir.path(), "hh", corpus.to_str().unwrap(), 200);
    let (code, summary, _) = run_job(&spec, &["--workers", "2"]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/hh"));
    assert_eq!(out.marker_sum("records"), 2312);
    assert_eq!(out.row_count() + out.reject_count(), 2312);
    assert!(out.row_count() >= 2300, "{} rows", out.row_count());
    assert!(out.reject_strings("stage").iter().all(|s| s == "parse"));
    assert!(out.reject_strings("reason").iter().all(|r| !r.is_empty()));
}

#[test]
fn missing_and_mistyped_fields_become_reject_rows_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let lines = [
        r#"{"prompt": "Name a prime.", "chosen": "Seven.", "rejected": "Nine."}"#,
        r#"{"prompt": "Name a prime.", "chosen": "Seven."}"#,
        r#"{"prompt": "Name a prime.", "chosen": 7, "rejected": "Nine."}"#,
        r#"["not", "an", "object"]"#,
        r#"{"prompt": "Name a prime.", "chosen": "  ", "rejected": "Nine."}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let spec = crg_spec(dir.path(), "mixed", input.to_str().unwrap(), 50);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/mixed"));
    assert_eq!(out.row_count(), 1);
    assert_eq!(out.reject_count(), 4);
    let located: Vec<(String, String)> = out
        .reject_strings("source_location")
        .into_iter()
        .zip(out.reject_strings("reason"))
        .collect();
    let reason_at = |line: &str| {
        located
            .iter()
            .find(|(l, _)| l == line)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(reason_at("line 2").contains("rejected"), "{located:?}");
    assert!(
        reason_at("line 3").contains("chosen") && reason_at("line 3").contains("string"),
        "{located:?}"
    );
    assert!(reason_at("line 4").contains("object"), "{located:?}");
    assert!(reason_at("line 5").contains("empty"), "{located:?}");
}

#[test]
fn prompt_overrides_are_used_and_recorded_and_unknown_names_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_pairs(&input, 12);
    let template = dir.path().join("my_crg.md");
    let text = "Write a rubric. JSON only.\n---\n<conversation>\n{conversation}\n</conversation>\nChosen: {chosen}\nRejected: {rejected}\n";
    std::fs::write(&template, text).unwrap();
    let spec = crg_spec(dir.path(), "custom", input.to_str().unwrap(), 5);
    let body = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        format!(
            "{body}[prompts]\ncrg_generate = \"{}\"\n",
            template.display()
        ),
    )
    .unwrap();
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/custom"));
    let expected = rubricmill_core::short_hash(text.as_bytes(), 24);
    assert!(
        out.strings("prompt_hash").iter().all(|h| *h == expected),
        "rows record the override's hash"
    );
    std::fs::write(
        &spec,
        format!(
            "{body}[prompts]\nnot_a_template = \"{}\"\n",
            template.display()
        ),
    )
    .unwrap();
    let output = rubricmill().arg("run").arg(&spec).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown prompt template"));
}

#[test]
fn a_large_shard_is_streamed_in_several_batches_and_read_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.jsonl");
    write_pairs(&input, 10_000);
    let spec = crg_spec(dir.path(), "big", input.to_str().unwrap(), 10_000);
    let body = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{body}[crg]\nconsistency_filter = false\n")).unwrap();
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/big"));
    assert_eq!(out.markers.len(), 1, "one shard");
    let ids = out.strings("pair_id");
    assert_eq!(ids.len(), 10_000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 10_000);
    let marker = &out.markers[0];
    let part = dir
        .path()
        .join("out/big")
        .join(marker["part"].as_str().unwrap());
    let bytes = std::fs::read(part).unwrap();
    let reader =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes.clone()))
            .unwrap();
    let groups = parquet::file::reader::FileReader::metadata(&reader).num_row_groups();
    assert_eq!(
        groups, 2,
        "row groups of 8,192 rows went out as they filled"
    );
    assert_eq!(marker["bytes"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(
        marker["checksum"].as_str().unwrap(),
        rubricmill_core::content_hash(&bytes)
    );
}
