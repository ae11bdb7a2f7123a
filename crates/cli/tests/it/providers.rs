//! Jobs run with the native Anthropic and the Azure OpenAI providers against mock-llm, and the
//! rate limits the answers announce, shown in the run summary.

use rubricmill_mock_llm::{ApiKey, MockConfig};

use crate::{Committed, Mock, crg_spec, rubricmill, write_pairs};

/// A crg job over `pairs` synthetic pairs with the `[llm]` lines given.
fn job(dir: &std::path::Path, name: &str, pairs: usize, llm: &str) -> std::path::PathBuf {
    let input = dir.join(format!("{name}.jsonl"));
    write_pairs(&input, pairs);
    let llm = format!("api_key_env = \"RUBRICMILL_TEST_KEY\"\n{llm}");
    crg_spec(dir, name, &input, 5, &llm, "consistency_filter = false")
}

/// Runs a job with the key set and returns the exit code and the JSON summary.
fn run(spec: &std::path::Path, key: &str) -> (i32, serde_json::Value) {
    let output = rubricmill()
        .args(["run", "--no-progress", "--json"])
        .arg(spec)
        .env("RUBRICMILL_TEST_KEY", key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary; stdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (output.status.code().unwrap_or(-1), summary)
}

fn keyed_mock(rpm: u32) -> Mock {
    Mock::start(MockConfig {
        api_key: Some(ApiKey::new("sk-provider-test")),
        rpm: Some(rpm),
        ..MockConfig::default()
    })
}

#[test]
fn a_crg_job_runs_on_the_anthropic_messages_api_and_reports_the_announced_limit() {
    let mock = keyed_mock(6000);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}", mock.server().addr());
    let spec = job(
        dir.path(),
        "messages",
        10,
        &format!("provider = \"anthropic\"\nbase_url = \"{base}\"\nrequests_per_minute = 60000"),
    );
    let (code, summary) = run(&spec, "sk-provider-test");
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/messages"));
    assert_eq!(out.row_count(), 10);
    assert!(out.strings("provider").iter().all(|p| p == "anthropic"));
    assert_eq!(summary["this_run"]["llm_calls"], 10);
    // Every call went to /v1/messages and was answered.
    assert_eq!(mock.count(200), 10);
    let limits = &summary["provider_limits"]["generate"];
    assert_eq!(limits["provider_rpm"], 6000, "{summary}");
    assert_eq!(limits["configured_rpm"], 60000);
}

#[test]
fn the_text_summary_shows_the_limits_the_provider_announced() {
    let mock = keyed_mock(6000);
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        "announced",
        5,
        &format!(
            "provider = \"openai\"\nbase_url = \"{}\"",
            mock.server().base_url()
        ),
    );
    let output = rubricmill()
        .args(["run", "--no-progress"])
        .arg(&spec)
        .env("RUBRICMILL_TEST_KEY", "sk-provider-test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("provider limits (generate): 6000 rpm (none configured)"),
        "{stdout}"
    );
}

#[test]
fn a_crg_job_runs_on_an_azure_deployment() {
    let mock = keyed_mock(6000);
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://{}", mock.server().addr());
    let spec = job(
        dir.path(),
        "azure",
        5,
        &format!(
            "provider = \"azure\"\nbase_url = \"{base}\"\ndeployment = \"rubric-writer\"\napi_version = \"2024-10-21\""
        ),
    );
    let (code, summary) = run(&spec, "sk-provider-test");
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/azure"));
    assert_eq!(out.row_count(), 5);
    assert!(out.strings("provider").iter().all(|p| p == "azure"));
    // A wrong key stops the job, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let spec = job(
        dir.path(),
        "azurebad",
        5,
        &format!("provider = \"azure\"\nbase_url = \"{base}\"\napi_version = \"2024-10-21\""),
    );
    let (code, summary) = run(&spec, "wrong-key");
    assert_eq!(code, 2, "{summary}");
    assert!(
        summary.to_string().contains("RUBRICMILL_TEST_KEY"),
        "{summary}"
    );
}
