//! Batch mode end to end: `rubricmill run` against mock-llm's batch endpoints (OpenAI files and
//! batches), compared with the same job run online.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rubricmill_mock_llm::MockConfig;

use crate::{
    Committed, Mock, crg_spec, kill_run_when, rubricmill, run_job, write_pairs, write_spec,
};

/// A crg job over `pairs` synthetic pairs (10 a shard) in its own folder `<dir>/<name>`, with
/// the consistency filter on, so a pair needs a generation and then two judge calls: two
/// batches in a row. `llm` lines go into `[llm]`.
fn batch_job(dir: &Path, name: &str, mock: &Mock, pairs: usize, llm: &str) -> PathBuf {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("pairs.jsonl");
    write_pairs(&input, pairs);
    let llm = format!(
        "provider = \"openai\"\nbase_url = \"{}\"\nprice_per_million = {{ input = 2.0, output = 8.0 }}\n{llm}",
        mock.server().base_url()
    );
    crg_spec(&dir, name, &input, 10, &llm, "")
}

/// Sorted `(pair_id, rubric_id)` of a job's rows.
fn rubrics(job_dir: &Path) -> Vec<(String, String)> {
    let out = Committed::read(job_dir);
    let mut pairs: Vec<(String, String)> = out
        .strings("pair_id")
        .into_iter()
        .zip(out.strings("rubric_id"))
        .collect();
    pairs.sort();
    pairs
}

fn usage_sum(summary: &serde_json::Value, field: &str) -> f64 {
    ["this_run", "uncommitted"]
        .iter()
        .map(|part| summary[part][field].as_f64().unwrap_or(0.0))
        .sum()
}

#[test]
fn a_batch_run_makes_the_online_rows_at_half_the_price_and_sends_nothing_online() {
    let dir = tempfile::tempdir().unwrap();
    let online_mock = Mock::start(MockConfig::default());
    let online = batch_job(dir.path(), "online", &online_mock, 30, "");
    let (code, online_summary, _) = run_job(&online, &[]);
    assert_eq!(code, 0, "{online_summary}");

    let batch_mock = Mock::start(MockConfig {
        batch_delay_ms: 300,
        ..MockConfig::default()
    });
    let batch = batch_job(
        dir.path(),
        "batch",
        &batch_mock,
        30,
        "mode = \"batch\"\nbatch_poll_s = 1",
    );
    let (code, summary, _) = run_job(&batch, &[]);
    assert_eq!(code, 0, "{summary}");

    // The same answers make the same rubrics.
    let online_rows = rubrics(&dir.path().join("online/out/online"));
    assert_eq!(online_rows.len(), 30);
    assert_eq!(rubrics(&dir.path().join("batch/out/batch")), online_rows);

    // Nothing went online; generation and judging were two rounds of batches per shard.
    assert!(
        batch_mock.requests().is_empty(),
        "{} online requests in batch mode",
        batch_mock.requests().len()
    );
    let stats = batch_mock.server().stats().batches;
    assert_eq!(stats.batches_created, 6, "{stats:?}");
    assert!(
        stats.batches_by_name.values().all(|&count| count == 1),
        "a batch was submitted twice: {:?}",
        stats.batches_by_name
    );
    let online_calls = online_summary["this_run"]["llm_calls"].as_u64().unwrap();
    assert_eq!(stats.items_answered, online_calls);
    assert_eq!(usage_sum(&summary, "batch_calls") as u64, online_calls);

    // Same tokens at half the price, and the saving is the other half.
    let online_cost = online_summary["spent_usd"].as_f64().unwrap();
    let batch_cost = summary["spent_usd"].as_f64().unwrap();
    assert!(online_cost > 0.0);
    assert!(
        (batch_cost - online_cost / 2.0).abs() < 1e-9 + online_cost * 1e-6,
        "batch ${batch_cost}, online ${online_cost}"
    );
    let saved = usage_sum(&summary, "batch_saved_usd");
    assert!((saved - batch_cost).abs() < 1e-9 + batch_cost * 1e-6);
    assert_eq!(summary["batches_waiting"]["batches"], 0);
}

