//! rubricmill's batch clients ([`OpenAiBatch`] for OpenAI and Azure OpenAI, [`AnthropicBatch`])
//! against mock-llm's batch endpoints over real HTTP: submit, status while the processing delay
//! runs, results parsed into the answers the online path would give, idempotency by name,
//! item failures and expiry, keys and missing batch APIs.

use std::time::Duration;

use rubricmill_core::Message;
use rubricmill_llm::batch::{
    AnthropicBatch, AzureTarget, BatchApi, BatchItem, BatchState, BatchStatus, ItemResult,
    OpenAiBatch,
};
use rubricmill_llm::simulated::{CRG_TASK, RESEARCHQA_TASK, simulated_answer};
use rubricmill_llm::{ChatRequest, LlmError, ResponseFormat};
use rubricmill_mock_llm::{MockConfig, MockServer};
use serde_json::json;

use crate::{endpoint, fatal, keyed, names_key_env, origin, serve};

fn openai(server: &MockServer, key: Option<&str>) -> OpenAiBatch {
    OpenAiBatch::new(&endpoint(server.base_url(), key)).unwrap()
}

/// A crg generation request, or a researchqa one for every third item.
fn request(i: usize) -> ChatRequest {
    let (task, prompt) = if i % 3 == 2 {
        (
            RESEARCHQA_TASK,
            format!(
                "<section_heading>Methods {i}</section_heading>\n<section_text>We measured soil moisture at {i} sites over two seasons.</section_text>"
            ),
        )
    } else {
        (
            CRG_TASK,
            format!("<conversation>user: question {i}: how do I repot a fern?</conversation>"),
        )
    };
    ChatRequest {
        model: "mock-model".into(),
        messages: vec![
            Message::new("system", "You write rubrics. Answer with JSON."),
            Message::new("user", prompt),
        ],
        temperature: 0.0,
        max_tokens: 1024,
        seed: Some(i as u64),
        response_format: Some(ResponseFormat {
            name: task.into(),
            schema: json!({"type": "object"}),
        }),
    }
}

fn items(count: usize) -> Vec<BatchItem> {
    (0..count)
        .map(|i| BatchItem {
            custom_id: format!("rec-{i}"),
            request: request(i),
        })
        .collect()
}

