//! Integration tests of mock-llm over real HTTP: a server on a free loopback port, a plain
//! hyper client; `client` runs rubricmill's own HTTP client against it, `providers` its
//! Anthropic and Azure providers and the limits they read from the answers.

mod batch;
mod client;
mod providers;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rubricmill_core::Message;
use rubricmill_core::spec::StructuredOutput;
use rubricmill_llm::simulated::{CRG_TASK, RESEARCHQA_TASK, simulated_answer};
use rubricmill_llm::wire::{WireRequest, WireResponse};
use rubricmill_llm::{ChatRequest, EndpointConfig, LlmError, ResponseFormat};
use rubricmill_mock_llm::{
    ApiKey, Latency, LogNormalMs, MockConfig, MockServer, Stats, UniformMs, max_in_window,
};
use serde_json::{Value, json};

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn header_u64(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .parse()
            .unwrap()
    }

    /// Fails the test, showing the body, unless the status is 200.
    fn assert_ok(&self) {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
    }

    /// The JSON body of a 200 answer.
    fn ok_json(&self) -> Value {
        self.assert_ok();
        self.json()
    }

    fn completion(&self) -> WireResponse {
        self.assert_ok();
        serde_json::from_slice(&self.body).unwrap()
    }

    fn content(&self) -> String {
        self.completion().choices[0]
            .message
            .content
            .clone()
            .unwrap()
    }

    fn error_code(&self) -> Value {
        self.json()["error"]["code"].clone()
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    root: String,
}

impl Http {
    fn new(server: &MockServer) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            root: format!("http://{}", server.addr()),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Reply {
        self.try_send(method, path, body, key).await.unwrap()
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.root))
            .header("content-type", "application/json");
        if let Some(key) = key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A JSON POST with the given headers (and no others).
    async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.root))
            .header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    async fn chat(&self, body: &Value) -> Reply {
        self.chat_with_key(body, None).await
    }

    async fn chat_with_key(&self, body: &Value, key: Option<&str>) -> Reply {
        self.send(
            Method::POST,
            "/v1/chat/completions",
            Some(serde_json::to_vec(body).unwrap()),
            key,
        )
        .await
    }

    async fn stats(&self, query: &str) -> Stats {
        let reply = self.get(&format!("/stats{query}")).await;
        assert_eq!(reply.status, 200);
        serde_json::from_slice(&reply.body).unwrap()
    }
}

async fn start(config: MockConfig) -> (MockServer, Http) {
    let server = serve(config).await;
    let http = Http::new(&server);
    (server, http)
}

