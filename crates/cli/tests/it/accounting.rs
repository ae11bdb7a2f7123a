//! Every row and every dollar honest, end to end against mock-llm over HTTP: a token limit
//! smaller than one request makes the request wait instead of rejecting the record; cached
//! answers are never served for another endpoint and rows say which run paid for them; what a
//! killed run paid is counted on resume, so the summary agrees with what the server served.

use std::time::Duration;

use arrow_array::{Array, ListArray, StringArray, UInt64Array};
use rubricmill_mock_llm::{Latency, MockConfig};

use crate::{
    Committed, Mock, kill_run_when, marker_paths, rubricmill, run_job, write_pairs, write_spec,
};

/// A crg job over `pairs` synthetic pairs against `base_url`, with `llm` settings added.
fn job(
    dir: &std::path::Path,
    name: &str,
    pairs: usize,
    base_url: &str,
    llm: &str,
) -> std::path::PathBuf {
    let input = dir.join("pairs.jsonl");
    if !input.exists() {
        write_pairs(&input, pairs);
    }
    write_spec(
        dir,
        name,
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 50\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"mock-model\"\n{llm}\n[crg]\nconsistency_filter = false\n",
            input.display(),
            dir.join("out").display(),
        ),
    )
}

fn u64_column(out: &Committed, column: &str) -> Vec<u64> {
    out.rows
        .iter()
        .flat_map(|batch| {
            let array = batch.column_by_name(column).unwrap();
            let array = array.as_any().downcast_ref::<UInt64Array>().unwrap();
            array.values().to_vec()
        })
        .collect()
}

fn string_lists(out: &Committed, column: &str) -> Vec<Vec<String>> {
    let mut lists = Vec::new();
    for batch in &out.rows {
        let array = batch.column_by_name(column).unwrap();
        let array = array.as_any().downcast_ref::<ListArray>().unwrap();
        for index in 0..array.len() {
            let items = array.value(index);
            let items = items.as_any().downcast_ref::<StringArray>().unwrap();
            lists.push(
                items
                    .iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect(),
            );
        }
    }
    lists
}

#[test]
fn a_token_limit_below_one_request_waits_instead_of_rejecting_the_record() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    // 8,000 tokens a minute: a burst of about 1,333, below one request (1,500 of max_tokens
    // plus the prompt), which must still be sent once its tokens have refilled.
    let spec = job(
        dir.path(),
        "tpm",
        1,
        &mock.server().base_url(),
        "max_tokens = 1500\ntokens_per_minute = 8000",
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/tpm"));
    assert_eq!(
        (out.row_count(), out.reject_count()),
        (1, 0),
        "{:?}",
        out.reject_strings("reason")
    );
    assert_eq!(mock.count(200), 1);
}

#[test]
fn a_request_that_can_never_fit_the_token_limit_is_refused_before_any_work() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        "never",
        1,
        &mock.server().base_url(),
        "max_tokens = 2000\ntokens_per_minute = 2000",
    );
    for command in ["validate", "run"] {
        let output = rubricmill().arg(command).arg(&spec).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command} accepted it");
        assert!(
            stderr.contains("llm.max_tokens") && stderr.contains("tokens_per_minute"),
            "{command}: {stderr}"
        );
    }
    assert_eq!(mock.requests().len(), 0, "nothing was sent");
}

#[test]
fn a_record_too_large_for_the_whole_token_limit_is_a_reject_that_validate_foresees() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    // max_tokens fits within 400 tokens a minute, but no crg prompt is under 100 tokens.
    let spec = job(
        dir.path(),
        "huge",
        2,
        &mock.server().base_url(),
        "max_tokens = 300\ntokens_per_minute = 400",
    );
    let output = rubricmill().arg("validate").arg(&spec).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("about 2 records need more than llm.tokens_per_minute"),
        "{stdout}"
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/huge"));
    assert_eq!((out.row_count(), out.reject_count()), (0, 2));
    assert!(
        out.reject_strings("reason")
            .iter()
            .all(|r| r.contains("llm.tokens_per_minute of 400")),
        "{:?}",
        out.reject_strings("reason")
    );
    assert_eq!(mock.requests().len(), 0, "nothing was sent");
}

