//! The UI's JSON API, called on its router without a browser: `view` over a job run here with
//! the simulated provider, and the coordinator's UI over a real nats-server.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use rubricmill_cluster::{Cluster, FailedShard, Names, NatsOptions, QueueSettings};
use rubricmill_core::JobSpec;
use rubricmill_runtime::distributed;
use rubricmill_runtime::{EmbeddedOptions, NoProgress, run_embedded};
use rubricmill_testkit::NatsServer;
use rubricmill_ui::UiOptions;
use serde_json::Value;
use tower::ServiceExt;

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/pairs")
}

fn crg_spec(dir: &Path, name: &str) -> JobSpec {
    let text = format!(
        "name = \"{name}\"\npipeline = \"crg\"\n[input]\nurl = \"{}\"\nformat = \"jsonl\"\nrecords_per_shard = 4\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\nsimulated_judge_error_rate = 0.3\n[llm.headers]\nx-team = \"team-blue\"\n",
        samples().join("pairs-hh.jsonl").display(),
        dir.join("out").display()
    );
    JobSpec::parse(Path::new("ui-test.toml"), &text).unwrap()
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_answers_a_finished_jobs_figures_and_rows_from_its_markers_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = crg_spec(dir.path(), "viewed");
    let summary = run_embedded(
        &spec,
        &EmbeddedOptions::default(),
        &mut NoProgress,
        std::future::pending(),
    )
    .await
    .unwrap();
    let router = rubricmill_ui::view_router(&spec).unwrap();

    let (status, info) = call(&router, "GET", "/api/info", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["mode"], "view");
    assert_eq!(info["writable"], false);

    let (_, jobs) = call(&router, "GET", "/api/jobs", None).await;
    let job = &jobs[0];
    let tally = &summary.this_run;
    assert_eq!(job["job"], "viewed");
    assert_eq!(job["state"], "complete");
    assert_eq!(job["planned"], summary.shards_planned);
    assert_eq!(job["committed"], tally.shards);
    assert_eq!(job["rows"], tally.rows);
    assert_eq!(job["rejects"], tally.rejects);
    assert_eq!(job["usage"]["calls"], tally.usage.calls);
    assert_eq!(
        job["usage"]["tokens_in"].as_u64().unwrap(),
        tally.usage.tokens_in
    );

    let (_, series) = call(&router, "GET", "/api/jobs/viewed/series", None).await;
    let series = series.as_array().unwrap();
    assert_eq!(series.len() as u64, tally.shards, "one point per commit");
    assert_eq!(series.last().unwrap()["rows"], tally.rows);

    // Every committed row, paged.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = call(
            &router,
            "GET",
            &format!("/api/jobs/viewed/rows?limit=7&offset={offset}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let rows = page["rows"].as_array().unwrap();
        seen.extend(
            rows.iter()
                .map(|r| r["pair_id"].as_str().unwrap().to_owned()),
        );
        offset += rows.len();
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(seen.len() as u64, tally.rows);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as u64, tally.rows, "no row twice");

    // Filters: kept and dropped split the rows.
    let count = |page: &Value| page["rows"].as_array().unwrap().len() as u64;
    let (_, kept) = call(
        &router,
        "GET",
        "/api/jobs/viewed/rows?kept=true&limit=200",
        None,
    )
    .await;
    let (_, dropped) = call(
        &router,
        "GET",
        "/api/jobs/viewed/rows?kept=false&limit=200",
        None,
    )
    .await;
    assert_eq!(count(&kept) + count(&dropped), tally.rows);
    assert!(
        kept["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kept"] == true)
    );
    assert!(
        dropped["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kept"] == false)
    );
    let first = &kept["rows"][0];
    assert!(first["chosen"].as_str().is_some_and(|t| !t.is_empty()));
    let part = first["_part"].as_str().unwrap();
    assert!(part.starts_with("parts/"));
    assert_eq!(kept["metadata"][part]["rubricmill.job"], "viewed");
    assert_eq!(kept["metadata"][part]["rubricmill.simulated"], "true");

    // Read-only, unknown jobs, and a spec without secrets.
    let (status, _) = call(&router, "POST", "/api/jobs/viewed/retry", Some("anything")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&router, "GET", "/api/jobs/other/rows", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, spec_json) = call(&router, "GET", "/api/jobs/viewed/spec", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(spec_json["name"], "viewed");
    assert_eq!(spec_json["llm"]["headers"]["x-team"], "<redacted>");
    assert!(!spec_json.to_string().contains("team-blue"));

    // The page itself.
    let page = router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains("<script src=\"/app.js\">"), "{html}");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let (status, _) = call(&router, "GET", "/app.js", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, failures) = call(&router, "GET", "/api/failures", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(failures, Value::Array(Vec::new()));
}

