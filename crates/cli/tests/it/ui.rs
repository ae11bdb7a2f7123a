//! The web UI in a real browser: headless Chromium loads the pages that `rubricmill view` (here)
//! and `rubricmill coordinator --ui-addr` (cluster.rs) serve, and the tests read the DOM after
//! the page's scripts ran.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rubricmill_mock_llm::MockConfig;
use rubricmill_testkit::{Chromium, free_port};
use serde_json::Value;

use crate::{Committed, Mock, crg_job, rubricmill, succeeded};

/// A `rubricmill` process serving the UI, killed on drop.
pub struct Served {
    child: Child,
    pub port: u16,
}

impl Served {
    /// Waits until `child` answers `GET /api/info` on `port`.
    pub fn wait(child: Child, port: u16) -> Self {
        let mut served = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if request(port, "GET", "/api/info", None).is_ok_and(|(status, _)| status == 200) {
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("the ui process exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the ui did not answer on port {port}");
    }

    /// `rubricmill view SPEC` on a free port, with `env`, once it answers.
    pub fn view(spec: &Path, env: &[(String, String)]) -> Self {
        let port = free_port();
        let child = rubricmill()
            .arg("view")
            .arg(spec)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self::wait(child, port)
    }

    pub fn url(&self, fragment: &str) -> String {
        format!("http://127.0.0.1:{}/{fragment}", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with an optional bearer token: the status and the body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    let (status, response) = rubricmill_testkit::http_request(port, method, path, &headers)?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Ok((status, body))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The part of the DOM from the first element with `marker` (e.g. `data-job="x"`) on.
pub fn from<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    &dom[at..]
}

/// The value of attribute `attr` of the first element that has `marker` among its attributes.
pub fn attribute(dom: &str, marker: &str, attr: &str) -> String {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    let tag = &dom[start..end];
    let key = format!("{attr}=\"");
    let value_at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {attr} in {tag}"))
        + key.len();
    unescape(&tag[value_at..value_at + tag[value_at..].find('"').unwrap()])
}

/// The text of the first element with `marker`, up to its first child element.
pub fn text(dom: &str, marker: &str) -> String {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let open_end = at + dom[at..].find('>').unwrap() + 1;
    let close = open_end + dom[open_end..].find('<').unwrap();
    unescape(&dom[open_end..close])
}

/// A metric of the jobs page as a number (its raw `data-value`).
pub fn metric(dom: &str, name: &str) -> f64 {
    attribute(dom, &format!("data-metric=\"{name}\""), "data-value")
        .parse()
        .unwrap_or_else(|_| panic!("metric {name} is not a number"))
}

/// Loads `url` until the page says it finished `page` (its `data-loaded`), a few tries.
pub fn loaded_dom(chromium: &Chromium, url: &str, page: &str) -> String {
    let marker = format!("data-loaded=\"{page}\"");
    let mut dom = String::new();
    for _ in 0..3 {
        dom = chromium.dump_dom(url);
        if dom.contains(&marker) {
            return dom;
        }
    }
    panic!("{url} never finished loading {page}:\n{dom}");
}

#[test]
fn view_shows_a_jobs_figures_and_its_rows_as_the_parquet_holds_them() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_job(dir.path(), "viewed", &mock, 35, "");
    succeeded(rubricmill().arg("run").arg(&spec).arg("--no-progress"));
    let committed = Committed::read(&dir.path().join("out/viewed"));
    let port = free_port();
    let mut child = rubricmill()
        .arg("view")
        .arg(&spec)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It says where to look.
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert!(
        said.contains(&format!("http://127.0.0.1:{port}/")),
        "{said}"
    );
    let served = Served::wait(child, port);

    let jobs = loaded_dom(&chromium, &served.url("#/jobs"), "jobs");
    let job = from(&jobs, "data-job=\"viewed\"");
    assert_eq!(metric(job, "planned"), 4.0);
    assert_eq!(metric(job, "committed"), committed.markers.len() as f64);
    assert_eq!(metric(job, "rows"), committed.row_count() as f64);
    assert_eq!(metric(job, "rejects"), committed.reject_count() as f64);
    let calls: u64 = committed
        .markers
        .iter()
        .map(|m| m["usage"]["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(metric(job, "calls"), calls as f64);
    assert_eq!(
        attribute(job, "data-metric=\"state\"", "data-value"),
        "complete"
    );
    assert!(jobs.contains("data-chart=\"throughput\""));
    assert!(
        !jobs.contains("data-page=\"workers\" class=\"coordinator-only active\""),
        "view has no workers page"
    );

    // The viewer's rows are the Parquet's, in marker order.
    let rows = loaded_dom(&chromium, &served.url("#/rows/viewed?limit=12"), "rows");
    let chosen = committed.strings("chosen");
    let rejected = committed.strings("rejected");
    let shards = committed.strings("shard_id");
    for index in [0, 11] {
        let row = from(&rows, &format!("data-row-index=\"{index}\""));
        assert_eq!(text(row, "data-field=\"chosen\""), chosen[index]);
        assert_eq!(text(row, "data-field=\"rejected\""), rejected[index]);
        assert_eq!(text(row, "data-prov=\"shard\""), shards[index]);
    }
    assert!(
        !rows.contains("data-row-index=\"12\""),
        "a page holds its limit"
    );
    assert_eq!(
        attribute(&rows, "id=\"page-info\"", "data-total"),
        committed.row_count().to_string()
    );

    // The second page starts where the first ended.
    let next = loaded_dom(
        &chromium,
        &served.url("#/rows/viewed?limit=12&offset=12"),
        "rows",
    );
    let row = from(&next, "data-row-index=\"12\"");
    assert_eq!(text(row, "data-field=\"chosen\""), chosen[12]);

    // Read-only: no retry, whatever the token.
    let (status, _) = request(port, "POST", "/api/jobs/viewed/retry", Some("x")).unwrap();
    assert_eq!(status, 403);

    let shot = dir.path().join("rows.png");
    chromium.screenshot(&served.url("#/rows/viewed"), &shot, 1400, 1000);
    assert!(is_png(&shot));
}

pub fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"\x89PNG"))
}

#[test]
fn view_shows_researchqa_rows_beside_their_section_and_rejects_with_their_reason() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let surveys = crate::repo_root().join("samples/surveys");
    let spec = crate::write_spec(
        dir.path(),
        "surveyed",
        &format!(
            "pipeline = \"researchqa\"\n[input]\nurl = \"{}/**/*.md\"\nformat = \"markdown\"\nrecords_per_shard = 1\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            surveys.display(),
            dir.path().join("out").display()
        ),
    );
    succeeded(rubricmill().arg("run").arg(&spec).arg("--no-progress"));
    let committed = Committed::read(&dir.path().join("out/surveyed"));
    let served = Served::view(&spec, &[]);
    let dom = loaded_dom(&chromium, &served.url("#/rows/surveyed?limit=3"), "rows");
    let queries = committed.strings("query");
    let headings = committed.strings("section_heading");
    let texts = committed.strings("section_text");
    for index in 0..3 {
        let row = from(&dom, &format!("data-row-index=\"{index}\""));
        assert_eq!(text(row, "data-field=\"query\""), queries[index]);
        assert_eq!(text(row, "data-field=\"section_heading\""), headings[index]);
        assert_eq!(text(row, "data-field=\"section_text\""), texts[index]);
        assert!(row.contains("data-field=\"rubric-item\""));
    }
    // The rejects table: each reject with its stage and reason.
    let rejects = loaded_dom(
        &chromium,
        &served.url("#/rows/surveyed?table=rejects&limit=5"),
        "rows",
    );
    let reasons = committed.reject_strings("reason");
    let row = from(&rejects, "data-row-index=\"0\"");
    assert_eq!(text(row, "data-field=\"reason\""), reasons[0]);
}

