//! The reference, nuggets and score recipes end to end: each quickstart on our samples with the
//! simulated provider and against mock-llm over HTTP, the reference self-check dropping a
//! rubric that cannot separate its answers, nuggets from a researchqa job's rows, and the score
//! pipeline's agreement with preference labels on crg rubrics of the HH corpus.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{Committed, Mock, quickstart, repo_root, rubricmill, run_job, succeeded, write_spec};

fn lines(sample: &str) -> usize {
    std::fs::read_to_string(repo_root().join(sample))
        .unwrap()
        .lines()
        .count()
}

fn by_id(rows: &[Value], key: &str) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r[key].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn chars(text: &str, start: u64, end: u64) -> String {
    text.chars()
        .skip(start as usize)
        .take((end - start) as usize)
        .collect()
}

/// Exports job `spec` as Parquet into `target`; the glob of the data files written.
fn export_parquet(spec: &std::path::Path, target: &std::path::Path) -> std::path::PathBuf {
    succeeded(
        rubricmill()
            .arg("export")
            .arg(spec)
            .arg("--target")
            .arg(target)
            .args(["--format", "parquet"]),
    );
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("export.json")).unwrap())
            .unwrap();
    let version = record["version"].as_str().unwrap();
    target.join("data").join(version).join("*.parquet")
}

/// The committed output of a quickstart config run as job `name`, after checking that every
/// input line is a row or a reject.
fn run_quickstart(
    dir: &std::path::Path,
    config: &str,
    sample: &str,
    llm: Option<&str>,
) -> (Committed, Value) {
    let spec = quickstart(dir, config, config, llm);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.join("out").join(config));
    assert_eq!(
        out.row_count() + out.reject_count(),
        lines(sample),
        "{summary}"
    );
    assert!(out.reject_strings("reason").iter().all(|r| !r.is_empty()));
    (out, summary)
}

#[test]
fn reference_self_check_keeps_separating_rubrics_and_drops_the_rest_with_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_quickstart(
        dir.path(),
        "quickstart-reference",
        "samples/reference/prompts.jsonl",
        None,
    );
    let rows = by_id(&out.json_rows(), "id");
    // ref-003 has no reference answer: no self-check, kept, no scores.
    let unchecked = &rows["ref-003"];
    assert_eq!(unchecked["kept"], true);
    assert!(unchecked.get("reference_score").is_none(), "{unchecked}");
    assert_eq!(unchecked["attempts"], 1);
    // ref-009's own degraded answer is its reference: no rubric separates them, so it is
    // dropped after 1 + max_resamples attempts, with both scores in the reason.
    let inseparable = &rows["ref-009"];
    assert_eq!(inseparable["kept"], false);
    assert_eq!(inseparable["attempts"], 3);
    assert_eq!(inseparable["degraded_origin"], "input");
    assert_eq!(
        inseparable["reference_score"],
        inseparable["degraded_score"]
    );
    let reason = inseparable["drop_reason"].as_str().unwrap();
    assert!(reason.contains("after 3 attempt(s)"), "{reason}");
    // The others were checked against a generated degraded answer and pass: the reference
    // reaches the threshold, the degraded answer stays below, with one verdict per criterion.
    for id in ["ref-001", "ref-002", "ref-004", "ref-007"] {
        let row = &rows[id];
        assert_eq!(row["degraded_origin"], "generated", "{id}");
        assert_eq!(row["kept"], true, "{id}: {row}");
        let ours = row["reference_score"].as_f64().unwrap();
        let worse = row["degraded_score"].as_f64().unwrap();
        assert!(ours >= 0.5 && worse < 0.5, "{id}: {ours} {worse}");
        let criteria = row["rubric"].as_array().unwrap().len();
        assert_eq!(
            row["reference_verdicts"].as_array().unwrap().len(),
            criteria
        );
        assert_eq!(row["degraded_verdicts"].as_array().unwrap().len(), criteria);
        assert!(!row["judge_prompt_hash"].as_str().unwrap().is_empty());
    }
    // Stage counts: a degraded answer per checked record (five), a judge pass per kept rubric.
    assert_eq!(out.stage_sum("degrade", "input"), 5);
    assert_eq!(out.stage_sum("self_check", "input"), 6);
    assert_eq!(out.stage_sum("self_check", "output"), 5);
}