async fn open_cluster(server: &NatsServer) -> Cluster {
    let options = NatsOptions::for_servers(&server.url());
    Cluster::connect(&options, Names::default(), QueueSettings::default(), true)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_api_matches_status_and_retry_wants_the_token() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = open_cluster(&server).await;
    let spec = crg_spec(dir.path(), "queued");
    let submitted = distributed::submit(&cluster, &spec).await.unwrap();
    assert!(submitted.planned > 1);
    // A shard given up, as the coordinator records one after its last delivery.
    let failed_shard = {
        let store = rubricmill_store::JobStore::open(&spec.output.url, "queued").unwrap();
        let manifest = store.load_manifest().await.unwrap().unwrap();
        let mut chunks = std::pin::pin!(store.planned_shards(&manifest));
        let first = chunks.next().await.unwrap().unwrap();
        first[0].id.0.clone()
    };
    cluster
        .record_failure(&FailedShard {
            job: "queued".into(),
            shard: failed_shard.clone(),
            reason: "input file vanished: pairs-hh.jsonl".into(),
            attempts: 4,
            worker: Some("w1".into()),
            at: chrono::Utc::now(),
        })
        .await
        .unwrap();

    let options = UiOptions {
        token: Some("ui-token-for-tests".into()),
        ..UiOptions::default()
    };
    let (router, _tasks) = rubricmill_ui::coordinator_router(cluster.clone(), &options)
        .await
        .unwrap();
    let (_, info) = call(&router, "GET", "/api/info", None).await;
    assert_eq!(info["mode"], "coordinator");
    assert_eq!(info["writable"], true);

    let status = distributed::job_status(&cluster, "queued").await.unwrap();
    let (code, detail) = call(&router, "GET", "/api/jobs/queued", None).await;
    assert_eq!(code, StatusCode::OK, "{detail}");
    let view = &detail["view"];
    assert_eq!(view["planned"], status.planned);
    assert_eq!(view["pending"], status.pending);
    assert_eq!(view["committed"], status.committed);
    assert_eq!(view["failed"], status.failed.len() as u64);
    assert_eq!(view["failed"], 1);
    assert_eq!(detail["status"]["planned"], status.planned);

    let (_, failures) = call(&router, "GET", "/api/failures", None).await;
    assert_eq!(failures[0]["shard"], failed_shard.as_str());
    assert_eq!(failures[0]["reason"], "input file vanished: pairs-hh.jsonl");
    assert_eq!(failures[0]["attempts"], 4);

    let (code, _) = call(&router, "POST", "/api/jobs/queued/retry", None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (code, _) = call(&router, "POST", "/api/jobs/queued/retry", Some("wrong")).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(cluster.failures("queued").await.unwrap().len(), 1);
    let (code, body) = call(
        &router,
        "POST",
        "/api/jobs/queued/retry",
        Some("ui-token-for-tests"),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["queued"], 1);
    assert!(cluster.failures("queued").await.unwrap().is_empty());
    let (code, _) = call(
        &router,
        "POST",
        "/api/jobs/nothing/retry",
        Some("ui-token-for-tests"),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Read-only when no token is configured.
    let (read_only, _tasks) =
        rubricmill_ui::coordinator_router(cluster.clone(), &UiOptions::default())
            .await
            .unwrap();
    let (code, body) = call(
        &read_only,
        "POST",
        "/api/jobs/queued/cancel",
        Some("ui-token-for-tests"),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let (_, workers) = call(&read_only, "GET", "/api/workers", None).await;
    assert_eq!(workers["workers"], Value::Array(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_ui_samples_progress_into_its_chart_series() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = open_cluster(&server).await;
    let spec = crg_spec(dir.path(), "sampled");
    let submitted = distributed::submit(&cluster, &spec).await.unwrap();
    let options = UiOptions {
        sample_every: std::time::Duration::from_millis(50),
        ..UiOptions::default()
    };
    let (router, _tasks) = rubricmill_ui::coordinator_router(cluster.clone(), &options)
        .await
        .unwrap();
    // As a coordinator would publish it, twice, with more committed the second time.
    for (committed, rows, calls) in [(1u64, 4u64, 9u64), (2, 8, 17)] {
        let progress = rubricmill_cluster::JobProgress {
            planned: submitted.planned,
            committed,
            rows,
            records: rows,
            usage: rubricmill_core::Usage {
                calls,
                cost_usd: calls as f64 * 0.01,
                ..Default::default()
            },
            updated_at: Some(chrono::Utc::now()),
            ..Default::default()
        };
        cluster.put_progress("sampled", &progress).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, series) = call(&router, "GET", "/api/jobs/sampled/series", None).await;
            if series
                .as_array()
                .and_then(|points| points.last())
                .is_some_and(|last| last["rows"] == rows)
            {
                let last = series.as_array().unwrap().last().unwrap().clone();
                assert_eq!(last["calls"], calls);
                assert_eq!(last["committed"], committed);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no sample of {rows} rows: {series}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let (_, series) = call(&router, "GET", "/api/jobs/sampled/series", None).await;
    let rows: Vec<u64> = series
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rows"].as_u64().unwrap())
        .collect();
    assert!(rows.contains(&4) && rows.contains(&8), "{rows:?}");
    let (_, job) = call(&router, "GET", "/api/jobs/sampled", None).await;
    assert_eq!(
        job["view"]["projected_cost_usd"].as_f64().unwrap(),
        17.0 * 0.01 / 2.0 * submitted.planned as f64
    );
}
