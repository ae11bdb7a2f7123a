//! rubricmill's OpenAI-compatible client ([`OpenAiProvider`]) against mock-llm over real HTTP,
//! with the mock acting like real servers: refusing a structured-output mode with the status
//! they use (llama-cpp-python answers 500), or sending a runaway answer.

use std::time::Duration;

use rubricmill_core::Message;
use rubricmill_core::spec::StructuredOutput;
use rubricmill_llm::simulated::CRG_TASK;
use rubricmill_llm::wire::WireResponseFormat;
use rubricmill_llm::{
    ChatProvider, ChatRequest, EndpointConfig, LlmError, OpenAiProvider, ResponseFormat,
};
use rubricmill_mock_llm::{MockConfig, MockServer, RecordedRequest};
use serde_json::json;

fn provider(
    server: &MockServer,
    setting: StructuredOutput,
    max_response_bytes: u64,
) -> OpenAiProvider {
    OpenAiProvider::new(EndpointConfig {
        base_url: server.base_url(),
        api_key: None,
        api_key_env: None,
        headers: vec![],
        timeout: Duration::from_secs(30),
        max_connections: 16,
        structured_output: setting,
        max_response_bytes,
    })
    .unwrap()
}

/// A crg generation request whose schema meets OpenAI's strict rules, as the pipeline's does.
pub(crate) fn request(i: usize) -> ChatRequest {
    ChatRequest {
        model: "mock-model".into(),
        messages: vec![
            Message::new("system", "You write rubrics. Answer with JSON."),
            Message::new(
                "user",
                format!("<conversation>user: question {i}: how do I repot a fern?</conversation>"),
            ),
        ],
        temperature: 0.0,
        max_tokens: 1024,
        seed: Some(i as u64),
        response_format: Some(ResponseFormat {
            name: CRG_TASK.into(),
            schema: closed_schema(),
        }),
    }
}

fn closed_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["text", "kind"],
            "properties": {
                "text": {"type": "string"},
                "kind": {"type": "string", "enum": ["hard_rule", "principle"]}
            }
        }}}
    })
}

/// `calls` requests at once: each is sent in the endpoint's mode of the moment it is first
/// polled, so all go out before any refusal comes back.
async fn chat_all(
    provider: &OpenAiProvider,
    calls: usize,
) -> Vec<Result<rubricmill_llm::ChatResponse, LlmError>> {
    let requests: Vec<ChatRequest> = (0..calls).map(request).collect();
    futures::future::join_all(requests.iter().map(|r| provider.chat(r))).await
}

/// The structured-output mode a recorded request was sent in.
fn mode_of(request: &RecordedRequest) -> &'static str {
    match &request.body.response_format {
        Some(WireResponseFormat::JsonSchema { .. }) => "json_schema",
        Some(WireResponseFormat::JsonObject) => "json_object",
        Some(WireResponseFormat::Text) => "text",
        None => "none",
    }
}

