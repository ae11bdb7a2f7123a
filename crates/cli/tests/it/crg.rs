//! Contrastive rubric generation end to end: `rubricmill run` against mock-llm (in-process, a
//! judge that errs 30 % of the time), checking the accounting of kept and dropped pairs, the
//! attempts, the order swap and the judge's own model from the requests the mock received; the
//! simulated provider's judge error rate; and the healthbench export layout against the
//! reference file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow_array::{Array, BooleanArray, Float64Array, RecordBatch, UInt32Array};
use rubricmill_llm::ChatRequest;
use rubricmill_llm::simulated::{CRG_JUDGE_TASK, CRG_TASK};
use rubricmill_mock_llm::MockConfig;

use crate::{Committed, Mock, repo_root, rubricmill, run_job, succeeded, write_pairs, write_spec};

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

/// Per row: (kept, attempts, consistency).
fn outcomes(out: &Committed) -> Vec<(bool, u32, Option<f64>)> {
    let mut rows = Vec::new();
    for batch in &out.rows {
        let kept = column::<BooleanArray>(batch, "kept");
        let attempts = column::<UInt32Array>(batch, "attempts");
        let consistency = column::<Float64Array>(batch, "consistency");
        for i in 0..batch.num_rows() {
            let c = (!consistency.is_null(i)).then(|| consistency.value(i));
            rows.push((kept.value(i), attempts.value(i), c));
        }
    }
    rows
}

/// The text between `<tag>` and `</tag>` of a request's last message.
fn tagged(request: &ChatRequest, tag: &str) -> String {
    let text = &request.messages.last().unwrap().content;
    let open = format!("<{tag}>");
    let start = text.find(&open).unwrap() + open.len();
    let end = text[start..].find(&format!("</{tag}>")).unwrap() + start;
    text[start..end].trim().to_owned()
}