/// A server on a free loopback port.
async fn serve(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

/// `config`, with the server requiring `key`.
fn keyed(key: &str, config: MockConfig) -> MockConfig {
    MockConfig {
        api_key: Some(ApiKey::new(key)),
        ..config
    }
}

/// The variable rubricmill's clients are told the key comes from: an error about a refused key
/// names it (and never the key).
const KEY_ENV: &str = "RUBRICMILL_TEST_KEY";

/// How rubricmill's clients reach `base_url`, with `key` as the value of [`KEY_ENV`].
fn endpoint(base_url: String, key: Option<&str>) -> EndpointConfig {
    EndpointConfig {
        base_url,
        api_key: key.map(str::to_owned),
        api_key_env: Some(KEY_ENV.into()),
        headers: vec![],
        timeout: Duration::from_secs(30),
        max_connections: 4,
        structured_output: StructuredOutput::Auto,
        max_response_bytes: 16 << 20,
    }
}

/// `http://HOST:PORT`, the server without its `/v1`.
fn origin(server: &MockServer) -> String {
    format!("http://{}", server.addr())
}

/// The message of a fatal error; anything else fails the test.
fn fatal<T: std::fmt::Debug>(result: Result<T, LlmError>) -> String {
    match result {
        Err(LlmError::Fatal(message)) => message,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

/// Whether a fatal error's message names the key's variable, [`KEY_ENV`].
fn names_key_env(message: &str) -> bool {
    message.contains(&format!("${KEY_ENV}"))
}

const SECTION_PROMPT: &str = "<max_items>5</max_items>\n<section_heading>3 Methods › 3.2 Retrieval augmentation</section_heading>\n\
    <section_text>Retrieval augmentation grounds generation in retrieved passages. Dense retrieval and sparse retrieval \
    trade recall for latency, and reranking improves precision.</section_text>\n<cited_works>\n[12] Lewis (2020). Retrieval-augmented generation\n</cited_works>";
const CONVERSATION_PROMPT: &str = "<conversation>user: give me a step by step bulleted list for repotting houseplants</conversation>";

fn chat_request(task: Option<&str>, prompt: &str) -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        messages: vec![
            Message::new("system", "You write rubrics."),
            Message::new("user", prompt),
        ],
        temperature: 0.0,
        max_tokens: 2048,
        seed: Some(1),
        response_format: task.map(|name| ResponseFormat {
            name: name.into(),
            schema: json!({"type": "object"}),
        }),
    }
}

fn body_of(request: &ChatRequest, schema_support: bool) -> Value {
    serde_json::to_value(WireRequest::from_request(request, schema_support)).unwrap()
}

fn simple_body() -> Value {
    json!({"model": "test-model", "messages": [{"role": "user", "content": "tell me about sourdough starters"}]})
}

#[tokio::test]
async fn answers_equal_the_simulated_provider_and_are_valid_task_json() {
    let (server, http) = start(MockConfig::default()).await;
    for (task, prompt, key) in [
        (RESEARCHQA_TASK, SECTION_PROMPT, "rubric"),
        (CRG_TASK, CONVERSATION_PROMPT, "items"),
    ] {
        let request = chat_request(Some(task), prompt);
        let reply = http.chat(&body_of(&request, true)).await;
        let completion = reply.completion();
        assert_eq!(completion.object, "chat.completion");
        assert_eq!(completion.model, "test-model");
        assert!(completion.id.starts_with("chatcmpl-"));
        assert!(completion.created > 0);
        assert_eq!(completion.choices.len(), 1);
        assert_eq!(completion.choices[0].finish_reason.as_deref(), Some("stop"));
        let content = completion.choices[0].message.content.clone().unwrap();
        assert_eq!(content, simulated_answer(&request), "task {task}");
        let answer: Value = serde_json::from_str(&content).unwrap();
        assert!(
            answer[key].as_array().is_some_and(|a| !a.is_empty()),
            "{answer}"
        );
        let usage = completion.usage.unwrap();
        let expected_prompt: u64 = request
            .messages
            .iter()
            .map(|m| rubricmill_llm::estimate_tokens(&m.content) + 4)
            .sum();
        assert_eq!(usage.prompt_tokens, expected_prompt);
        assert_eq!(
            usage.completion_tokens,
            rubricmill_llm::estimate_tokens(&content)
        );
        assert_eq!(
            usage.total_tokens,
            usage.prompt_tokens + usage.completion_tokens
        );
    }
    // The researchqa answer keeps the cited work.
    let request = chat_request(Some(RESEARCHQA_TASK), SECTION_PROMPT);
    let answer: Value =
        serde_json::from_str(&http.chat(&body_of(&request, true)).await.content()).unwrap();
    assert!(
        answer["rubric"]
            .as_array()
            .unwrap()
            .iter()
            .any(|item| item["citation"] == "12"),
        "{answer}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn json_mode_answers_valid_task_json() {
    let (server, http) = start(MockConfig {
        no_schema_support: true,
        ..MockConfig::default()
    })
    .await;
    let request = chat_request(Some(CRG_TASK), CONVERSATION_PROMPT);
    let refused = http.chat(&body_of(&request, true)).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["type"], "invalid_request_error");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("json_schema")
    );
    let reply = http.chat(&body_of(&request, false)).await;
    assert_eq!(reply.content(), simulated_answer(&request));
    let researchqa = chat_request(Some(RESEARCHQA_TASK), SECTION_PROMPT);
    let reply = http.chat(&body_of(&researchqa, false)).await;
    assert_eq!(reply.content(), simulated_answer(&researchqa));
    server.shutdown().await;
}