fn count(requests: &[RecordedRequest], mode: &str, status: u16) -> usize {
    requests
        .iter()
        .filter(|r| mode_of(r) == mode && r.status == status)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refusals_of_json_schema_with_500_settle_on_json_mode_without_a_retry_storm() {
    let server = MockServer::start(MockConfig {
        refuse_json_schema: Some(500),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&server, StructuredOutput::Auto, 16 << 20);
    assert_eq!(provider.structured_output(), Some("json_schema"));
    let calls = 16;
    let answers = chat_all(&provider, calls).await;
    for (i, answer) in answers.iter().enumerate() {
        let answer = answer
            .as_ref()
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        let value: serde_json::Value = serde_json::from_str(&answer.content).unwrap();
        assert!(value["items"].is_array(), "call {i}: {value}");
    }
    assert_eq!(
        provider.structured_output(),
        Some("json_object"),
        "JSON mode works on this server: it must not be skipped"
    );
    let requests = server.requests();
    let refused = count(&requests, "json_schema", 500);
    assert!(
        (1..=calls).contains(&refused),
        "{refused} refusals of json_schema"
    );
    assert_eq!(count(&requests, "json_object", 200), calls);
    assert_eq!(
        requests.len(),
        refused + calls,
        "each call is refused at most once, then answered: no retries, no other modes"
    );
    // Later calls go straight to JSON mode.
    provider.chat(&request(99)).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), refused + calls + 1);
    assert_eq!(mode_of(requests.last().unwrap()), "json_object");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_400_refusals_step_one_mode_at_a_time() {
    // A server without json_schema that answers 400, as the client always handled: concurrent
    // refusals must still step once.
    let server = MockServer::start(MockConfig {
        no_schema_support: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&server, StructuredOutput::Auto, 16 << 20);
    let answers = chat_all(&provider, 8).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(provider.structured_output(), Some("json_object"));
    let requests = server.requests();
    assert_eq!(
        count(&requests, "none", 200),
        0,
        "nothing fell to plain instructions"
    );
    assert_eq!(count(&requests, "json_object", 200), 8);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refusing_both_formats_gets_plain_instructions() {
    let server = MockServer::start(MockConfig {
        refuse_json_schema: Some(500),
        refuse_json_object: Some(422),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&server, StructuredOutput::Auto, 16 << 20);
    let calls = 8;
    let answers = chat_all(&provider, calls).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(provider.structured_output(), Some("none"));
    let requests = server.requests();
    let schema_refused = count(&requests, "json_schema", 500);
    let object_refused = count(&requests, "json_object", 422);
    assert!((1..=calls).contains(&schema_refused));
    assert!(object_refused <= calls);
    assert_eq!(count(&requests, "none", 200), calls);
    assert_eq!(requests.len(), schema_refused + object_refused + calls);
    server.shutdown().await;
}

#[tokio::test]
async fn a_fixed_mode_the_server_refuses_is_fatal_and_names_the_setting() {
    let server = MockServer::start(MockConfig {
        refuse_json_schema: Some(500),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let fixed = provider(&server, StructuredOutput::JsonSchema, 16 << 20);
    match fixed.chat(&request(0)).await {
        Err(LlmError::Fatal(message)) => {
            assert!(message.contains("llm.structured_output"), "{message}");
            assert!(
                message.contains("response_format.type"),
                "the server's words are kept: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fixed.structured_output(),
        Some("json_schema"),
        "it never steps"
    );
    assert_eq!(server.requests().len(), 1, "nothing is sent again");
    // JSON mode, fixed, is what this server serves.
    let json_mode = provider(&server, StructuredOutput::JsonObject, 16 << 20);
    json_mode.chat(&request(1)).await.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (mode_of(&requests[1]), requests[1].status),
        ("json_object", 200)
    );
    // And `none` sends no response format at all.
    let plain = provider(&server, StructuredOutput::None, 16 << 20);
    plain.chat(&request(2)).await.unwrap();
    assert_eq!(mode_of(&server.requests()[2]), "none");
    server.shutdown().await;
}

#[tokio::test]
async fn strict_is_sent_only_with_schemas_strict_mode_accepts() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let provider = provider(&server, StructuredOutput::Auto, 16 << 20);
    provider.chat(&request(0)).await.unwrap();
    let mut open = request(1);
    open.response_format.as_mut().unwrap().schema = json!({
        "type": "object",
        "required": ["preferred"],
        "properties": {"preferred": {"type": "string"}, "reason": {"type": "string"}}
    });
    provider.chat(&open).await.unwrap();
    let strict: Vec<Option<bool>> = server
        .requests()
        .iter()
        .map(|r| match &r.body.response_format {
            Some(WireResponseFormat::JsonSchema { json_schema }) => json_schema.strict,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(strict, [Some(true), None]);
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_answer_is_a_retryable_error_naming_max_response_mb() {
    for declared in [false, true] {
        let server = MockServer::start(MockConfig {
            oversized_body_bytes: Some(64 << 20),
            oversized_body_content_length: declared,
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let provider = provider(&server, StructuredOutput::Auto, 1 << 20);
        match provider.chat(&request(0)).await {
            Err(LlmError::Retryable {
                reason, throttled, ..
            }) => {
                assert!(!throttled);
                assert!(
                    reason.contains("llm.max_response_mb (1 MiB)"),
                    "declared {declared}: {reason}"
                );
                assert_eq!(reason.contains("Content-Length"), declared, "{reason}");
            }
            other => panic!("declared {declared}: {other:?}"),
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "the answer was sent and refused once");
        assert_eq!(requests[0].status, 200);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_large_answer_within_the_limit_is_read_in_chunks() {
    let server = MockServer::start(MockConfig {
        oversized_body_bytes: Some(3 << 20),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let provider = provider(&server, StructuredOutput::Auto, 4 << 20);
    let answer = provider.chat(&request(0)).await.unwrap();
    assert!(
        answer.content.len() > (3 << 20) - 4096,
        "{}",
        answer.content.len()
    );
    assert!(answer.content.bytes().all(|b| b == b' '));
    server.shutdown().await;
}