#[test]
fn nuggets_sample_cites_spans_of_their_passages_and_accounts_for_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_quickstart(
        dir.path(),
        "quickstart-nuggets",
        "samples/nuggets/questions.jsonl",
        None,
    );
    assert_eq!(out.row_count(), 5, "{:?}", out.reject_strings("reason"));
    let reasons = out.reject_strings("reason");
    assert!(
        reasons.iter().any(|r| r.contains("no non-empty passage")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no question")),
        "{reasons:?}"
    );
    let rows = by_id(&out.json_rows(), "id");
    for (id, row) in &rows {
        let passages: BTreeMap<&str, &str> = row["passages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["passage_id"].as_str().unwrap(),
                    p["text"].as_str().unwrap(),
                )
            })
            .collect();
        let nuggets = row["nuggets"].as_array().unwrap();
        assert!(!nuggets.is_empty(), "{id}");
        for nugget in nuggets {
            let passage = passages[nugget["passage_id"].as_str().unwrap()];
            let span = chars(
                passage,
                nugget["span_start"].as_u64().unwrap(),
                nugget["span_end"].as_u64().unwrap(),
            );
            assert_eq!(span, nugget["span"].as_str().unwrap(), "{id}");
            assert!(["vital", "okay"].contains(&nugget["importance"].as_str().unwrap()));
            assert_eq!(nugget["supported"], true, "{id}");
        }
    }
    // A short factual question gets one nugget, a long-form one several.
    assert_eq!(rows["nug-002"]["nuggets"].as_array().unwrap().len(), 1);
    assert!(rows["nug-001"]["nuggets"].as_array().unwrap().len() >= 2);
    // A researchqa row reads as its query with its section as the passage.
    assert_eq!(rows["rq-doc-s2"]["passages"][0]["passage_id"], "rq-doc-s2");
    assert_eq!(out.stage_sum("judge", "input"), 5);
}