#[test]
fn failed_and_expired_batch_items_are_submitted_again_then_sent_online() {
    let mock = Mock::start(MockConfig {
        batch_item_failure_rate: 0.3,
        batch_expire_rate: 0.5,
        seed: 7,
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_job(
        dir.path(),
        "flaky",
        &mock,
        40,
        "mode = \"batch\"\nbatch_poll_s = 1\nbatch_resubmits = 1",
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    // Nothing lost: every pair is a row or a reject.
    let out = Committed::read(&dir.path().join("flaky/out/flaky"));
    assert_eq!(out.row_count() + out.reject_count(), 40);
    let stats = mock.server().stats().batches;
    assert!(stats.items_failed > 0, "{stats:?}");
    // Items that failed twice (first batch and its resubmission) went online.
    let online = mock.count(200) as u64;
    assert!(online > 0, "no item fell back to an online call");
    // Every answer paid for is counted once: batch answers at the batch price, online ones
    // at the online price.
    let calls = usage_sum(&summary, "llm_calls") as u64;
    assert_eq!(calls, stats.items_answered + online, "{summary}");
    assert_eq!(
        usage_sum(&summary, "batch_calls") as u64,
        stats.items_answered
    );
    assert!(stats.batches_by_name.values().all(|&count| count == 1));
}

#[test]
fn a_batch_whose_submitter_was_killed_is_collected_not_submitted_again() {
    let mock = Mock::start(MockConfig {
        batch_delay_ms: 4_000,
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_job(
        dir.path(),
        "killed",
        &mock,
        30,
        "mode = \"batch\"\nbatch_poll_s = 1",
    );
    // SIGKILL, with every shard's first batch in flight.
    kill_run_when(&spec, "submitted its batches", || {
        mock.server().stats().batches.batches_created >= 3
    });
    // The window a kill can hit: the provider has the batch, its id is not recorded yet.
    let records = dir.path().join("killed/out/killed/batches");
    let mut forgotten = 0;
    for entry in std::fs::read_dir(&records).unwrap() {
        let path = entry.unwrap().path();
        // A put cut short by the kill can leave the local store's staging file beside it.
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if forgotten == 0 {
            record["rounds"][0]["id"] = serde_json::Value::Null;
            std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
            forgotten += 1;
        }
    }
    assert_eq!(forgotten, 1);

    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let stats = mock.server().stats().batches;
    assert!(
        stats.batches_by_name.values().all(|&count| count == 1),
        "a batch was submitted twice: {:?}",
        stats.batches_by_name
    );
    assert_eq!(stats.batches_created, 6, "{stats:?}");
    assert!(mock.requests().is_empty(), "a call went online");
    let out = Committed::read(&dir.path().join("killed/out/killed"));
    let ids: BTreeSet<String> = out.strings("pair_id").into_iter().collect();
    assert_eq!(ids.len(), 30);
    // Every answer was paid once: by the run that collected it.
    assert_eq!(
        usage_sum(&summary, "batch_calls") as u64,
        stats.items_answered
    );
}

#[test]
fn validate_prices_a_job_online_and_in_batch_mode() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_job(dir.path(), "priced", &mock, 20, "mode = \"batch\"");
    let output = crate::succeeded(rubricmill().arg("validate").arg(&spec).arg("--json"));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let estimate = &plan["estimate"];
    let online = estimate["typical_cost_usd"].as_f64().unwrap();
    let batch = estimate["typical_cost_batch_usd"].as_f64().unwrap();
    assert!(online > 0.0);
    assert!((batch - online / 2.0).abs() < 1e-12, "{estimate}");
    assert_eq!(plan["modes"]["generate"], "batch");
    let text = crate::succeeded(rubricmill().arg("validate").arg(&spec));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("batch about $"), "{text}");
    assert!(text.contains("generate batch"), "{text}");
    // Nothing was sent to price it.
    assert!(mock.requests().is_empty());
    assert_eq!(mock.server().stats().batches.batches_created, 0);
}

#[test]
fn batches_the_provider_no_longer_knows_are_submitted_again() {
    let first = Mock::start(MockConfig {
        batch_delay_ms: 60_000,
        ..MockConfig::default()
    });
    let port = first.server().addr().port();
    let dir = tempfile::tempdir().unwrap();
    let spec = batch_job(
        dir.path(),
        "forgotten",
        &first,
        20,
        "mode = \"batch\"\nbatch_poll_s = 1",
    );
    kill_run_when(&spec, "submitted its batches", || {
        first.server().stats().batches.batches_created >= 2
    });
    // The provider forgets every batch: a new server on the same address.
    drop(first);
    let second = Mock::start(MockConfig {
        port,
        ..MockConfig::default()
    });
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("forgotten/out/forgotten"));
    assert_eq!(out.row_count(), 20);
    // Generation went again to the new server as batches, then the judge.
    let stats = second.server().stats().batches;
    assert_eq!(stats.batches_created, 4, "{stats:?}");
    assert!(second.requests().is_empty(), "a call went online");
}

/// Sorted `(id, query)` of a researchqa job's rows.
fn queries(job_dir: &Path) -> Vec<(String, String)> {
    let out = Committed::read(job_dir);
    let mut rows: Vec<(String, String)> = out
        .strings("id")
        .into_iter()
        .zip(out.strings("query"))
        .collect();
    rows.sort();
    rows
}

#[test]
fn researchqa_in_batch_mode_mines_the_rows_an_online_run_mines() {
    let surveys = crate::repo_root().join("samples/surveys");
    let dir = tempfile::tempdir().unwrap();
    let spec = |name: &str, mock: &Mock, mode: &str| {
        write_spec(
            dir.path(),
            name,
            &format!(
                "pipeline = \"researchqa\"\n[input]\nurl = \"{}/**/*.md\"\nrecords_per_shard = 2\n\
                 [output]\nurl = \"{}\"\n[llm]\nprovider = \"openai\"\nbase_url = \"{}\"\n\
                 model = \"mock-model\"\nmax_tokens = 1024\nmode = \"{mode}\"\nbatch_poll_s = 1\n\
                 [researchqa]\nclassify_taxonomy = [\"Computer Science > Machine Learning > Generative Models\", \
                 \"Medicine > Endocrinology > Diabetes\"]\n",
                surveys.display(),
                dir.path().join(format!("out-{name}")).display(),
                mock.server().base_url()
            ),
        )
    };
    let online_mock = Mock::start(MockConfig::default());
    let (code, online, _) = run_job(&spec("online", &online_mock, "online"), &[]);
    assert_eq!(code, 0, "{online}");
    let batch_mock = Mock::start(MockConfig {
        batch_delay_ms: 200,
        ..MockConfig::default()
    });
    let (code, batch, _) = run_job(&spec("batch", &batch_mock, "batch"), &[]);
    assert_eq!(code, 0, "{batch}");
    let expected = queries(&dir.path().join("out-online/online"));
    assert!(expected.len() >= 4, "only {} rows", expected.len());
    assert_eq!(queries(&dir.path().join("out-batch/batch")), expected);
    assert!(batch_mock.requests().is_empty(), "a call went online");
    let stats = batch_mock.server().stats().batches;
    assert_eq!(
        stats.items_answered,
        online["this_run"]["llm_calls"].as_u64().unwrap()
    );
    // Every section of a survey is asked in the same round: generation, then the query judge.
    let shards = online["this_run"]["shards"].as_u64().unwrap();
    assert!(
        stats.batches_created <= 3 * shards,
        "{} batches for {shards} shards",
        stats.batches_created
    );
}