/// Polls until the batch is in a final state (the mock's delay is short; the bound only keeps
/// a broken server from hanging the test).
async fn wait_final(api: &dyn BatchApi, id: &str) -> BatchStatus {
    for _ in 0..600 {
        let status = api.status(id).await.unwrap();
        if status.state.is_final() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("batch {id} never ended");
}

/// The results by custom id, sorted.
async fn results(api: &dyn BatchApi, id: &str) -> Vec<(String, ItemResult)> {
    let mut results = api.results(id).await.unwrap();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

fn assert_simulated_answers(results: &[(String, ItemResult)], items: &[BatchItem]) {
    assert_eq!(results.len(), items.len());
    for item in items {
        let (_, result) = results
            .iter()
            .find(|(id, _)| *id == item.custom_id)
            .unwrap_or_else(|| panic!("no result for {}", item.custom_id));
        match result {
            ItemResult::Answered { answer } => {
                assert_eq!(answer.content, simulated_answer(&item.request));
                assert_eq!(answer.finish_reason, "stop");
                assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
                let value: serde_json::Value = serde_json::from_str(&answer.content).unwrap();
                assert!(value.is_object(), "{value}");
            }
            other => panic!("{}: {other:?}", item.custom_id),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_batch_round_trip_gives_the_simulated_task_answers() {
    let server = serve(MockConfig {
        batch_delay_ms: 1500,
        ..MockConfig::default()
    })
    .await;
    let api = openai(&server, None);
    assert_eq!(api.kind(), "openai");
    let items = items(6);
    let id = api.submit("job1-stage0-shard3", &items).await.unwrap();
    let status = api.status(&id).await.unwrap();
    assert_eq!(status.state, BatchState::InProgress, "{status:?}");
    assert_eq!(status.total, 6);
    assert!(
        matches!(api.results(&id).await, Err(LlmError::Retryable { .. })),
        "results of a batch in progress are not there yet"
    );
    let status = wait_final(&api, &id).await;
    assert_eq!(
        (status.state, status.total, status.completed, status.failed),
        (BatchState::Ended, 6, 6, 0)
    );
    let results = results(&api, &id).await;
    assert_simulated_answers(&results, &items);
    let stats = server.stats();
    assert_eq!(stats.batches.batches_created, 1);
    assert_eq!(stats.batches.files_uploaded, 1);
    assert_eq!(stats.batches.items_answered, 6);
    assert_eq!(stats.requests, 0, "batch items are not chat requests");
    let answered_tokens: u64 = results
        .iter()
        .map(|(_, r)| match r {
            ItemResult::Answered { answer } => {
                answer.usage.prompt_tokens + answer.usage.completion_tokens
            }
            ItemResult::Failed { .. } => 0,
        })
        .sum();
    assert_eq!(
        stats.prompt_tokens + stats.completion_tokens,
        answered_tokens,
        "batch tokens are counted like online ones"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_returns_the_batch_of_a_name_and_files_are_reused_by_name() {
    let server = serve(MockConfig::default()).await;
    let api = openai(&server, None);
    let items = items(3);
    assert_eq!(api.find("shard-a").await.unwrap(), None);
    let id = api.submit("shard-a", &items).await.unwrap();
    // A second submitter (a restarted worker) looks first and finds it.
    assert_eq!(api.find("shard-a").await.unwrap(), Some(id.clone()));
    assert_eq!(api.find("shard-b").await.unwrap(), None);
    let stats = server.stats();
    assert_eq!(stats.batches.batches_by_name.get("shard-a"), Some(&1));
    assert_eq!(stats.batches.batches_created, 1);

    // Submitting the same name again without looking reuses the uploaded file.
    let again = api.submit("shard-a", &items).await.unwrap();
    assert_ne!(again, id);
    let stats = server.stats();
    assert_eq!(
        stats.batches.files_uploaded, 1,
        "the file of the name is reused"
    );
    assert_eq!(stats.batches.batches_by_name.get("shard-a"), Some(&2));
    // find answers the newest batch of the name.
    assert_eq!(api.find("shard-a").await.unwrap(), Some(again.clone()));
    // A different content under another name is a new file.
    api.submit("shard-b", &items[..2]).await.unwrap();
    assert_eq!(server.stats().batches.files_uploaded, 2);

    // Many batches: find pages through the listing (100 a page).
    for i in 0..105 {
        api.submit(&format!("filler-{i}"), &items[..1])
            .await
            .unwrap();
    }
    assert_eq!(api.find("shard-a").await.unwrap(), Some(again));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_items_and_expired_batches_come_back_as_failures_with_reasons() {
    let server = serve(MockConfig {
        batch_item_failure_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let api = openai(&server, None);
    let id = api.submit("all-fail", &items(4)).await.unwrap();
    let status = wait_final(&api, &id).await;
    assert_eq!(
        (status.state, status.completed, status.failed),
        (BatchState::Ended, 0, 4)
    );
    for (custom_id, result) in results(&api, &id).await {
        match result {
            ItemResult::Failed { reason } => {
                assert!(reason.starts_with("500: "), "{custom_id}: {reason}");
                assert!(reason.contains("server_error"), "{reason}");
            }
            other => panic!("{custom_id}: {other:?}"),
        }
    }
    assert_eq!(server.stats().batches.items_failed, 4);
    server.shutdown().await;

    let server = serve(MockConfig {
        batch_expire_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let api = openai(&server, None);
    let items = items(6);
    let id = api.submit("expiring", &items).await.unwrap();
    let status = wait_final(&api, &id).await;
    assert_eq!(
        (status.state, status.completed, status.failed),
        (BatchState::Expired, 3, 3)
    );
    assert!(status.reason.unwrap().contains("expired"));
    let results = results(&api, &id).await;
    let answered: Vec<&str> = results
        .iter()
        .filter(|(_, r)| matches!(r, ItemResult::Answered { .. }))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(answered, ["rec-0", "rec-1", "rec-2"]);
    for (custom_id, result) in &results[3..] {
        assert!(
            matches!(result, ItemResult::Failed { reason } if reason.starts_with("batch_expired")),
            "{custom_id}: {result:?}"
        );
    }
    // An expired batch is still found: its answered items are worth collecting.
    assert_eq!(api.find("expiring").await.unwrap(), Some(id));
    assert_eq!(server.stats().batches.batches_expired, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_batches_use_the_deployment_and_the_api_key_header() {
    let server = serve(keyed(
        "azure-secret",
        MockConfig {
            // Only the deployment is served: a line still naming the model would fail with 404.
            models: vec!["rubrics-deployment".into()],
            ..MockConfig::default()
        },
    ))
    .await;
    let root = origin(&server);
    let target = AzureTarget {
        deployment: "rubrics-deployment".into(),
        api_version: "2024-10-21".into(),
    };
    let api = OpenAiBatch::azure(&endpoint(root.clone(), Some("azure-secret")), &target).unwrap();
    assert_eq!(api.kind(), "azure");
    let items = items(3);
    let id = api.submit("azure-shard", &items).await.unwrap();
    assert_eq!(api.find("azure-shard").await.unwrap(), Some(id.clone()));
    wait_final(&api, &id).await;
    assert_simulated_answers(&results(&api, &id).await, &items);

    // A wrong key is fatal and names the variable to check.
    let wrong = OpenAiBatch::azure(&endpoint(root, Some("wrong")), &target).unwrap();
    let message = fatal(wrong.find("azure-shard").await);
    assert!(names_key_env(&message), "{message}");
    // The OpenAI paths want the key as a bearer token.
    let bearer = openai(&server, Some("azure-secret"));
    assert!(bearer.find("azure-shard").await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_missing_batch_apis_and_huge_uploads_are_refused() {
    let server = serve(keyed(
        "right",
        MockConfig {
            batch_max_bytes: 2048,
            ..MockConfig::default()
        },
    ))
    .await;
    let wrong = openai(&server, Some("wrong"));
    let message = fatal(wrong.submit("n", &items(1)).await);
    assert!(names_key_env(&message), "{message}");
    assert!(message.contains("401"), "{message}");
    // A server without the batch API (here: a path prefix mock-llm does not serve).
    let elsewhere = OpenAiBatch::new(&endpoint(
        format!("http://{}/no-batches/v1", server.addr()),
        Some("right"),
    ))
    .unwrap();
    let message = fatal(elsewhere.find("n").await);
    assert!(message.contains("no batch API"), "{message}");
    let api = openai(&server, Some("right"));
    match api.status("batch_unknown").await {
        Err(LlmError::BadRecord(message)) => {
            assert!(message.contains("batch_unknown"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Over batch_max_bytes: 413, and nothing is stored.
    match api.submit("big", &items(40)).await {
        Err(error) => assert!(error.to_string().contains("413"), "{error}"),
        Ok(id) => panic!("a huge upload was accepted as {id}"),
    }
    let stats = server.stats();
    assert_eq!(
        (stats.batches.files_uploaded, stats.batches.batches_created),
        (0, 0)
    );
    // Bad names and custom ids are refused before anything is sent.
    let mut bad = items(1);
    bad[0].custom_id = "has space".into();
    assert!(matches!(
        api.submit("n", &bad).await,
        Err(LlmError::Fatal(_))
    ));
    server.shutdown().await;
}

fn anthropic(server: &MockServer, key: Option<&str>) -> AnthropicBatch {
    AnthropicBatch::new(&endpoint(origin(server), key)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_message_batch_round_trip_gives_the_simulated_task_answers() {
    let server = serve(keyed(
        "anthropic-secret",
        MockConfig {
            batch_delay_ms: 1500,
            ..MockConfig::default()
        },
    ))
    .await;
    let api = anthropic(&server, Some("anthropic-secret"));
    assert_eq!(api.kind(), "anthropic");
    let items = items(5);
    let name = "job2-stage1-shard0";
    let id = api.submit(name, &items).await.unwrap();
    let status = api.status(&id).await.unwrap();
    assert_eq!((status.state, status.total), (BatchState::InProgress, 5));
    // Anthropic batches cannot be found by name: the caller's own record is the guard.
    assert_eq!(api.find(name).await.unwrap(), None);
    let status = wait_final(&api, &id).await;
    assert_eq!(
        (status.state, status.completed, status.failed),
        (BatchState::Ended, 5, 0)
    );
    let answers = results(&api, &id).await;
    assert_eq!(answers.len(), items.len());
    for item in &items {
        let (_, result) = answers
            .iter()
            .find(|(id, _)| *id == item.custom_id)
            .unwrap_or_else(|| panic!("no result for {}", item.custom_id));
        let ItemResult::Answered { answer } = result else {
            panic!("{}: {result:?}", item.custom_id);
        };
        // The tool input comes back as JSON: the same value the simulated answer holds (for
        // the request without its seed: Anthropic has no sampling seed).
        let got: serde_json::Value = serde_json::from_str(&answer.content).unwrap();
        let unseeded = ChatRequest {
            seed: None,
            ..item.request.clone()
        };
        let expected: serde_json::Value =
            serde_json::from_str(&simulated_answer(&unseeded)).unwrap();
        assert_eq!(got, expected, "{}", item.custom_id);
        assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
    }
    let stats = server.stats();
    let tag = AnthropicBatch::name_tag(name);
    assert_eq!(stats.batches.batches_by_name.get(&tag), Some(&1));
    assert_eq!(stats.batches.items_answered, 5);

    // Expiry, and a wrong key.
    server.shutdown().await;
    let server = serve(MockConfig {
        batch_expire_rate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let api = anthropic(&server, None);
    let id = api.submit("expiring", &items).await.unwrap();
    let status = wait_final(&api, &id).await;
    assert_eq!(
        (status.state, status.completed, status.failed),
        (BatchState::Expired, 2, 3)
    );
    let expired = results(&api, &id)
        .await
        .iter()
        .filter(|(_, r)| matches!(r, ItemResult::Failed { reason } if reason.starts_with("batch_expired")))
        .count();
    assert_eq!(expired, 3);
    server.shutdown().await;

    let server = serve(keyed(
        "right",
        MockConfig {
            batch_item_failure_rate: 1.0,
            ..MockConfig::default()
        },
    ))
    .await;
    let message = fatal(anthropic(&server, Some("wrong")).submit("n", &items).await);
    assert!(names_key_env(&message), "{message}");
    let api = anthropic(&server, Some("right"));
    let id = api.submit("failing", &items[..2]).await.unwrap();
    wait_final(&api, &id).await;
    for (custom_id, result) in results(&api, &id).await {
        assert!(
            matches!(&result, ItemResult::Failed { reason } if reason.starts_with("errored: api_error")),
            "{custom_id}: {result:?}"
        );
    }
    server.shutdown().await;
}

/// Uploads `content` as a batch file with a plain HTTP client; the file's id.
async fn upload_raw(server: &MockServer, content: &str) -> String {
    let boundary = "test-boundary";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"raw.jsonl\"\r\n\r\n\
         {content}\r\n--{boundary}--\r\n"
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let upload = hyper::Request::builder()
        .method(hyper::Method::POST)
        .uri(format!("http://{}/v1/files", server.addr()))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(form)))
        .unwrap();
    let response = client.request(upload).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let file: serde_json::Value = serde_json::from_slice(&body).unwrap();
    file["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_invalid_batches_are_failed_and_not_found_so_the_name_can_be_resubmitted() {
    let server = serve(MockConfig {
        batch_delay_ms: 600_000,
        ..MockConfig::default()
    })
    .await;
    let api = openai(&server, None);
    let http = super::Http::new(&server);
    let id = api.submit("to-cancel", &items(2)).await.unwrap();
    assert_eq!(api.find("to-cancel").await.unwrap(), Some(id.clone()));
    let reply = http
        .send(
            hyper::Method::POST,
            &format!("/v1/batches/{id}/cancel"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.json()["status"], "cancelled");
    let status = api.status(&id).await.unwrap();
    assert_eq!((status.state, status.failed), (BatchState::Failed, 2));
    assert_eq!(api.find("to-cancel").await.unwrap(), None);
    assert!(api.results(&id).await.unwrap().is_empty());
    server.shutdown().await;

    // An input file with a broken line: the batch fails validation, naming the line.
    let server = serve(MockConfig::default()).await;
    let api = openai(&server, None);
    let http = super::Http::new(&server);
    let file_id = upload_raw(
        &server,
        "{\"custom_id\": \"a\", \"method\": \"POST\", \"url\": \"/v1/chat/completions\", \"body\": {\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}}\nnot json",
    )
    .await;
    let create = json!({
        "input_file_id": file_id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h", "metadata": {"rubricmill_batch": "broken"},
    });
    let reply = http
        .send(
            hyper::Method::POST,
            "/v1/batches",
            Some(serde_json::to_vec(&create).unwrap()),
            None,
        )
        .await;
    let broken = reply.ok_json()["id"].as_str().unwrap().to_owned();
    let status = api.status(&broken).await.unwrap();
    assert_eq!(status.state, BatchState::Failed);
    let reason = status.reason.unwrap();
    assert!(
        reason.contains("invalid_json_line") && reason.contains("line 2"),
        "{reason}"
    );
    assert_eq!(api.find("broken").await.unwrap(), None);
    assert!(api.results(&broken).await.unwrap().is_empty());
    server.shutdown().await;
}
