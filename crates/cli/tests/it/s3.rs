//! A whole job with its input and output on S3 (a real S3-protocol server on a free port).

use std::collections::HashSet;

use arrow_array::RecordBatch;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_store::StoreLocation;
use rubricmill_testkit::S3Server;

use crate::{rubricmill, succeeded, write_spec};

/// The commit markers of a job folder on S3 and the `pair_id`s of the parts they name.
fn committed_pair_ids(
    runtime: &tokio::runtime::Runtime,
    bucket: &str,
    options: &std::collections::BTreeMap<String, String>,
    job: &str,
) -> (usize, Vec<String>) {
    let store = StoreLocation::parse_with(bucket, options).unwrap().store;
    runtime.block_on(async {
        use futures::StreamExt;
        let metas: Vec<_> = store
            .list(Some(&Path::from(format!("{job}/commits"))))
            .collect()
            .await;
        let mut ids = Vec::new();
        for meta in &metas {
            let bytes = store
                .get(&meta.as_ref().unwrap().location)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let marker: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let part = Path::from(format!("{job}/{}", marker["part"].as_str().unwrap()));
            let data = store.get(&part).await.unwrap().bytes().await.unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(data)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch: RecordBatch = batch.unwrap();
                let column = batch.column_by_name("pair_id").unwrap();
                let strings = column
                    .as_any()
                    .downcast_ref::<arrow_array::StringArray>()
                    .unwrap();
                ids.extend(strings.iter().map(|s| s.unwrap().to_owned()));
            }
        }
        (metas.len(), ids)
    })
}

#[test]
fn a_job_reads_and_writes_s3() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("corpus");
    server.create_bucket("datasets");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let options = server.options();
    let corpus = StoreLocation::parse_with("s3://corpus/pairs", &options).unwrap();
    let lines: String = (0..120)
        .map(|i| format!("{{\"id\": \"p{i}\", \"prompt\": \"question {i}\", \"chosen\": \"good {i}\", \"rejected\": \"bad {i}\"}}\n"))
        .collect();
    runtime
        .block_on(corpus.store.put(
            &Path::from("pairs/part-0.jsonl"),
            PutPayload::from(lines.into_bytes()),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "s3job",
        "pipeline = \"crg\"\n[input]\nurl = \"s3://corpus/pairs/*.jsonl\"\nrecords_per_shard = 25\n[output]\nurl = \"s3://datasets/runs\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
    );
    let run = || {
        rubricmill()
            .arg("run")
            .arg(&spec)
            .arg("--json")
            .envs(server.env())
            .output()
            .unwrap()
    };
    let output = run();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["this_run"]["shards"], 5);

    let (markers, ids) = committed_pair_ids(&runtime, "s3://datasets", &options, "runs/s3job");
    assert_eq!(markers, 5);
    let ids: HashSet<String> = ids.into_iter().collect();
    assert_eq!(ids.len(), 120);
    // The same command again finds every shard committed.
    let again = run();
    assert!(again.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["this_run"]["shards"], 0);
    assert_eq!(summary["before"]["shards"], 5);
}

/// An HTTP proxy in front of the S3 server that answers some requests 503 itself and stalls
/// others past the client's timeout (forwarding them late, so a stalled put may still land).
struct FaultyProxy {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    faults: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultyProxy {
    fn start(runtime: &tokio::runtime::Runtime, upstream: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        use http_body_util::{BodyExt, Full};
        use hyper::service::service_fn;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(AtomicU64::new(0));
        let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let (counter, fault_counter) = (requests.clone(), faults.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (client, counter, fault_counter) =
                    (client.clone(), counter.clone(), fault_counter.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (client, counter, fault_counter) =
                                (client.clone(), counter.clone(), fault_counter.clone());
                            async move {
                                let n = counter.fetch_add(1, Ordering::SeqCst);
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                if n % 7 == 3 {
                                    fault_counter.fetch_add(1, Ordering::SeqCst);
                                    let response = hyper::Response::builder()
                                        .status(503)
                                        .body(Full::new(bytes::Bytes::from_static(
                                            b"<Error><Code>SlowDown</Code></Error>",
                                        )))
                                        .unwrap();
                                    return Ok::<_, std::convert::Infallible>(response);
                                }
                                if n % 11 == 5 {
                                    // Stall past the client's timeout, then forward anyway.
                                    fault_counter.fetch_add(1, Ordering::SeqCst);
                                    tokio::time::sleep(std::time::Duration::from_millis(2500))
                                        .await;
                                }
                                let uri = format!(
                                    "http://127.0.0.1:{upstream}{}",
                                    parts.uri.path_and_query().map_or("/", |p| p.as_str())
                                );
                                let mut forward =
                                    hyper::Request::builder().method(parts.method).uri(uri);
                                for (name, value) in &parts.headers {
                                    forward = forward.header(name, value);
                                }
                                let response = match client
                                    .request(forward.body(Full::new(body)).unwrap())
                                    .await
                                {
                                    Ok(response) => {
                                        let (parts, body) = response.into_parts();
                                        let body = body
                                            .collect()
                                            .await
                                            .map(|b| b.to_bytes())
                                            .unwrap_or_default();
                                        hyper::Response::from_parts(parts, Full::new(body))
                                    }
                                    Err(_) => hyper::Response::builder()
                                        .status(502)
                                        .body(Full::new(bytes::Bytes::new()))
                                        .unwrap(),
                                };
                                Ok(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            port,
            requests,
            faults,
        }
    }
}

#[test]
fn s3_errors_and_stalls_are_retried_and_nothing_is_lost_or_duplicated() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("flaky");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = FaultyProxy::start(&runtime, server.port);
    let mut options = server.options();
    options.insert(
        "aws_endpoint".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    );
    let direct = StoreLocation::parse_with("s3://flaky/in", &server.options()).unwrap();
    let lines: String = (0..200)
        .map(|i| format!("{{\"id\": \"q{i}\", \"prompt\": \"question {i}\", \"chosen\": \"good {i}\", \"rejected\": \"bad {i}\"}}\n"))
        .collect();
    runtime
        .block_on(direct.store.put(
            &Path::from("in/pairs.jsonl"),
            PutPayload::from(lines.into_bytes()),
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "flaky",
        "pipeline = \"crg\"\n[input]\nurl = \"s3://flaky/in/pairs.jsonl\"\nrecords_per_shard = 20\n[output]\nurl = \"s3://flaky/out\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
    );
    let mut env: Vec<(String, String)> = options
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    env.push(("AWS_TIMEOUT".into(), "1s".into()));
    succeeded(rubricmill().arg("run").arg(&spec).arg("--json").envs(env));
    use std::sync::atomic::Ordering;
    assert!(
        proxy.faults.load(Ordering::SeqCst) >= 5,
        "faults injected: {}",
        proxy.faults.load(Ordering::SeqCst)
    );
    assert!(proxy.requests.load(Ordering::SeqCst) > 30);
    // Read back directly: every pair exactly once, through the markers.
    let (_, ids) = committed_pair_ids(&runtime, "s3://flaky", &server.options(), "out/flaky");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 200, "no row lost or duplicated");
    assert_eq!(unique.len(), 200);
}