#[test]
fn view_reads_a_job_whose_output_is_on_s3() {
    let Some(server) = rubricmill_testkit::S3Server::start() else {
        return;
    };
    server.create_bucket("datasets");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    crate::write_pairs(&input, 30);
    let spec = crate::write_spec(
        dir.path(),
        "s3view",
        &format!(
            "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"s3://datasets/runs\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
            input.display()
        ),
    );
    succeeded(
        rubricmill()
            .arg("run")
            .arg(&spec)
            .arg("--no-progress")
            .envs(server.env()),
    );
    let served = Served::view(&spec, &server.env());
    let (status, body) = request(served.port, "GET", "/api/jobs", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let jobs: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jobs[0]["committed"], 3);
    assert_eq!(jobs[0]["rows"], 30);
    let (status, body) =
        request(served.port, "GET", "/api/jobs/s3view/rows?limit=200", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut ids: Vec<&str> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["pair_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    assert!(ids.contains(&"pair-000007"));
}

/// Runs quickstart `config` in `dir` and serves its output with `rubricmill view`.
fn run_and_view(dir: &Path, config: &str) -> (Served, Vec<Value>) {
    let spec = crate::quickstart(dir, config, config, None);
    succeeded(rubricmill().arg("run").arg(&spec).arg("--no-progress"));
    let rows = Committed::read(&dir.join("out").join(config)).json_rows();
    (Served::view(&spec, &[]), rows)
}

#[test]
fn view_shows_score_responses_with_their_scores_and_nuggets_with_their_spans() {
    let Some(chromium) = Chromium::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // Score rows: every response with its score as the Parquet holds it, and the agreement.
    let (served, scores) = run_and_view(dir.path(), "quickstart-score");
    let url = served.url("#/rows/quickstart-score?limit=6");
    let dom = loaded_dom(&chromium, &url, "rows");
    for (index, row) in scores.iter().enumerate() {
        let shown = from(&dom, &format!("data-row-index=\"{index}\""));
        for response in row["responses"].as_array().unwrap() {
            let id = response["response_id"].as_str().unwrap();
            let block = from(shown, &format!("data-response=\"{id}\""));
            let score: f64 = attribute(block, "data-field=\"score\"", "data-value")
                .parse()
                .unwrap();
            assert!((score - response["score"].as_f64().unwrap()).abs() < 1e-9);
        }
        let agrees = row.get("agrees").map_or(String::new(), Value::to_string);
        assert_eq!(
            attribute(shown, "data-field=\"agrees\"", "data-value"),
            agrees
        );
    }
    drop(served);

    // Nuggets rows: each shows its first nugget and the span quoted from its passage.
    let (served, nuggets) = run_and_view(dir.path(), "quickstart-nuggets");
    let url = served.url("#/rows/quickstart-nuggets?limit=5");
    let dom = loaded_dom(&chromium, &url, "rows");
    for (index, row) in nuggets.iter().enumerate() {
        let shown = from(&dom, &format!("data-row-index=\"{index}\""));
        let first = &row["nuggets"][0];
        assert_eq!(
            text(shown, "data-field=\"nugget-text\""),
            first["nugget"].as_str().unwrap()
        );
        assert_eq!(
            text(shown, "data-field=\"span\""),
            first["span"].as_str().unwrap()
        );
    }
}