/// 40 pairwise records plus two listwise records of three responses (three induced pairs
/// each): 46 pairs.
fn write_input(path: &Path) {
    write_pairs(path, 40);
    let mut text = std::fs::read_to_string(path).unwrap();
    for i in 0..2 {
        let line = serde_json::json!({
            "id": format!("list-{i}"),
            "prompt": format!("List {i}: what helps a sore throat?"),
            "responses": [
                "Warm tea with ginger and honey soothes it.",
                "Some warm tea may help a little.",
                "Nothing helps.",
            ],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

const INPUT_PAIRS: usize = 46;

#[test]
fn mock_llm_with_a_30_percent_judge_error_rate_accounts_for_every_pair() {
    let mock = Mock::start(MockConfig {
        judge_error_rate: 0.3,
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_input(&input);
    let spec = write_spec(
        dir.path(),
        "crg30",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"{}\"\n\
             [llm]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"writer-model\"\nmax_tokens = 600\nmax_concurrency = 8\n\
             [llm.stages.judge]\nmodel = \"judge-model\"\nmax_tokens = 200\n[crg]\nmax_resamples = 3\n",
            input.display(),
            dir.path().join("out").display(),
            mock.server().base_url()
        ),
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/crg30"));
    assert_eq!(out.marker_sum("records"), 42);
    assert_eq!(out.reject_count(), 0, "{:?}", out.reject_strings("reason"));

    // kept + dropped = input pairs; attempts ≤ k + 1; consistency recorded on every row.
    let rows = outcomes(&out);
    let kept = rows.iter().filter(|r| r.0).count();
    let dropped = rows.iter().filter(|r| !r.0).count();
    assert_eq!(kept + dropped, INPUT_PAIRS);
    assert!(rows.iter().all(|r| (1..=4).contains(&r.1)), "{rows:?}");
    assert!(rows.iter().all(|r| r.2.is_some()), "{rows:?}");
    assert!(
        rows.iter().any(|r| r.1 > 1),
        "a 30 % error rate makes some rubrics regenerate"
    );
    assert!(kept > INPUT_PAIRS / 2, "{kept} kept");
    let reasons: Vec<String> = out
        .strings("drop_reason")
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    assert_eq!(reasons.len(), dropped, "every dropped row says why");

    // One generation per attempt of each rubric (42 rubrics: a listwise record shares one).
    let mut attempts_by_rubric: BTreeMap<String, u32> = BTreeMap::new();
    for (rubric_id, row) in out.strings("rubric_id").into_iter().zip(&rows) {
        attempts_by_rubric.insert(rubric_id, row.1);
    }
    assert_eq!(attempts_by_rubric.len(), 42);
    let generations = mock.task_requests(CRG_TASK);
    assert_eq!(
        generations.len() as u32,
        attempts_by_rubric.values().sum::<u32>()
    );
    assert!(generations.iter().all(|r| r.model == "writer-model"));

    // Two judge calls per pair and attempt, on the judge's own model, in swapped orders.
    let judged = mock.task_requests(CRG_JUDGE_TASK);
    let pair_attempts: u32 = rows.iter().map(|r| r.1).sum();
    assert_eq!(judged.len() as u32, 2 * pair_attempts);
    assert!(judged.iter().all(|r| r.model == "judge-model"));
    let mut orders: HashMap<(String, String, String, Option<u64>), usize> = HashMap::new();
    for request in &judged {
        let key = (
            tagged(request, "conversation"),
            tagged(request, "rubric"),
            tagged(request, "response_a"),
            request.seed,
        );
        *orders.entry(key).or_default() += 1;
    }
    for request in &judged {
        let swapped = (
            tagged(request, "conversation"),
            tagged(request, "rubric"),
            tagged(request, "response_b"),
            request.seed,
        );
        assert!(
            orders.contains_key(&swapped),
            "no swapped counterpart for a judge request"
        );
        assert!(tagged(request, "rubric").starts_with("1. "));
    }

    // Both templates are recorded: the judge's in a column and in the file metadata.
    let judge_hash =
        rubricmill_mine::prompt::Template::parse("crg_judge", rubricmill_mine::prompt::CRG_JUDGE)
            .hash;
    assert!(
        out.strings("judge_prompt_hash")
            .iter()
            .all(|h| *h == judge_hash)
    );
    assert!(
        out.strings("judge_model")
            .iter()
            .all(|m| m == "judge-model")
    );
    assert!(
        out.metadata["rubricmill.prompt_hashes"].contains(&judge_hash),
        "{:?}",
        out.metadata
    );
}

#[test]
fn the_simulated_judge_errs_at_the_configured_rate_and_the_rate_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_pairs(&input, 30);
    let body = |rate: &str| {
        format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"{}\"\n\
             [llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\nsimulated_judge_error_rate = {rate}\n",
            input.display(),
            dir.path().join("out").display(),
        )
    };
    let spec = write_spec(dir.path(), "sim0", &body("0.0"));
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let rows = outcomes(&Committed::read(&dir.path().join("out/sim0")));
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter().all(|r| r.0 && r.1 == 1),
        "a judge that never errs keeps every rubric at once"
    );
    assert_eq!(summary["this_run"]["llm_calls"].as_u64(), Some(90));

    let spec = write_spec(dir.path(), "sim30", &body("0.3"));
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let rows = outcomes(&Committed::read(&dir.path().join("out/sim30")));
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().any(|r| r.1 > 1));
    assert!(rows.iter().all(|r| r.1 <= 4));

    let spec = write_spec(dir.path(), "bad", &body("1.5"));
    let output = rubricmill().arg("validate").arg(&spec).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("simulated_judge_error_rate"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether `value` fits the Parquet type `expected` (JSON as a reader of that file would see
/// it: LIST groups are lists, other groups objects that must hold every field, BYTE_ARRAY a
/// string, INT64 an integer); objects may hold more fields than the reference.
fn conforms(value: &serde_json::Value, expected: &parquet::schema::types::Type, path: &str) {
    use parquet::basic::{ConvertedType, LogicalType, Type as Physical};
    if !expected.is_group() {
        match expected.get_physical_type() {
            Physical::BYTE_ARRAY => {
                assert!(value.is_string(), "{path}: expected a string, got {value}")
            }
            Physical::INT64 | Physical::INT32 => {
                assert!(value.is_i64(), "{path}: expected an integer, got {value}")
            }
            other => panic!("{path}: the reference has an unexpected type {other:?}"),
        }
        return;
    }
    let info = expected.get_basic_info();
    let is_list = info.converted_type() == ConvertedType::LIST
        || matches!(info.logical_type_ref(), Some(LogicalType::List));
    if is_list {
        let element = &expected.get_fields()[0].get_fields()[0];
        let list = value
            .as_array()
            .unwrap_or_else(|| panic!("{path}: expected a list, got {value}"));
        assert!(!list.is_empty(), "{path}: an empty list proves nothing");
        for (i, item) in list.iter().enumerate() {
            conforms(item, element, &format!("{path}[{i}]"));
        }
        return;
    }
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{path}: expected an object, got {value}"));
    for field in expected.get_fields() {
        let child = object
            .get(field.name())
            .unwrap_or_else(|| panic!("{path}: no field {:?}", field.name()));
        conforms(child, field, &format!("{path}.{}", field.name()));
    }
}

#[test]
fn healthbench_export_rows_match_the_reference_layout() {
    let reference = repo_root().join("../shared/corpus/reference/healthbench_val.parquet");
    if !reference.exists() {
        eprintln!("skipping: ../shared/corpus not found");
        return;
    }
    let file = std::fs::File::open(reference).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let schema = parquet::file::reader::FileReader::metadata(&reader)
        .file_metadata()
        .schema()
        .clone();
    let row = serde_json::json!({
        "pair_id": "p1",
        "source": "pairs.jsonl",
        "prompt": [
            {"role": "user", "content": "My throat hurts."},
            {"role": "assistant", "content": "Since when?"},
            {"role": "user", "content": "Two days. What helps?"}
        ],
        "chosen": "Warm drinks and rest.",
        "rejected": "Nothing.",
        "rubric": [
            {"text": "The response suggests remedies.", "kind": "hard_rule"},
            {"text": "The response is concise.", "kind": "principle"}
        ],
        "consistency": 1.0,
        "attempts": 1,
        "kept": true,
        "rubric_id": "p1",
    });
    let format = rubricmill_mine::formats::InterchangeFormat::parse("healthbench").unwrap();
    let out = rubricmill_mine::formats::convert(format, rubricmill_core::PipelineKind::Crg, &row)
        .unwrap()
        .unwrap();
    let mut ours: Vec<&String> = out.as_object().unwrap().keys().collect();
    let mut theirs: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "top-level fields");
    for field in schema.get_fields() {
        conforms(&out[field.name()], field, field.name());
    }
    let rubrics = out["reward_model"]["rubrics"].as_array().unwrap();
    assert_eq!(rubrics.len(), 2);
    assert_eq!(out["prompt"].as_array().unwrap().len(), 3);
}

/// Listwise records written so that no two share their words: four records of four ranked
/// responses each.
fn write_listwise(path: &Path) {
    let topics = [
        ("a sore throat", "ginger tea", "lozenges", "shouting"),
        (
            "a flat bicycle tyre",
            "a patch kit",
            "a spare tube",
            "riding on the rim",
        ),
        ("stale bread", "toasting it", "breadcrumbs", "the bin"),
        (
            "a noisy fridge",
            "levelling its feet",
            "cleaning the coils",
            "ignoring it",
        ),
    ];
    let mut text = String::new();
    for (i, (topic, best, good, bad)) in topics.iter().enumerate() {
        let line = serde_json::json!({
            "id": format!("list-{i}"),
            "prompt": format!("What should I do about {topic}?"),
            "responses": [
                format!("Start with {best}; it works for {topic} because it treats the cause."),
                format!("Try {good}, which helps with {topic} in many cases."),
                format!("Maybe {good} or {best} could help somewhat."),
                format!("Just go with {bad}."),
            ],
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn export_keeps_every_pair_of_a_listwise_record_in_one_split() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lists.jsonl");
    write_listwise(&input);
    let spec = write_spec(
        dir.path(),
        "lists",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            input.display(),
            dir.path().join("out").display()
        ),
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/lists"));
    let mut kept_by_record: BTreeMap<String, usize> = BTreeMap::new();
    for ((kept, _, _), rubric_id) in outcomes(&out).into_iter().zip(out.strings("rubric_id")) {
        if kept {
            *kept_by_record.entry(rubric_id).or_default() += 1;
        }
    }
    assert_eq!(kept_by_record.len(), 4, "{kept_by_record:?}");
    assert!(
        kept_by_record.values().all(|pairs| *pairs > 1),
        "every record induces several kept pairs: {kept_by_record:?}"
    );

    // Two even splits: pairs split by their own ids would scatter most records.
    let target = dir.path().join("dataset");
    succeeded(
        rubricmill()
            .arg("export")
            .arg(&spec)
            .arg("--target")
            .arg(&target)
            .args(["--format", "jsonl", "--splits", "train=0.5,test=0.5"]),
    );
    let mut exported: BTreeMap<String, usize> = BTreeMap::new();
    let mut splits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // the committed version's folder, as export.json names it
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("export.json")).unwrap())
            .unwrap();
    let version = record["version"].as_str().unwrap();
    for entry in std::fs::read_dir(target.join("data").join(version)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let split = name.split('-').next().unwrap().to_owned();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let rubric_id = row["rubric_id"].as_str().unwrap().to_owned();
            *exported.entry(rubric_id.clone()).or_default() += 1;
            splits.entry(rubric_id).or_default().push(split.clone());
        }
    }
    assert_eq!(exported, kept_by_record, "every kept pair is exported");
    for (record, record_splits) in &splits {
        assert!(
            record_splits.iter().all(|s| s == &record_splits[0]),
            "{record} straddles splits: {record_splits:?}"
        );
    }
}