#[test]
fn score_sample_grades_every_rubric_layout_and_reports_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let (out, summary) = run_quickstart(
        dir.path(),
        "quickstart-score",
        "samples/score/rubrics.jsonl",
        None,
    );
    assert_eq!(out.row_count(), 6, "{:?}", out.reject_strings("reason"));
    let reasons = out.reject_strings("reason");
    assert!(
        reasons.iter().any(|r| r.contains("no rubric")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("`label` is 4")),
        "{reasons:?}"
    );
    let rows = out.json_rows();
    let layouts: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["rubric_layout"].as_str().unwrap())
        .collect();
    assert_eq!(
        layouts,
        BTreeSet::from([
            "crg",
            "healthbench",
            "openrubric",
            "reference",
            "researchqa"
        ])
    );
    for row in &rows {
        let criteria = row["rubric"].as_array().unwrap().len();
        let responses = row["responses"].as_array().unwrap();
        // Two generated responses beside the input's, each graded on every criterion.
        let generated = responses
            .iter()
            .filter(|r| r["origin"] == "generated")
            .count();
        assert_eq!(generated, 2, "{row}");
        for response in responses {
            assert_eq!(response["verdicts"].as_array().unwrap().len(), criteria);
            let score = response["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score), "{score}");
        }
    }
    // Labelled pairs: the rubric's scores prefer the labelled response (the simulated judge
    // honours the rubric's terms), and a failed hard rule scores 0.
    let labelled: Vec<&Value> = rows.iter().filter(|r| r.get("label").is_some()).collect();
    assert_eq!(labelled.len(), 4);
    for row in &labelled {
        assert_eq!(row["agrees"], true, "{row}");
        assert_eq!(row["predicted"], row["label"]);
    }
    let crg = rows.iter().find(|r| r["rubric_layout"] == "crg").unwrap();
    let rejected = crg["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["response_id"] == "rejected")
        .unwrap();
    assert_eq!(rejected["hard_rules_met"], false);
    assert_eq!(rejected["score"], 0.0);
    // The job reports its agreement as a stage: labelled records in, agreeing ones out.
    assert_eq!(out.stage_sum("agreement", "input"), 4);
    assert_eq!(out.stage_sum("agreement", "output"), 4);
    assert_eq!(summary["agreement"]["labelled"], 4, "{summary}");
    assert_eq!(summary["agreement"]["agreeing"], 4, "{summary}");
    // Run again: nothing is left to do, and the agreement comes from the committed shards.
    let spec = dir.path().join("quickstart-score.toml");
    let (code, again, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["this_run"]["shards"], 0, "{again}");
    assert_eq!(again["agreement"], summary["agreement"], "{again}");
}

#[test]
fn the_three_recipes_run_over_http_against_mock_llm() {
    let mock = Mock::start(rubricmill_mock_llm::MockConfig::default());
    let llm = format!(
        "provider = \"openai\"\nbase_url = \"{}\"\nmodel = \"mock-model\"\nmax_tokens = 600",
        mock.server().base_url()
    );
    for (config, sample, rows) in [
        ("quickstart-reference", "samples/reference/prompts.jsonl", 6),
        ("quickstart-nuggets", "samples/nuggets/questions.jsonl", 5),
        ("quickstart-score", "samples/score/rubrics.jsonl", 6),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (out, summary) = run_quickstart(dir.path(), config, sample, Some(&llm));
        assert_eq!(out.row_count(), rows, "{config}: {summary}");
        assert!(
            out.strings("provider").iter().all(|p| p == "openai"),
            "{config}"
        );
    }
    for task in [
        "reference_rubric",
        "reference_degrade",
        "rubric_grade",
        "nuggets_generate",
        "nuggets_support",
        "score_respond",
    ] {
        assert!(!mock.task_requests(task).is_empty(), "no {task} request");
    }
    assert_eq!(mock.count(200), mock.requests().len());
}

#[test]
fn nuggets_read_a_researchqa_jobs_rows_as_passages() {
    let dir = tempfile::tempdir().unwrap();
    let survey = quickstart(dir.path(), "quickstart", "surveys", None);
    let (code, summary, _) = run_job(&survey, &[]);
    assert_eq!(code, 0, "{summary}");
    let passages = export_parquet(&survey, &dir.path().join("survey-export"));
    let researchqa = Committed::read(&dir.path().join("out/surveys"));
    let spec = write_spec(
        dir.path(),
        "survey-nuggets",
        &format!(
            "pipeline = \"nuggets\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 5\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            passages.display(),
            dir.path().join("out").display()
        ),
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/survey-nuggets"));
    let exported = summary["this_run"]["records"].as_u64().unwrap() as usize;
    assert!(
        exported > 0 && exported <= researchqa.row_count(),
        "{summary}"
    );
    assert_eq!(out.row_count() + out.reject_count(), exported, "{summary}");
    let queries: BTreeMap<String, String> = researchqa
        .strings("id")
        .into_iter()
        .zip(researchqa.strings("query"))
        .collect();
    for row in out.json_rows() {
        let passage = &row["passages"][0]["passage_id"];
        let id = passage.as_str().unwrap();
        assert_eq!(row["question"].as_str().unwrap(), queries[id], "{row}");
    }
}

#[test]
fn score_of_crg_rubrics_on_the_hh_corpus_reports_agreement_with_its_labels() {
    let corpus = repo_root().join("../shared/corpus/pairs/hh-rlhf-harmless-base-test.jsonl.gz");
    if !corpus.exists() {
        eprintln!("skipping: ../shared/corpus not found");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let crg = write_spec(
        dir.path(),
        "hh-crg",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 200\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            corpus.display(),
            out_dir.display()
        ),
    );
    let (code, summary, _) = run_job(&crg, &["--workers", "2"]);
    assert_eq!(code, 0, "{summary}");
    let rubrics = export_parquet(&crg, &dir.path().join("hh-rubrics"));
    // The hard-rule gate is off: the simulated generator's first hard rule asks for two words of
    // the prompt that HH responses rarely repeat, so with the gate both responses of most pairs
    // would score 0 and tie. Without it the simulated rubric's contrast rule (words of the
    // chosen response the rejected one lacks) decides, so an agreement above one half shows
    // that labels, grades and predictions are wired the right way round; a real model gives
    // the real figure (scripts/test-real-model.sh).
    let score = write_spec(
        dir.path(),
        "hh-score",
        &format!(
            "pipeline = \"score\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 200\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n[score]\nhard_rules_gate = false\n",
            rubrics.display(),
            out_dir.display()
        ),
    );
    let (code, summary, _) = run_job(&score, &["--workers", "2"]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&out_dir.join("hh-score"));
    let exported = summary["this_run"]["records"].as_u64().unwrap() as usize;
    assert!(exported > 1000, "{summary}");
    assert_eq!(out.row_count() + out.reject_count(), exported);
    // Every exported crg row is a labelled pair: the agreement stage counts each, and its
    // output is exactly the rows whose prediction is the chosen response.
    let rows = out.json_rows();
    let agreeing = rows.iter().filter(|r| r["agrees"] == true).count();
    assert_eq!(
        summary["agreement"]["labelled"],
        out.row_count() as u64,
        "{summary}"
    );
    assert_eq!(
        summary["agreement"]["agreeing"], agreeing as u64,
        "{summary}"
    );
    assert_eq!(
        out.stage_sum("agreement", "input") as usize,
        out.row_count()
    );
    assert_eq!(out.stage_sum("agreement", "output") as usize, agreeing);
    assert!(
        rows.iter()
            .all(|r| r["label"] == "chosen" && r["rubric_layout"] == "crg")
    );
    let agreement = agreeing as f64 / out.row_count() as f64;
    let ties = rows.iter().filter(|r| r.get("predicted").is_none()).count();
    let rejected = rows.iter().filter(|r| r["predicted"] == "rejected").count();
    eprintln!(
        "hh agreement with the simulated judge: {agreement:.3} over {} pairs ({ties} ties, {rejected} rejected preferred)",
        out.row_count()
    );
    assert!(agreement > 0.5, "{agreement}");
}

#[test]
fn validate_estimates_every_call_of_each_recipe() {
    // First attempts only: reference: generate + degrade + two grades per record with a
    // reference answer (the degrade call only without an own degraded answer), generate alone
    // without one; nuggets: generate + support; score: a grade per response (input and two
    // generated) and the two respond calls.
    for (config, calls) in [
        ("quickstart-reference", 4 * 4 + 1 + 3),
        ("quickstart-nuggets", 5 * 2),
        ("quickstart-score", 6 + 6 + 6 + 5 + 6 + 4),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spec = quickstart(dir.path(), config, config, None);
        let output = succeeded(rubricmill().arg("validate").arg(&spec).arg("--json"));
        let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(plan["estimate"]["exact"], true, "{config}: {plan}");
        assert_eq!(plan["estimate"]["calls"], calls, "{config}: {plan}");
        assert!(
            plan["estimate"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{config}"
        );
    }
}

/// The data files of the committed export version in `target`.
fn exported_files(target: &std::path::Path) -> Vec<std::path::PathBuf> {
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("export.json")).unwrap())
            .unwrap();
    let folder = target
        .join("data")
        .join(record["version"].as_str().unwrap());
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn json_lines(files: &[std::path::PathBuf]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[test]
fn reference_and_score_rows_export_in_the_layouts_trainers_read() {
    let dir = tempfile::tempdir().unwrap();
    let reference = quickstart(dir.path(), "quickstart-reference", "reference", None);
    let (code, summary, _) = run_job(&reference, &[]);
    assert_eq!(code, 0, "{summary}");
    let rows = Committed::read(&dir.path().join("out/reference")).json_rows();
    let kept: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["kept"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let export = |spec: &std::path::Path, format: &str| {
        let target = dir.path().join(format!("export-{format}"));
        succeeded(
            rubricmill()
                .arg("export")
                .arg(spec)
                .arg("--target")
                .arg(&target)
                .args(["--format", format]),
        );
        exported_files(&target)
    };

    // healthbench: Parquet in the verl layout of the HealthBench reference file, kept rubrics
    // only, pitfalls with their negative points.
    let files = export(&reference, "healthbench");
    assert!(
        files.iter().all(|f| f.extension().unwrap() == "parquet"),
        "{files:?}"
    );
    let mut verl = Vec::new();
    for file in &files {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(file).unwrap(),
        )
        .unwrap();
        let names: Vec<String> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            [
                "prompt",
                "data_source",
                "ability",
                "reward_model",
                "extra_info"
            ]
        );
        let batches: Vec<_> = reader.build().unwrap().map(Result::unwrap).collect();
        let committed = Committed {
            markers: Vec::new(),
            rows: batches,
            rejects: Vec::new(),
            metadata: Default::default(),
        };
        verl.extend(committed.json_rows());
    }
    let ids: BTreeSet<&str> = verl
        .iter()
        .map(|r| r["extra_info"]["prompt_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, kept);
    for row in &verl {
        assert_eq!(row["reward_model"]["style"], "rubric");
        let points: Vec<i64> = row["reward_model"]["rubrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["points"].as_i64().unwrap())
            .collect();
        assert!(points.iter().any(|p| *p < 0), "{row}");
    }

    // healthbench-jsonl: HealthBench's own lines, with the reference answer as the ideal
    // completion where there is one.
    let lines = json_lines(&export(&reference, "healthbench-jsonl"));
    let ids: BTreeSet<&str> = lines
        .iter()
        .map(|l| l["prompt_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, kept);
    let with_reference = lines
        .iter()
        .filter(|l| l.get("ideal_completions_data").is_some())
        .count();
    assert_eq!(
        with_reference,
        kept.len() - 1,
        "ref-003 has no reference answer"
    );

    // Score rows: one reward line per graded response, one judge-sft line per row.
    let score = quickstart(dir.path(), "quickstart-score", "score", None);
    let (code, summary, _) = run_job(&score, &[]);
    assert_eq!(code, 0, "{summary}");
    let scored = Committed::read(&dir.path().join("out/score")).json_rows();
    let graded: usize = scored
        .iter()
        .map(|r| r["responses"].as_array().unwrap().len())
        .sum();
    let rewards = json_lines(&export(&score, "rewards"));
    assert_eq!(rewards.len(), graded);
    assert!(
        rewards
            .iter()
            .all(|r| r["reward"].is_number() && r["response"].is_string())
    );
    let sft = json_lines(&export(&score, "judge-sft"));
    assert_eq!(sft.len(), scored.len());
    for line in &sft {
        let roles: Vec<&str> = line["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
    }
}