#[tokio::test]
async fn refused_formats_answer_like_llama_cpp_python() {
    let (server, http) = start(MockConfig {
        refuse_json_schema: Some(500),
        ..MockConfig::default()
    })
    .await;
    let request = chat_request(Some(CRG_TASK), CONVERSATION_PROMPT);
    let refused = http.chat(&body_of(&request, true)).await;
    assert_eq!(refused.status, 500);
    assert_eq!(refused.json()["error"]["type"], "internal_server_error");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("response_format") && message.contains("'json_object'"),
        "{message}"
    );
    let reply = http.chat(&body_of(&request, false)).await;
    assert_eq!(
        reply.content(),
        simulated_answer(&request),
        "JSON mode is served"
    );
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        refuse_json_schema: Some(400),
        refuse_json_object: Some(422),
        ..MockConfig::default()
    })
    .await;
    let refused = http.chat(&body_of(&request, true)).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["type"], "invalid_request_error");
    let refused = http.chat(&body_of(&request, false)).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input_value='json_object'")
    );
    assert_eq!(http.chat(&simple_body()).await.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_answers_have_the_size_asked_for_chunked_or_declared() {
    let size = 1_000_000u64;
    for declared in [false, true] {
        let (server, http) = start(MockConfig {
            oversized_body_bytes: Some(size),
            oversized_body_content_length: declared,
            ..MockConfig::default()
        })
        .await;
        let reply = http.chat(&simple_body()).await;
        assert_eq!(reply.body.len() as u64, size);
        assert_eq!(
            reply
                .header("content-length")
                .map(|v| v.parse::<u64>().unwrap()),
            declared.then_some(size)
        );
        assert_eq!(
            reply.header("transfer-encoding"),
            (!declared).then_some("chunked")
        );
        let content = reply.content();
        assert!(content.len() as u64 > size - 1000 && content.trim().is_empty());
        assert_eq!(server.requests()[0].status, 200);
        server.shutdown().await;
    }
}

#[tokio::test]
async fn burst_spent_gives_429_with_retry_after_and_waiting_that_long_succeeds() {
    let (server, http) = start(MockConfig {
        rps: Some(4.0),
        burst: Some(3),
        ..MockConfig::default()
    })
    .await;
    for i in 0..3 {
        let reply = http.chat(&simple_body()).await;
        assert_eq!(reply.status, 200, "request {i} is within the burst");
        // Announced per minute, as providers do: 4 a second is 240 a minute.
        assert_eq!(reply.header_u64("x-ratelimit-limit-requests"), 240);
        assert_eq!(reply.header_u64("x-ratelimit-remaining-requests"), 2 - i);
        assert!(reply.header("x-ratelimit-reset-requests").is_some());
    }
    let limited = http.chat(&simple_body()).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(limited.error_code(), "rate_limit_exceeded");
    let wait_ms = limited.header_u64("retry-after-ms");
    assert!(
        (1..=250).contains(&wait_ms),
        "one request is 250 ms at 4/s, got {wait_ms}"
    );
    assert_eq!(limited.header_u64("retry-after"), wait_ms.div_ceil(1000));
    assert_eq!(limited.header_u64("x-ratelimit-remaining-requests"), 0);
    let reset = limited.header("x-ratelimit-reset-requests").unwrap();
    assert!(reset.ends_with("ms") || reset.ends_with('s'), "{reset}");

    // Refused requests consume nothing: many more 429s, and the first wait still suffices.
    let mut last_wait = wait_ms;
    for _ in 0..5 {
        let again = http.chat(&simple_body()).await;
        assert_eq!(again.status, 429);
        last_wait = again.header_u64("retry-after-ms");
        assert!(last_wait <= wait_ms);
    }
    tokio::time::sleep(Duration::from_millis(last_wait)).await;
    let after = http.chat(&simple_body()).await;
    assert_eq!(
        after.status,
        200,
        "{}",
        String::from_utf8_lossy(&after.body)
    );

    // The server recorded the 429s with their waits.
    let requests = server.requests();
    assert_eq!(requests.len(), 10);
    let limited: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    assert_eq!(limited.len(), 6);
    assert!(
        limited
            .iter()
            .all(|r| r.retry_after_ms.is_some() && r.completion_tokens == 0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn per_minute_request_and_token_limits() {
    // One request's cost, from a server without limits.
    let (probe, http) = start(MockConfig::default()).await;
    let usage = http.chat(&simple_body()).await.completion().usage.unwrap();
    probe.shutdown().await;
    let cost = usage.total_tokens;

    let tpm = u32::try_from(cost * 2 + cost / 2).unwrap();
    let (server, http) = start(MockConfig {
        rpm: Some(100),
        tpm: Some(tpm),
        ..MockConfig::default()
    })
    .await;
    let first = http.chat(&simple_body()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header_u64("x-ratelimit-limit-tokens"), u64::from(tpm));
    assert_eq!(
        first.header_u64("x-ratelimit-remaining-tokens"),
        u64::from(tpm) - cost
    );
    assert_eq!(first.header_u64("x-ratelimit-limit-requests"), 100);
    assert_eq!(first.header_u64("x-ratelimit-remaining-requests"), 99);
    assert_eq!(http.chat(&simple_body()).await.status, 200);
    let limited = http.chat(&simple_body()).await;
    assert_eq!(limited.status, 429);
    // Half a request's tokens are missing: they refill in (cost / 2) × 60 s / tpm.
    let missing = cost - cost / 2;
    let expected_ms = (missing * 60_000).div_ceil(u64::from(tpm));
    let wait_ms = limited.header_u64("retry-after-ms");
    // Less the time the three requests took, during which tokens refilled.
    assert!(
        wait_ms <= expected_ms && wait_ms + 1000 >= expected_ms,
        "wait {wait_ms} ms, expected {expected_ms} ms"
    );
    assert_eq!(limited.header_u64("retry-after"), wait_ms.div_ceil(1000));

    // A request larger than the whole token bucket can never pass.
    let huge = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4 * tpm as usize)}]});
    let too_large = http.chat(&huge).await;
    assert_eq!(too_large.status, 429);
    assert!(
        too_large.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
    assert!(too_large.header("retry-after").is_none());
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        rpm: Some(2),
        ..MockConfig::default()
    })
    .await;
    assert_eq!(http.chat(&simple_body()).await.status, 200);
    assert_eq!(http.chat(&simple_body()).await.status, 200);
    let limited = http.chat(&simple_body()).await;
    assert_eq!(limited.status, 429);
    let wait_ms = limited.header_u64("retry-after-ms");
    assert!((29_000..=30_000).contains(&wait_ms), "{wait_ms}");
    assert_eq!(limited.header_u64("retry-after"), 30);
    server.shutdown().await;
}