#[test]
fn cached_answers_never_cross_endpoints_and_rows_name_the_run_that_paid() {
    let dry_mock = Mock::start(MockConfig::default());
    let real_mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let dry = job(dir.path(), "dry", 10, &dry_mock.server().base_url(), "");
    let (code, summary, _) = run_job(&dry, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(dry_mock.count(200), 10);

    // The same requests to another endpoint, with the cache shared under the same output: the
    // other endpoint answers every one.
    let real = job(dir.path(), "real", 10, &real_mock.server().base_url(), "");
    let (code, summary, _) = run_job(&real, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["this_run"]["cache_hits"], 0, "{summary}");
    assert_eq!(real_mock.count(200), 10);
    let real_rows = Committed::read(&dir.path().join("out/real"));
    assert!(u64_column(&real_rows, "cache_hits").iter().all(|h| *h == 0));

    // The first endpoint again, spelled with a trailing slash: every answer comes from the
    // cache, and every row names the attempt of the dry run that paid for it.
    let again = job(
        dir.path(),
        "again",
        10,
        &format!("{}/", dry_mock.server().base_url()),
        "",
    );
    let (code, summary, _) = run_job(&again, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["this_run"]["cache_hits"], 10, "{summary}");
    assert_eq!(dry_mock.count(200), 10, "the cache answered");
    let paid_by: Vec<String> = Committed::read(&dir.path().join("out/dry"))
        .markers
        .iter()
        .map(|m| {
            format!(
                "dry/{}/{}",
                m["shard_id"].as_str().unwrap(),
                m["attempt_id"].as_str().unwrap()
            )
        })
        .collect();
    let again_rows = Committed::read(&dir.path().join("out/again"));
    assert!(
        u64_column(&again_rows, "cache_hits")
            .iter()
            .all(|h| *h == 1)
    );
    for origins in string_lists(&again_rows, "cached_from") {
        assert_eq!(origins.len(), 1, "{origins:?}");
        assert!(
            paid_by.contains(&origins[0]),
            "{origins:?} not in {paid_by:?}"
        );
    }
}

#[test]
fn what_a_killed_run_paid_is_counted_when_it_resumes() {
    let mock = Mock::start(MockConfig {
        latency: Latency {
            fixed_ms: Some(100),
            ..Latency::default()
        },
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    // 4 shards of 50 pairs, 4 calls at once: a shard takes seconds, so a kill after 30 calls
    // leaves paid calls in attempts that never commit.
    let spec = job(
        dir.path(),
        "killed",
        200,
        &mock.server().base_url(),
        "max_concurrency = 4",
    );
    kill_run_when(&spec, "made 30 calls", || mock.count(200) >= 30);
    let commits = dir.path().join("out/killed/commits");
    assert!(marker_paths(&commits).len() < 4, "killed too late");

    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    // Let answers cut off by the kill finish on the server.
    std::thread::sleep(Duration::from_millis(300));
    let served: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    let served_tokens: u64 = served
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    let field = |part: &str, name: &str| summary[part][name].as_u64().unwrap();
    let committed_calls = field("before", "llm_calls") + field("this_run", "llm_calls");
    let accounted_calls = committed_calls + field("uncommitted", "llm_calls");
    let accounted_tokens: u64 = ["before", "this_run", "uncommitted"]
        .iter()
        .map(|part| field(part, "tokens_in") + field(part, "tokens_out"))
        .sum();
    eprintln!(
        "served {} calls, {served_tokens} tokens; markers {committed_calls} calls; accounted \
         {accounted_calls} calls, {accounted_tokens} tokens",
        served.len()
    );
    assert!(
        committed_calls < served.len() as u64,
        "the scenario must leave paid calls outside the markers"
    );
    assert!(field("uncommitted", "attempts") >= 1, "{summary}");
    // A request is sent only once the spend file holds it, so every request the server saw is
    // in the ledger: answered, or cut off at its estimate (on the wire at the kill, or back
    // too late for the last write), however loaded the machine. Nothing is counted that was
    // not served.
    let served_calls = served.len() as u64;
    let cut_off_calls = field("uncommitted", "cut_off_calls");
    let cut_off_tokens =
        field("uncommitted", "cut_off_tokens_in") + field("uncommitted", "cut_off_tokens_out");
    assert!(
        accounted_calls <= served_calls && served_calls <= accounted_calls + cut_off_calls,
        "accounted {accounted_calls} calls and {cut_off_calls} cut off, the server served {served_calls}"
    );
    assert!(
        accounted_tokens as f64 <= 1.03 * served_tokens as f64
            && (accounted_tokens + cut_off_tokens) as f64 >= 0.97 * served_tokens as f64,
        "accounted {accounted_tokens} tokens and {cut_off_tokens} cut off, the server served {served_tokens}"
    );
    // Rows made from answers the killed run paid for name its attempts, whose spend files
    // are still there.
    let out = Committed::read(&dir.path().join("out/killed"));
    let mut replayed = 0;
    for origins in string_lists(&out, "cached_from") {
        for origin in origins {
            replayed += 1;
            let (job, rest) = origin.split_once('/').unwrap();
            assert_eq!(job, "killed");
            let (shard, attempt) = rest.split_once('/').unwrap();
            let file = dir
                .path()
                .join(format!("out/killed/spend/{shard}/{attempt}.json"));
            assert!(file.exists(), "no spend file for {origin}");
        }
    }
    assert!(replayed >= 1, "no row was made from a replayed answer");
}

#[test]
fn retries_are_reported_at_info_level_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port.
    let port = rubricmill_testkit::free_port();
    let spec = job(
        dir.path(),
        "unreachable",
        1,
        &format!("http://127.0.0.1:{port}/v1"),
        "max_retries = 1",
    );
    let output = rubricmill()
        .arg("run")
        .arg(&spec)
        .arg("--no-progress")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("llm call failed, retrying") && stderr.contains("cannot connect"),
        "{stderr}"
    );
}
