//! The LLM gateway end to end: `rubricmill run` against a real HTTP server (mock-llm, started
//! in-process on a free loopback port), checking what the server saw.

use std::collections::HashSet;

use rubricmill_mock_llm::{MockConfig, RecordedRequest};

use crate::{Committed, Mock, crg_job, rubricmill, run_job};

#[test]
fn client_limit_matching_the_server_limit_gets_no_429s() {
    let mock = Mock::start(MockConfig {
        rps: Some(20.0),
        burst: Some(20),
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(
        dir.path(),
        "paced",
        &mock,
        80,
        "requests_per_minute = 1200\nmax_concurrency = 32",
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        mock.count(429),
        0,
        "the client exceeded the limit it shares with the server"
    );
    assert_eq!(mock.count(200), 80);
    // Never more than the burst plus one second's refill in any one-second window.
    let (in_window, _) = rubricmill_mock_llm::max_in_window(
        &mock.requests(),
        std::time::Duration::from_secs(1),
        |s| s == 200,
    );
    assert!(in_window <= 40, "{in_window} requests in one second");
    assert_eq!(
        Committed::read(&dir.path().join("out/paced")).row_count(),
        80
    );
}

#[test]
fn no_request_arrives_before_the_retry_after_of_a_429() {
    let mock = Mock::start(MockConfig {
        rps: Some(2.0),
        burst: Some(1),
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(dir.path(), "throttled", &mock, 4, "max_concurrency = 2");
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let requests = mock.requests();
    let throttled: Vec<&RecordedRequest> = requests.iter().filter(|r| r.status == 429).collect();
    assert!(!throttled.is_empty(), "the test needs at least one 429");
    assert!(summary["this_run"]["throttled"].as_u64().unwrap() >= 1);
    // The client may have had one more request on the wire when the 429 arrived; every request
    // after that must wait for the hint.
    for limited in &throttled {
        let hint = std::time::Duration::from_millis(
            limited.retry_after_ms.expect("429 carries retry-after-ms"),
        );
        let early: Vec<_> = requests
            .iter()
            .filter(|r| r.at > limited.at && r.at < limited.at + hint)
            .collect();
        assert!(
            early.len() <= 1,
            "{} requests arrived within the retry-after of a 429",
            early.len()
        );
    }
    assert_eq!(mock.count(200), 4);
}

#[test]
fn a_refused_key_stops_the_job_at_once_with_a_clear_message() {
    let mock = Mock::start(MockConfig {
        api_key: Some(rubricmill_mock_llm::ApiKey::new("right-key")),
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(
        dir.path(),
        "badkey",
        &mock,
        200,
        "api_key_env = \"RUBRICMILL_TEST_KEY\"\nmax_concurrency = 4",
    );
    let output = rubricmill()
        .arg("run")
        .arg(&spec)
        .arg("--json")
        .env("RUBRICMILL_TEST_KEY", "wrong-key-value")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "fatal errors exit 2");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("RUBRICMILL_TEST_KEY"),
        "the message says which key to fix: {stdout}"
    );
    assert!(
        !stdout.contains("wrong-key-value") && !stderr.contains("wrong-key-value"),
        "the key leaked"
    );
    // Refused requests are counted, not kept: mock-llm does not read a body it will refuse.
    let sent = mock
        .server()
        .stats()
        .by_status
        .get(&401)
        .copied()
        .unwrap_or(0);
    assert!(
        (1..=8).contains(&sent),
        "{sent} requests: no retry storm after a 401"
    );
    assert_eq!(
        mock.server().stats().requests,
        sent,
        "every request was refused"
    );
    assert!(
        !dir.path().join("out/badkey/commits").exists()
            || Committed::read(&dir.path().join("out/badkey"))
                .markers
                .is_empty()
    );
    // A key variable that is not set fails before any work.
    let output = rubricmill()
        .arg("run")
        .arg(&spec)
        .env_remove("RUBRICMILL_TEST_KEY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("RUBRICMILL_TEST_KEY"));
    assert_eq!(
        mock.server().stats().requests,
        sent,
        "nothing was sent without a key"
    );
}

#[test]
fn context_length_errors_and_malformed_answers_become_reject_rows() {
    let mock = Mock::start(MockConfig {
        context_length: 1.0,
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(dir.path(), "toolong", &mock, 20, "");
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/toolong"));
    assert_eq!(out.row_count(), 0);
    assert_eq!(out.reject_count(), 20);
    assert!(
        out.reject_strings("reason")
            .iter()
            .all(|r| r.contains("too long")),
        "{:?}",
        out.reject_strings("reason")
    );
    assert_eq!(
        mock.requests().len(),
        20,
        "context-length errors are not retried"
    );

    let mock = Mock::start(MockConfig {
        malformed_json: 1.0,
        ..MockConfig::default()
    });
    let spec = crg_job(dir.path(), "garbled", &mock, 10, "");
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/garbled"));
    assert_eq!(out.reject_count(), 10);
    assert!(
        out.reject_strings("reason")
            .iter()
            .all(|r| r.contains("after one repair"))
    );
    assert_eq!(
        mock.requests().len(),
        20,
        "exactly one repair request per record"
    );
    let repairs = mock
        .requests()
        .iter()
        .filter(|r| r.body.messages.len() == 4)
        .count();
    assert_eq!(
        repairs, 10,
        "the repair shows the model its answer and the complaint"
    );
}

#[test]
fn a_second_run_is_answered_from_the_cache() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let first = crg_job(dir.path(), "first", &mock, 30, "");
    let (code, summary, _) = run_job(&first, &[]);
    assert_eq!(code, 0, "{summary}");
    let sent = mock.requests().len();
    assert_eq!(sent, 30);
    // Same requests under another job name in the same output folder: the cache is shared.
    let text = std::fs::read_to_string(&first)
        .unwrap()
        .replace("name = \"first\"", "name = \"second\"");
    let second = dir.path().join("second.toml");
    std::fs::write(&second, text).unwrap();
    let (code, summary, _) = run_job(&second, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(mock.requests().len(), sent, "the second run sent requests");
    assert_eq!(summary["this_run"]["cache_hits"].as_u64(), Some(30));
    assert_eq!(summary["this_run"]["llm_calls"].as_u64(), Some(0));
    let a: HashSet<String> = Committed::read(&dir.path().join("out/first"))
        .strings("pair_id")
        .into_iter()
        .collect();
    let b: HashSet<String> = Committed::read(&dir.path().join("out/second"))
        .strings("pair_id")
        .into_iter()
        .collect();
    assert_eq!(a, b);
}

#[test]
fn the_budget_stops_calls_and_a_larger_budget_resumes() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    // About 600 tokens reserved a call at $1,000 per million input and output tokens: ~$0.6 a call.
    let llm = "price_per_million = { input = 1000.0, output = 1000.0 }\nmax_cost_usd = 6.0\nmax_concurrency = 2";
    let spec = crg_job(dir.path(), "budget", &mock, 60, llm);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 4, "budget stops exit 4: {summary}");
    assert_eq!(summary["stop"], "budget");
    let spent = summary["this_run"]["cost_usd"].as_f64().unwrap();
    assert!(spent <= 6.0, "spent {spent}");
    let sent = mock.requests().len();
    assert!(
        sent > 0 && sent < 60,
        "{sent} calls before the budget stopped them"
    );
    let committed = Committed::read(&dir.path().join("out/budget"));
    assert!(committed.markers.len() < 6);
    // Raising the budget resumes the job and finishes it.
    let raised = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("max_cost_usd = 6.0", "max_cost_usd = 1000.0");
    std::fs::write(&spec, raised).unwrap();
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        Committed::read(&dir.path().join("out/budget"))
            .strings("pair_id")
            .len(),
        60
    );
}

/// The structured-output mode a recorded request was sent in.
fn format_mode(request: &RecordedRequest) -> &'static str {
    use rubricmill_llm::wire::WireResponseFormat;
    match &request.body.response_format {
        Some(WireResponseFormat::JsonSchema { .. }) => "json_schema",
        Some(WireResponseFormat::JsonObject) => "json_object",
        Some(WireResponseFormat::Text) => "text",
        None => "none",
    }
}

#[test]
fn a_server_refusing_json_schema_with_500_settles_on_json_mode_and_the_summary_says_so() {
    // llama-cpp-python's server answers a json_schema response format with a 500 validation
    // error, and serves JSON mode.
    let mock = Mock::start(MockConfig {
        refuse_json_schema: Some(500),
        ..MockConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(dir.path(), "jsonmode", &mock, 20, "max_concurrency = 8");
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        summary["structured_output"],
        serde_json::json!({"generate": "json_object", "judge": "json_object"})
    );
    assert_eq!(
        Committed::read(&dir.path().join("out/jsonmode")).row_count(),
        20
    );
    let requests = mock.requests();
    let refused = requests.iter().filter(|r| r.status == 500).count();
    assert!(
        (1..=8).contains(&refused),
        "{refused} refusals: at most the calls in flight before the first one came back"
    );
    let seen: Vec<(u16, &str)> = requests
        .iter()
        .map(|r| (r.status, format_mode(r)))
        .collect();
    let refused_modes: HashSet<&str> = requests
        .iter()
        .filter(|r| r.status == 500)
        .map(format_mode)
        .collect();
    assert_eq!(refused_modes, HashSet::from(["json_schema"]), "{seen:?}");
    let answered = requests
        .iter()
        .filter(|r| r.status == 200 && format_mode(r) == "json_object")
        .count();
    assert_eq!(
        answered, 20,
        "every call was answered in JSON mode: {seen:?}"
    );
    assert_eq!(
        requests.len(),
        refused + 20,
        "no retries: every refused call was sent again in JSON mode at once: {seen:?}"
    );
    assert_eq!(summary["this_run"]["retries"].as_u64(), Some(0));
}

#[test]
fn strict_is_sent_with_the_generation_schema_but_not_with_the_judge_schema() {
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(dir.path(), "strict", &mock, 10, "");
    // The judge runs with the consistency filter.
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("consistency_filter = false", "consistency_filter = true");
    std::fs::write(&spec, text).unwrap();
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["structured_output"]["generate"], "json_schema");
    let strict_by_task = |task: &str| -> Vec<Option<bool>> {
        use rubricmill_llm::wire::WireResponseFormat;
        mock.requests()
            .iter()
            .filter_map(|r| match &r.body.response_format {
                Some(WireResponseFormat::JsonSchema { json_schema })
                    if json_schema.name == task =>
                {
                    Some(json_schema.strict)
                }
                _ => None,
            })
            .collect()
    };
    let generate = strict_by_task(rubricmill_llm::simulated::CRG_TASK);
    let judge = strict_by_task(rubricmill_llm::simulated::CRG_JUDGE_TASK);
    assert!(!generate.is_empty() && !judge.is_empty());
    assert!(
        generate.iter().all(|s| *s == Some(true)),
        "every field of the generation schema is required: {generate:?}"
    );
    assert!(
        judge.iter().all(Option::is_none),
        "the judge's reason is optional, so its schema cannot be strict: {judge:?}"
    );
}