#[tokio::test]
async fn each_fault_at_rate_one() {
    let request = chat_request(Some(CRG_TASK), CONVERSATION_PROMPT);
    let body = body_of(&request, true);
    let full = simulated_answer(&request);

    let (server, http) = start(MockConfig {
        fail_500: 1.0,
        ..MockConfig::default()
    })
    .await;
    let reply = http.chat(&body).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"]["type"], "server_error");
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        fail_503: 1.0,
        ..MockConfig::default()
    })
    .await;
    assert_eq!(http.chat(&body).await.status, 503);
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        context_length: 1.0,
        ..MockConfig::default()
    })
    .await;
    let reply = http.chat(&body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.error_code(), "context_length_exceeded");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        malformed_json: 1.0,
        ..MockConfig::default()
    })
    .await;
    let content = http.chat(&body).await.content();
    assert!(
        serde_json::from_str::<Value>(&content).is_err(),
        "{content}"
    );
    assert!(full.starts_with(&content));
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        truncate: 1.0,
        ..MockConfig::default()
    })
    .await;
    let completion = http.chat(&body).await.completion();
    assert_eq!(
        completion.choices[0].finish_reason.as_deref(),
        Some("length")
    );
    let content = completion.choices[0].message.content.clone().unwrap();
    assert!(content.len() < full.len() && full.starts_with(&content));
    server.shutdown().await;

    let (server, http) = start(MockConfig {
        hang: 1.0,
        hang_ms: 300,
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let reply = http.chat(&body).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, 504);
    // A client that gives up first gets nothing in time.
    let timed_out = tokio::time::timeout(Duration::from_millis(100), http.chat(&body)).await;
    assert!(timed_out.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn fault_rates_are_drawn_from_the_seed() {
    let config = MockConfig {
        fail_500: 0.3,
        seed: 42,
        ..MockConfig::default()
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (server, http) = start(config.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..200 {
            statuses.push(http.chat(&simple_body()).await.status);
        }
        server.shutdown().await;
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "the same seed gives the same faults");
    let failures = runs[0].iter().filter(|&&s| s == 500).count();
    assert!(
        (30..=90).contains(&failures),
        "{failures} of 200 at rate 0.3"
    );
    assert!(runs[0].iter().all(|&s| s == 200 || s == 500));
}

#[tokio::test]
async fn api_key_is_required_when_set_and_never_echoed() {
    let key = "sk-mock-secret-123";
    let (server, http) = start(MockConfig {
        api_key: Some(key.parse().unwrap()),
        ..MockConfig::default()
    })
    .await;
    for wrong in [None, Some("sk-other")] {
        let reply = http.chat_with_key(&simple_body(), wrong).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.error_code(), "invalid_api_key");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        assert!(!String::from_utf8_lossy(&reply.body).contains(key));
    }
    assert_eq!(
        http.chat_with_key(&simple_body(), Some(key)).await.status,
        200
    );
    let stats = http.stats("").await;
    assert_eq!(stats.by_status.get(&401), Some(&2));
    server.shutdown().await;
}

/// An unauthenticated request is answered from its headers: the server neither waits for nor
/// keeps its body (a body that never ends still gets its 401), and keeps no body for it.
#[tokio::test]
async fn unauthenticated_bodies_are_neither_read_nor_kept() {
    let key = "sk-mock-secret-123";
    let (server, http) = start(MockConfig {
        api_key: Some(key.parse().unwrap()),
        ..MockConfig::default()
    })
    .await;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    sender
        .send(Ok(Frame::data(Bytes::from_static(b"{\"model\": \"m\", "))))
        .await
        .unwrap();
    let endless = StreamBody::new(Box::pin(futures::stream::unfold(
        receiver,
        |mut receiver| async { receiver.recv().await.map(|frame| (frame, receiver)) },
    )));
    let client = Client::builder(TokioExecutor::new()).build_http::<StreamBody<_>>();
    let request = Request::post(format!("{}/v1/chat/completions", http.root))
        .header("content-type", "application/json")
        .body(endless)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("a 401 must not wait for the body")
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    drop(sender);

    let large = serde_json::json!({
        "model": "m",
        "messages": [{"role": "user", "content": "x".repeat(4 << 20)}],
    });
    for _ in 0..5 {
        assert_eq!(
            http.chat_with_key(&large, Some("sk-wrong")).await.status,
            401
        );
    }
    assert_eq!(
        http.chat_with_key(&simple_body(), Some(key)).await.status,
        200
    );
    let kept = server.requests();
    assert_eq!(
        kept.len(),
        1,
        "only the authenticated request keeps its body"
    );
    assert_eq!(kept[0].status, 200);
    assert_eq!(http.stats("").await.by_status.get(&401), Some(&6));
    server.shutdown().await;
}

#[tokio::test]
async fn models_are_listed_and_checked() {
    let (server, http) = start(MockConfig {
        models: vec!["alpha".into(), "beta".into()],
        ..MockConfig::default()
    })
    .await;
    let listed = http.get("/v1/models").await;
    assert_eq!(listed.status, 200);
    let listed = listed.json();
    assert_eq!(listed["object"], "list");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["object"] == "model")
    );

    let unknown = http.chat(&simple_body()).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "model_not_found");
    let mut known = simple_body();
    known["model"] = json!("beta");
    assert_eq!(http.chat(&known).await.status, 200);
    server.shutdown().await;

    let (server, http) = start(MockConfig::default()).await;
    assert_eq!(
        http.get("/v1/models").await.json()["data"][0]["id"],
        "mock-llm"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_health_and_unknown_paths() {
    let (server, http) = start(MockConfig::default()).await;
    let reply = http
        .send(
            Method::POST,
            "/v1/chat/completions",
            Some(b"{not json".to_vec()),
            None,
        )
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("parse")
    );
    let reply = http.chat(&json!({"model": "m", "messages": []})).await;
    assert_eq!(reply.status, 400);
    let reply = http
        .chat(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(reply.status, 400, "a request without a model is refused");
    assert_eq!(http.get("/health").await.status, 200);
    assert_eq!(http.get("/v2/nothing").await.status, 404);
    assert_eq!(http.get("/v1/chat/completions").await.status, 405);
    assert_eq!(http.get("/stats?window_ms=abc").await.status, 400);
    let stats = http.stats("").await;
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.by_status.get(&400), Some(&3));
    // Bodies that did not parse are counted but not recorded.
    assert_eq!(server.requests().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_tokens_concurrency_and_window_maxima() {
    let (server, http) = start(MockConfig {
        rps: Some(1.0),
        burst: Some(5),
        latency: Latency {
            fixed_ms: Some(200),
            ..Latency::default()
        },
        ..MockConfig::default()
    })
    .await;
    let body = simple_body();
    let replies = futures::future::join_all((0..8).map(|_| http.chat(&body))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5);
    assert_eq!(replies.iter().filter(|r| r.status == 429).count(), 3);
    let tokens: u64 = replies
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.completion().usage.unwrap())
        .map(|u| u.prompt_tokens + u.completion_tokens)
        .sum();

    let stats = http.stats("?window_ms=60000").await;
    assert_eq!(stats.requests, 8);
    assert_eq!(stats.by_status.get(&200), Some(&5));
    assert_eq!(stats.by_status.get(&429), Some(&3));
    assert_eq!(stats.prompt_tokens + stats.completion_tokens, tokens);
    assert!(
        stats.peak_concurrency >= 2,
        "five answers of 200 ms overlap: {stats:?}"
    );
    assert_eq!(stats.in_flight, 0);
    assert!(stats.requests_per_second > 0.0 && stats.elapsed_s > 0.0);
    assert_eq!(stats.recorded, 8);
    let window = stats.window.unwrap();
    assert_eq!(
        (window.window_ms, window.ok_requests, window.all_requests),
        (60_000, 5, 8)
    );
    assert_eq!(window.ok_tokens, tokens);

    let requests = server.requests();
    assert_eq!(
        max_in_window(&requests, Duration::from_secs(60), |s| s == 200),
        (5, tokens)
    );
    assert_eq!(
        max_in_window(&requests, Duration::from_secs(60), |_| true).0,
        8
    );
    assert!(requests.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(server.stats().requests, 8);
    server.shutdown().await;
}

#[tokio::test]
async fn latency_is_applied() {
    let cases = [
        (
            Latency {
                fixed_ms: Some(150),
                ..Latency::default()
            },
            150,
        ),
        (
            Latency {
                uniform_ms: Some(UniformMs {
                    min_ms: 100,
                    max_ms: 120,
                }),
                ..Latency::default()
            },
            100,
        ),
        (
            Latency {
                lognormal: Some(LogNormalMs {
                    median_ms: 80.0,
                    sigma: 0.0,
                }),
                ..Latency::default()
            },
            80,
        ),
    ];
    for (latency, at_least_ms) in cases {
        let (server, http) = start(MockConfig {
            latency: latency.clone(),
            ..MockConfig::default()
        })
        .await;
        let started = Instant::now();
        assert_eq!(http.chat(&simple_body()).await.status, 200);
        assert!(
            started.elapsed() >= Duration::from_millis(at_least_ms),
            "{latency:?}"
        );
        server.shutdown().await;
    }

    let (server, http) = start(MockConfig {
        latency: Latency {
            per_output_token_ms: 20.0,
            ..Latency::default()
        },
        ..MockConfig::default()
    })
    .await;
    let started = Instant::now();
    let completion = http.chat(&simple_body()).await.completion();
    let tokens = completion.usage.unwrap().completion_tokens;
    assert!(tokens > 0);
    assert!(
        started.elapsed() >= Duration::from_millis(20 * tokens),
        "{tokens} tokens at 20 ms"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_cuts_off_hanging_requests_and_closes_the_port() {
    let (server, http) = start(MockConfig {
        hang: 1.0,
        ..MockConfig::default()
    })
    .await;
    let addr = server.addr();
    assert!(server.base_url().ends_with("/v1"));
    let hanging = tokio::spawn(async move {
        let body = serde_json::to_vec(&simple_body()).unwrap();
        http.try_send(Method::POST, "/v1/chat/completions", Some(body), None)
            .await
            .map(|r| r.status)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    // The hang (600 s by default) was cut off: the client sees its connection closed.
    assert!(hanging.await.unwrap().is_err());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn a_client_that_gives_up_is_recorded_as_499() {
    let (server, http) = start(MockConfig {
        hang: 1.0,
        ..MockConfig::default()
    })
    .await;
    let gave_up = tokio::time::timeout(Duration::from_millis(100), http.chat(&simple_body())).await;
    assert!(gave_up.is_err());
    drop(http);
    let mut stats = server.stats();
    for _ in 0..100 {
        if stats.requests > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stats = server.stats();
    }
    assert_eq!(stats.by_status.get(&499), Some(&1), "{stats:?}");
    assert_eq!(stats.in_flight, 0);
    assert_eq!(server.requests()[0].status, 499);
    server.shutdown().await;
}
