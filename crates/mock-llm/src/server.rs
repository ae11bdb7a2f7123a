//! The HTTP side of the mock server: routing (one axum fallback handler on rubricmill's shared
//! serving path, `rubricmill-http`: HTTP/1.1 keep-alive, graceful stop), and the chat
//! completion handler that checks auth, model and schema support, answers through
//! [`rubricmill_llm::simulated::simulated_answer`], enforces the rate limits, injects faults
//! and waits out the configured latency. The chat path ([`respond`]) serves the OpenAI route,
//! Azure's deployment route (`api-version` required, key in `api-key`) and, translated by the
//! `anthropic` module, Anthropic's `/v1/messages`.
//!
//! A chat request goes through, in order: 401 (api key) → 400 (body, empty messages) → 404
//! (model) → the refusal of its response format (`refuse_json_schema` / `refuse_json_object`
//! with their status and a llama-cpp-python style validation error, or 400 to json_schema
//! without schema support) → 429 (rate limits, answered at once, charging nothing) → the fault
//! draw (hang: `hang_ms` then 504) → latency → 500 / 503 / 400 context length, or the answer
//! (cut for malformed JSON and truncation; cut at `max_tokens` with finish_reason "length" when
//! the answer is longer; replaced by a streamed completion of `oversized_body_bytes` when set).
//! Admitted requests are charged prompt tokens plus the completion tokens of the content
//! actually returned (0 for errors).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use rubricmill_http::axum::Router;
use rubricmill_http::axum::extract::{ConnectInfo, State as Shared};
use rubricmill_http::{HttpServer, ServeOptions};
use rubricmill_llm::ResponseFormat;
use rubricmill_llm::estimate_tokens;
use rubricmill_llm::simulated::{
    CRG_JUDGE_TASK, CRG_TASK, NUGGETS_SUPPORT_TASK, NUGGETS_TASK, REFERENCE_DEGRADE_TASK,
    REFERENCE_TASK, RESEARCHQA_TASK, RUBRIC_GRADE_TASK, SCORE_RESPOND_TASK, SimulatedOptions,
    simulated_answer_with,
};
use rubricmill_llm::wire::{
    WireChoice, WireError, WireErrorBody, WireRequest, WireResponse, WireResponseFormat,
    WireResponseMessage, WireUsage,
};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{debug, info};

use crate::anthropic::{PromptCache, messages};
use crate::batches::{self, BatchStore};
use crate::config::MockConfig;
use crate::faults::{Draws, Fault, FaultPlan};
use crate::limits::{Limiter, Verdict, ratelimit_headers, retry_after_values};
use crate::stats::{Counters, RecordedRequest, Recorder, Stats};

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Context window claimed by the context-length fault.
pub(crate) const CONTEXT_WINDOW: u64 = 8192;
/// How long shutdown waits for requests in flight before cutting them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Model listed by `/v1/models` when any model is accepted.
const DEFAULT_MODEL: &str = "mock-llm";

/// Every answer is whole in memory but oversized ones, which are streamed.
pub(crate) type Body = Either<Full<Bytes>, Padded>;
/// A request as the serving path hands it over.
pub(crate) type IncomingRequest = Request<rubricmill_http::axum::body::Body>;

/// A running mock server. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    server: HttpServer,
}

impl MockServer {
    /// Binds, starts serving on the current tokio runtime and returns at once.
    pub async fn start(config: MockConfig) -> std::io::Result<MockServer> {
        config
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
        let state = Arc::new(State::new(config));
        let options = ServeOptions {
            grace: SHUTDOWN_GRACE,
            on_accept: Some({
                let state = Arc::clone(&state);
                Arc::new(move |_peer| {
                    state.counters.connections.fetch_add(1, Ordering::Relaxed);
                })
            }),
        };
        let server =
            HttpServer::serve_with(listener, "mock-llm", router(Arc::clone(&state)), options)
                .map_err(std::io::Error::other)?;
        let addr = server.local_addr();
        info!(%addr, "mock-llm started");
        Ok(MockServer {
            addr,
            state,
            server,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT/v1`, with a loopback host when the server listens on every address.
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        format!("http://{addr}/v1")
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Every recorded chat request so far, by arrival time.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.recorder.all()
    }

    /// Stops accepting, lets requests in flight finish for up to a second, then cuts off the
    /// rest (hanging requests among them) and returns.
    pub async fn shutdown(self) {
        self.shutdown_with_stats().await;
    }

    /// [`shutdown`](Self::shutdown), then the final counters (requests cut off count as 499).
    pub(crate) async fn shutdown_with_stats(self) -> Stats {
        let MockServer {
            addr,
            state,
            server,
        } = self;
        server.shutdown().await;
        info!(%addr, "mock-llm stopped");
        state.stats()
    }
}

/// What every connection shares.
pub(crate) struct State {
    pub(crate) config: MockConfig,
    started: Instant,
    limiter: Option<Mutex<Limiter>>,
    pub(crate) faults: FaultPlan,
    pub(crate) draws: Draws,
    pub(crate) counters: Counters,
    recorder: Recorder,
    pub(crate) next_id: AtomicU64,
    /// Files and batches of the batch endpoints.
    pub(crate) batches: BatchStore,
    /// System prompts the Messages endpoint has seen with `cache_control`, for cache usage.
    pub(crate) prompt_cache: PromptCache,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            started: Instant::now(),
            limiter: Limiter::from_config(&config).map(Mutex::new),
            faults: FaultPlan::from_config(&config),
            draws: Draws::new(config.seed),
            counters: Counters::new(),
            recorder: Recorder::new(config.record_limit, config.record_body_bytes),
            next_id: AtomicU64::new(1),
            batches: BatchStore::default(),
            prompt_cache: PromptCache::default(),
            config,
        }
    }

    fn stats(&self) -> Stats {
        let mut stats = self
            .counters
            .snapshot(self.started.elapsed(), self.recorder.kept());
        stats.batches = self.batches.stats();
        stats
    }
}

/// Every path goes to [`route`], which answers unknown ones and wrong methods itself.
fn router(state: Arc<State>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    Shared(state): Shared<Arc<State>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: IncomingRequest,
) -> Response<rubricmill_http::axum::body::Body> {
    // Requests are recorded in shards by connection, so that connections rarely share a lock.
    let shard = usize::from(peer.port());
    route(&state, shard, request)
        .await
        .map(rubricmill_http::axum::body::Body::new)
}

async fn route(state: &Arc<State>, shard: usize, request: IncomingRequest) -> Response<Body> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::POST, "/v1/chat/completions" | "/chat/completions") => {
            let mut call = Call::begin(state, shard);
            let response = chat(state, &mut call, request, KeyHeader::Bearer).await;
            call.status = response.status().as_u16();
            response
        }
        (&Method::POST, "/v1/messages" | "/messages") => {
            let mut call = Call::begin(state, shard);
            let response = messages(state, &mut call, request).await;
            call.status = response.status().as_u16();
            response
        }
        (&Method::POST, path) if azure_deployment(path).is_some() => {
            let mut call = Call::begin(state, shard);
            let response = match api_version(request.uri().query()) {
                Some(_) => chat(state, &mut call, request, KeyHeader::ApiKey).await,
                None => error_response(
                    StatusCode::BAD_REQUEST,
                    "Missing required query parameter 'api-version'.".into(),
                    "invalid_request_error",
                    Some("missing_api_version"),
                ),
            };
            call.status = response.status().as_u16();
            response
        }
        (&Method::GET, "/v1/models" | "/models") => models(state),
        (&Method::GET, "/stats") => stats(state, request.uri().query()).await,
        (&Method::GET, "/health") => json_response(StatusCode::OK, br#"{"status":"ok"}"#.to_vec()),
        (
            _,
            "/v1/chat/completions"
            | "/chat/completions"
            | "/v1/messages"
            | "/messages"
            | "/v1/models"
            | "/models"
            | "/stats"
            | "/health",
        ) => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {} is not allowed on {path}", request.method()),
            "invalid_request_error",
            Some("method_not_allowed"),
        ),
        _ if batches::serves(path) => batches::route(state, request).await,
        _ => error_response(
            StatusCode::NOT_FOUND,
            format!("unknown path {path}"),
            "invalid_request_error",
            Some("not_found"),
        ),
    }
}

/// The deployment of an Azure OpenAI chat path, `/openai/deployments/{deployment}/chat/completions`.
fn azure_deployment(path: &str) -> Option<&str> {
    let deployment = path
        .strip_prefix("/openai/deployments/")?
        .strip_suffix("/chat/completions")?;
    (!deployment.is_empty() && !deployment.contains('/')).then_some(deployment)
}

/// The non-empty `api-version` of a query string.
fn api_version(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, value)| *name == "api-version" && !value.is_empty())
        .map(|(_, value)| value)
}

/// One chat request in flight. Dropping it counts and records the request, also when the
/// client went away mid-answer (the handler future is dropped then; status stays 499).
pub(crate) struct Call<'a> {
    state: &'a State,
    shard: usize,
    pub(crate) at: Duration,
    pub(crate) status: u16,
    pub(crate) body: Option<WireRequest>,
    /// Size of the body on the wire.
    pub(crate) body_len: u64,
    pub(crate) prompt_tokens: u64,
    completion_tokens: u64,
    retry_after_ms: Option<u64>,
}

impl<'a> Call<'a> {
    pub(crate) fn begin(state: &'a State, shard: usize) -> Self {
        let at = state.started.elapsed();
        state.counters.begin(at);
        Self {
            state,
            shard,
            at,
            status: 499,
            body: None,
            body_len: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            retry_after_ms: None,
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        let done = self.state.started.elapsed();
        self.state.counters.finish(
            done,
            self.status,
            self.prompt_tokens,
            self.completion_tokens,
        );
        debug!(
            status = self.status,
            at_ms = self.at.as_millis() as u64,
            "mock-llm answered"
        );
        if let Some(body) = self.body.take() {
            self.state.recorder.push(
                self.shard,
                RecordedRequest {
                    at: self.at,
                    status: self.status,
                    body,
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: self.completion_tokens,
                    retry_after_ms: self.retry_after_ms,
                },
                self.body_len,
            );
        }
    }
}

/// Prompt tokens as the simulated provider counts them: about four characters a token, plus
/// four tokens of framing per message.
pub(crate) fn prompt_tokens(request: &WireRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| estimate_tokens(&m.content) + 4)
        .sum()
}

async fn chat(
    state: &State,
    call: &mut Call<'_>,
    request: IncomingRequest,
    key: KeyHeader,
) -> Response<Body> {
    // The key is checked before the body is read: an unauthenticated client costs no memory.
    if !key.accepts(state, request.headers()) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key in the mock-llm flags (--api-key or MOCK_LLM_API_KEY).".into(),
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let bytes = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {error}"),
                "invalid_request_error",
                None,
            );
        }
    };
    call.body_len = bytes.len() as u64;
    let parsed = serde_json::from_slice::<WireRequest>(&bytes);
    if let Ok(wire) = &parsed {
        call.prompt_tokens = prompt_tokens(wire);
    }
    let wire = match parsed {
        Ok(wire) => wire,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("We could not parse the JSON body of your request: {error}"),
                "invalid_request_error",
                None,
            );
        }
    };
    call.body = Some(wire);
    respond(state, call).await
}

/// Where a client puts its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyHeader {
    /// `Authorization: Bearer KEY` (OpenAI-compatible).
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
}

impl KeyHeader {
    /// Whether a request's headers carry the configured key (always, without one).
    pub(crate) fn accepts(self, state: &State, headers: &hyper::HeaderMap) -> bool {
        let Some(key) = &state.config.api_key else {
            return true;
        };
        let (name, expected) = match self {
            KeyHeader::Bearer => (
                header::AUTHORIZATION.as_str(),
                format!("Bearer {}", key.expose()),
            ),
            KeyHeader::ApiKey => ("api-key", key.expose().to_owned()),
            KeyHeader::XApiKey => ("x-api-key", key.expose().to_owned()),
        };
        headers
            .get(name)
            .is_some_and(|value| value.as_bytes() == expected.as_bytes())
    }
}

/// Answers the parsed request in `call.body` as a chat completion: model check, response
/// format refusals, rate limits, faults, latency, the answer. Shared by every route that
/// answers chat requests (OpenAI, Azure, and Anthropic Messages, which translates the result).
pub(crate) async fn respond(state: &State, call: &mut Call<'_>) -> Response<Body> {
    let config = &state.config;
    let Some(wire) = call.body.as_ref() else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no request".into(),
            "server_error",
            None,
        );
    };

    if let Err(refused) = check_request(config, wire) {
        return error_response(refused.status, refused.message, refused.kind, refused.code);
    }
    let json_object = match &wire.response_format {
        Some(WireResponseFormat::JsonSchema { .. }) => {
            if let Some(status) = config.refuse_json_schema {
                return format_refusal(status, "json_schema", config.refuse_json_object.is_none());
            }
            if config.no_schema_support {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "response_format type json_schema is not supported by this server; use json_object"
                        .into(),
                    "invalid_request_error",
                    Some("unsupported_response_format"),
                );
            }
            false
        }
        Some(WireResponseFormat::JsonObject) => {
            if let Some(status) = config.refuse_json_object {
                return format_refusal(status, "json_object", false);
            }
            true
        }
        _ => false,
    };

    let [fault_draw, latency_u1, latency_u2] = state.draws.next_uniforms::<3>();
    let fault = state.faults.pick(fault_draw);
    let answer = match fault {
        Fault::Fail500 | Fault::Fail503 | Fault::Hang | Fault::ContextLength => None,
        Fault::None | Fault::MalformedJson | Fault::Truncate => {
            let options = SimulatedOptions {
                judge_error_rate: config.judge_error_rate,
            };
            Some(answer_for(wire, json_object, fault, &options))
        }
    };
    let completion_tokens = answer.as_ref().map_or(0, |a| estimate_tokens(&a.content));

    let mut headers = Vec::new();
    if let Some(limiter) = &state.limiter {
        let decision = limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .check(call.at, call.prompt_tokens + completion_tokens);
        headers = ratelimit_headers(&decision);
        match decision.verdict {
            Verdict::Allowed => {}
            Verdict::Limited(wait) => {
                let (seconds, ms) = retry_after_values(wait);
                call.retry_after_ms = Some(ms);
                headers.push(("retry-after", seconds.to_string()));
                headers.push(("retry-after-ms", ms.to_string()));
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Rate limit reached for {} on the mock server. Please try again in {ms}ms.",
                        wire.model
                    ),
                    "rate_limit_exceeded",
                    Some("rate_limit_exceeded"),
                );
                add_headers(&mut response, &headers);
                return response;
            }
            Verdict::TooLarge { tokens, limit } => {
                let mut response = error_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Request too large for {}: limit {limit} tokens per min, requested {tokens}.",
                        wire.model
                    ),
                    "tokens",
                    Some("rate_limit_exceeded"),
                );
                add_headers(&mut response, &headers);
                return response;
            }
        }
    }

    if fault == Fault::Hang {
        debug!(hang_ms = config.hang_ms, "mock-llm hanging a request");
        tokio::time::sleep(Duration::from_millis(config.hang_ms)).await;
        return error_response(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the mock server hung for {} ms", config.hang_ms),
            "timeout",
            Some("timeout"),
        );
    }
    if !config.latency.is_zero() {
        let delay = config
            .latency
            .sample(latency_u1, latency_u2, completion_tokens);
        tokio::time::sleep(delay).await;
    }

    let mut response = match (fault, answer) {
        (Fault::Fail500, _) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!".into(),
            "server_error",
            None,
        ),
        (Fault::Fail503, _) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is currently overloaded, please try again later.".into(),
            "server_error",
            Some("overloaded"),
        ),
        (Fault::ContextLength, _) => {
            let requested = (call.prompt_tokens + u64::from(wire.to_request().max_tokens))
                .max(CONTEXT_WINDOW + 1);
            error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "This model's maximum context length is {CONTEXT_WINDOW} tokens. However, you requested {requested} tokens. Please reduce the length of the messages or completion."
                ),
                "invalid_request_error",
                Some("context_length_exceeded"),
            )
        }
        (_, Some(answer)) => match config.oversized_body_bytes {
            Some(size) => {
                call.completion_tokens = size / 4;
                oversized_response(
                    state,
                    wire,
                    call.prompt_tokens,
                    size,
                    config.oversized_body_content_length,
                )
            }
            None => {
                call.completion_tokens = completion_tokens;
                completion_response(state, wire, answer, call.prompt_tokens, completion_tokens)
            }
        },
        (_, None) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no answer".into(),
            "server_error",
            None,
        ),
    };
    add_headers(&mut response, &headers);
    response
}

/// Content and finish reason of an answer.
pub(crate) struct Answer {
    pub(crate) content: String,
    pub(crate) finish_reason: &'static str,
}

/// The simulated answer, cut when the fault or `max_tokens` says so.
pub(crate) fn answer_for(
    wire: &WireRequest,
    json_object: bool,
    fault: Fault,
    options: &SimulatedOptions,
) -> Answer {
    let mut request = wire.to_request();
    if json_object && request.response_format.is_none() {
        // JSON mode carries no schema name: recognise the task by the tags of its prompt, as a
        // model would by reading it.
        request.response_format = task_of_prompt(&request).map(|name| ResponseFormat {
            name: name.into(),
            schema: json!({}),
        });
    }
    let mut content = simulated_answer_with(&request, options);
    if json_object
        && serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&content).is_err()
    {
        // JSON mode always answers a JSON object.
        content = json!({ "answer": content }).to_string();
    }
    let half = content.chars().count() / 2;
    match fault {
        Fault::MalformedJson => {
            let mut cut = take_chars(&content, half).to_owned();
            if serde_json::from_str::<serde::de::IgnoredAny>(&cut).is_ok() {
                cut.push_str(" }");
            }
            Answer {
                content: cut,
                finish_reason: "stop",
            }
        }
        Fault::Truncate => Answer {
            content: take_chars(&content, half).to_owned(),
            finish_reason: "length",
        },
        _ => {
            let max_chars =
                usize::try_from(u64::from(request.max_tokens) * 4).unwrap_or(usize::MAX);
            if estimate_tokens(&content) > u64::from(request.max_tokens) {
                Answer {
                    content: take_chars(&content, max_chars).to_owned(),
                    finish_reason: "length",
                }
            } else {
                Answer {
                    content,
                    finish_reason: "stop",
                }
            }
        }
    }
}

/// The task a JSON-mode prompt belongs to, from the tags the task prompts use
/// (`configs/prompts/`): `<rubric_criteria>` grading, `<answer_to_degrade>` degrading,
/// `<claims_to_check>` support checks, `<passages>` with `<question>` nuggets,
/// `<conversation_to_answer>` responses to score, then the researchqa, crg judge, reference and
/// crg prompts.
fn task_of_prompt(request: &rubricmill_llm::ChatRequest) -> Option<&'static str> {
    let has = |tag: &str| request.messages.iter().any(|m| m.content.contains(tag));
    // The newer prompts first, each by the tag only it uses: the degrade prompt also has
    // `<prompt>`, the support check also has `<passages>`.
    if has("<rubric_criteria>") {
        Some(RUBRIC_GRADE_TASK)
    } else if has("<answer_to_degrade>") {
        Some(REFERENCE_DEGRADE_TASK)
    } else if has("<claims_to_check>") {
        Some(NUGGETS_SUPPORT_TASK)
    } else if has("<passages>") && has("<question>") {
        Some(NUGGETS_TASK)
    } else if has("<conversation_to_answer>") {
        Some(SCORE_RESPOND_TASK)
    } else if has("<section_heading>") || has("<section_text>") {
        Some(RESEARCHQA_TASK)
    } else if has("<response_a>") {
        Some(CRG_JUDGE_TASK)
    } else if has("<reference_answer>") {
        Some(REFERENCE_TASK)
    } else if has("<conversation>") {
        Some(CRG_TASK)
    } else {
        None
    }
}

/// The first `count` characters of `text`.
fn take_chars(text: &str, count: usize) -> &str {
    match text.char_indices().nth(count) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn completion_response(
    state: &State,
    wire: &WireRequest,
    answer: Answer,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> Response<Body> {
    let body = completion_body(state, wire, answer, prompt_tokens, completion_tokens);
    match serde_json::to_vec(&body) {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {error}"),
            "server_error",
            None,
        ),
    }
}

/// The chat completion body of an answer (online answers and batch items alike).
pub(crate) fn completion_body(
    state: &State,
    wire: &WireRequest,
    answer: Answer,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> WireResponse {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    WireResponse {
        id: format!("chatcmpl-mock-{id}"),
        object: "chat.completion".into(),
        created,
        model: wire.model.clone(),
        choices: vec![WireChoice {
            index: 0,
            message: WireResponseMessage {
                role: Some("assistant".into()),
                content: Some(answer.content),
                refusal: None,
            },
            finish_reason: Some(answer.finish_reason.into()),
        }],
        usage: Some(WireUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    }
}

/// A completion of `size` bytes (or just over, when `size` is smaller than the JSON around the
/// content) whose content is spaces, streamed a chunk at a time; with `declared`, its length is
/// in Content-Length, otherwise it goes chunked.
fn oversized_response(
    state: &State,
    wire: &WireRequest,
    prompt_tokens: u64,
    size: u64,
    declared: bool,
) -> Response<Body> {
    const MARK: &str = "@@padding@@";
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let completion_tokens = size / 4;
    let body = WireResponse {
        id: format!("chatcmpl-mock-{id}"),
        object: "chat.completion".into(),
        created: 0,
        model: wire.model.clone(),
        choices: vec![WireChoice {
            index: 0,
            message: WireResponseMessage {
                role: Some("assistant".into()),
                content: Some(MARK.into()),
                refusal: None,
            },
            finish_reason: Some("stop".into()),
        }],
        usage: Some(WireUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    };
    let text = serde_json::to_string(&body).unwrap_or_default();
    let Some((head, tail)) = text.split_once(MARK) else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not encode the oversized answer".into(),
            "server_error",
            None,
        );
    };
    let padding = size.saturating_sub((head.len() + tail.len()) as u64);
    let body = Padded {
        head: Some(Bytes::from(head.to_owned())),
        padding,
        tail: Some(Bytes::from(tail.to_owned())),
        declared,
    };
    let mut response = Response::new(Either::Right(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Spaces sent as the padding of oversized answers, a chunk at a time.
static PAD: [u8; 64 * 1024] = [b' '; 64 * 1024];

/// A body streamed as a head, `padding` spaces in chunks of [`PAD`], and a tail, so an answer of
/// any size costs the mock no memory.
#[derive(Debug)]
pub(crate) struct Padded {
    head: Option<Bytes>,
    padding: u64,
    tail: Option<Bytes>,
    /// Whether the size goes in Content-Length (otherwise the body is sent chunked).
    declared: bool,
}

impl Padded {
    fn remaining(&self) -> u64 {
        let len = |part: &Option<Bytes>| part.as_ref().map_or(0, |b| b.len() as u64);
        len(&self.head) + self.padding + len(&self.tail)
    }
}

impl hyper::body::Body for Padded {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        let chunk = if let Some(head) = this.head.take() {
            head
        } else if this.padding > 0 {
            let n = usize::try_from(this.padding.min(PAD.len() as u64)).unwrap_or(PAD.len());
            this.padding -= n as u64;
            Bytes::from_static(&PAD[..n])
        } else if let Some(tail) = this.tail.take() {
            tail
        } else {
            return Poll::Ready(None);
        };
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.declared {
            SizeHint::with_exact(self.remaining())
        } else {
            SizeHint::default()
        }
    }
}

fn models(state: &State) -> Response<Body> {
    let names: Vec<&str> = if state.config.models.is_empty() {
        vec![DEFAULT_MODEL]
    } else {
        state.config.models.iter().map(String::as_str).collect()
    };
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "rubricmill"}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data})
            .to_string()
            .into_bytes(),
    )
}

async fn stats(state: &Arc<State>, query: Option<&str>) -> Response<Body> {
    let mut stats = state.stats();
    let window_ms = query.and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("window_ms="))
            .map(str::parse::<u64>)
    });
    match window_ms {
        None => {}
        Some(Ok(ms)) if ms > 0 => {
            // Sorting millions of records takes longer than an async task may block.
            let state = Arc::clone(state);
            let window = Duration::from_millis(ms);
            match tokio::task::spawn_blocking(move || state.recorder.window_maxima(window)).await {
                Ok(maxima) => stats.window = Some(maxima),
                Err(error) => {
                    return error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("could not compute the window maxima: {error}"),
                        "server_error",
                        None,
                    );
                }
            }
        }
        Some(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "window_ms must be a positive whole number of milliseconds".into(),
                "invalid_request_error",
                None,
            );
        }
    }
    match serde_json::to_vec(&stats) {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(error) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the stats: {error}"),
            "server_error",
            None,
        ),
    }
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A refusal of a response format type (`json_schema`, `json_object`) as llama-cpp-python's
/// server words it: the pydantic validation error of its request model, here with the status
/// configured (that server answers 500).
fn format_refusal(status: u16, refused: &str, json_object_served: bool) -> Response<Body> {
    let accepted = if json_object_served {
        "'text' or 'json_object'"
    } else {
        "'text'"
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status.is_server_error() {
        "internal_server_error"
    } else {
        "invalid_request_error"
    };
    error_response(
        status,
        format!(
            "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be {accepted} [type=literal_error, input_value='{refused}', input_type=str]"
        ),
        kind,
        None,
    )
}

/// An OpenAI-style error: `{"error": {"message", "type", "code"}}`.
pub(crate) fn error_response(
    status: StatusCode,
    message: String,
    kind: &str,
    code: Option<&str>,
) -> Response<Body> {
    let body = error_body(message, kind, code);
    let bytes = serde_json::to_vec(&body)
        .unwrap_or_else(|_| b"{\"error\":{\"message\":\"error\"}}".to_vec());
    json_response(status, bytes)
}

/// An error body in OpenAI's form: `{"error": {"message", "type", "code"}}` (`code` null when
/// there is none).
pub(crate) fn error_body(message: String, kind: &str, code: Option<&str>) -> WireErrorBody {
    WireErrorBody {
        error: WireError {
            message,
            kind: Some(kind.into()),
            code: Some(code.map_or(serde_json::Value::Null, |c| {
                serde_json::Value::String(c.into())
            })),
        },
    }
}

/// Why a chat request is refused before any answer is drawn.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
}

/// The checks every chat request passes first, online or as a batch item: at least one message
/// (else 400), and a model the server serves (else 404, as OpenAI words it).
pub(crate) fn check_request(config: &MockConfig, wire: &WireRequest) -> Result<(), Refusal> {
    if wire.messages.is_empty() {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            message: "'messages' must contain at least one message.".into(),
            kind: "invalid_request_error",
            code: None,
        });
    }
    if !config.models.is_empty() && !config.models.contains(&wire.model) {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{}` does not exist or you do not have access to it.",
                wire.model
            ),
            kind: "invalid_request_error",
            code: Some("model_not_found"),
        });
    }
    Ok(())
}

pub(crate) fn add_headers(response: &mut Response<Body>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static(name), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mode_reference_prompts_are_recognised_by_their_tags() {
        // The tags `configs/prompts/reference_generate.md` wraps its inputs in.
        let prompt = "<prompt>\nuser: why do onions make eyes water?\n</prompt>\n\
                      <reference_answer>\n(none given)\n</reference_answer>";
        let request = rubricmill_llm::ChatRequest {
            model: "m".into(),
            messages: vec![rubricmill_core::Message::new("user", prompt)],
            temperature: 0.0,
            max_tokens: 400,
            seed: None,
            response_format: None,
        };
        assert_eq!(task_of_prompt(&request), Some(REFERENCE_TASK));
    }

    fn chat(prompt: &str) -> rubricmill_llm::ChatRequest {
        rubricmill_llm::ChatRequest {
            model: "m".into(),
            messages: vec![rubricmill_core::Message::new("user", prompt)],
            temperature: 0.0,
            max_tokens: 400,
            seed: None,
            response_format: None,
        }
    }

    /// The JSON-mode answer to `prompt` under `options`.
    fn json_mode_answer(prompt: &str, seed: u64, options: &SimulatedOptions) -> serde_json::Value {
        let request = wire(json!({
            "model": "m",
            "messages": [{"role": "user", "content": prompt}],
            "response_format": {"type": "json_object"},
            "seed": seed,
        }));
        serde_json::from_str(&answer_for(&request, true, Fault::None, options).content).unwrap()
    }

    const GRADE_PROMPT: &str = "<conversation_to_grade>\nuser: why does bread rise?\n</conversation_to_grade>\n\
        <rubric_criteria>\n[1] (+8 points) The response names yeast.\n\
        [2] (-6 points) The response makes a factual claim about bread that the evidence contradicts.\n</rubric_criteria>\n\
        <graded_response>\nYeast makes the dough rise.\n</graded_response>";

    #[test]
    fn json_mode_rubric_grade_prompts_are_recognised_and_the_error_rate_flips_verdicts() {
        // The tags `configs/prompts/rubric_grade.md` wraps its inputs in.
        assert_eq!(task_of_prompt(&chat(GRADE_PROMPT)), Some(RUBRIC_GRADE_TASK));
        let met = |rate: f64| {
            let options = SimulatedOptions {
                judge_error_rate: rate,
            };
            let answer = json_mode_answer(GRADE_PROMPT, 3, &options);
            answer["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["met"].as_bool().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(met(0.0), [true, false]);
        assert_eq!(met(1.0), [false, true]);
    }

    #[test]
    fn json_mode_reference_degrade_prompts_are_recognised_before_reference_ones() {
        // The tags `configs/prompts/reference_degrade.md` wraps its inputs in: `<prompt>` as the
        // reference prompt, which must not win.
        let prompt = "<prompt>\nuser: why do onions make eyes water?\n</prompt>\n\
                      <answer_to_degrade>\nCutting onions releases a sulfur compound.\n</answer_to_degrade>";
        assert_eq!(task_of_prompt(&chat(prompt)), Some(REFERENCE_DEGRADE_TASK));
        let answer = json_mode_answer(prompt, 0, &SimulatedOptions::default());
        assert!(
            answer["answer"]
                .as_str()
                .unwrap()
                .contains("contrary to common advice"),
            "{answer}"
        );
    }

    const PASSAGES: &str = "<passages>\n<passage id=\"P1\">\nYeast ferments sugars in dough. It is old.\n</passage>\n\
        <passage id=\"P2\">\nGluten forms an elastic network.\n</passage>\n</passages>";

    #[test]
    fn json_mode_nugget_prompts_are_recognised_by_their_tags() {
        // The tags `configs/prompts/nuggets_generate.md` wraps its inputs in.
        let prompt = format!(
            "Write at most 4.\n<question>\nHow does yeast make dough rise in the oven?\n</question>\n{PASSAGES}"
        );
        assert_eq!(task_of_prompt(&chat(&prompt)), Some(NUGGETS_TASK));
        let answer = json_mode_answer(&prompt, 0, &SimulatedOptions::default());
        let nuggets = answer["nuggets"].as_array().unwrap();
        assert_eq!(nuggets.len(), 2, "{answer}");
        assert_eq!(nuggets[0]["passage_id"], "P1");
        assert_eq!(nuggets[0]["span"], "Yeast ferments sugars in dough.");
        assert_eq!(nuggets[0]["importance"], "vital");
    }

    #[test]
    fn json_mode_nugget_support_prompts_are_recognised_before_nugget_ones() {
        // The tags `configs/prompts/nuggets_support.md` wraps its inputs in: `<passages>` as
        // the nugget prompt.
        let prompt = format!(
            "{PASSAGES}\n<claims_to_check>\n[1] (P1) Yeast ferments sugars in dough.\n\
             [2] (P2) Yeast ferments sugars in dough.\n</claims_to_check>"
        );
        assert_eq!(task_of_prompt(&chat(&prompt)), Some(NUGGETS_SUPPORT_TASK));
        let answer = json_mode_answer(&prompt, 0, &SimulatedOptions::default());
        assert_eq!(
            answer["checks"],
            json!([{"claim": 1, "supported": true}, {"claim": 2, "supported": false}])
        );
    }

    #[test]
    fn json_mode_score_response_prompts_are_recognised_by_their_tags() {
        // The tags `configs/prompts/score_respond.md` wraps its inputs in.
        let prompt = "<conversation_to_answer>\nuser: how should tomato seedlings be hardened off?\n</conversation_to_answer>";
        assert_eq!(task_of_prompt(&chat(prompt)), Some(SCORE_RESPOND_TASK));
        let good = json_mode_answer(prompt, 2, &SimulatedOptions::default());
        assert!(
            good["response"].as_str().unwrap().contains("seedlings"),
            "{good}"
        );
        let poor = json_mode_answer(prompt, 3, &SimulatedOptions::default());
        assert!(
            !poor["response"].as_str().unwrap().contains("seedlings"),
            "{poor}"
        );
    }

    #[test]
    fn json_mode_keeps_recognising_the_older_prompts() {
        let cases = [
            (
                "<section_heading>2 Caching</section_heading>\n<section_text>t</section_text>",
                RESEARCHQA_TASK,
            ),
            (
                "<conversation>c</conversation>\n<rubric>r</rubric>\n<response_a>a</response_a>",
                CRG_JUDGE_TASK,
            ),
            (
                "<prompt>p</prompt>\n<reference_answer>r</reference_answer>",
                REFERENCE_TASK,
            ),
            ("<conversation>user: hi</conversation>", CRG_TASK),
        ];
        for (prompt, task) in cases {
            assert_eq!(task_of_prompt(&chat(prompt)), Some(task), "{prompt}");
        }
        assert_eq!(task_of_prompt(&chat("<question>q</question>")), None);
    }

    fn wire(json: serde_json::Value) -> WireRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn take_chars_respects_char_boundaries() {
        assert_eq!(take_chars("héllo", 2), "hé");
        assert_eq!(take_chars("hé", 5), "hé");
        assert_eq!(take_chars("", 0), "");
    }

    #[test]
    fn malformed_and_truncated_answers_are_cut() {
        let request = wire(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "<conversation>user: a bulleted list of sauces</conversation>"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": CRG_TASK, "schema": {}}},
        }));
        let full = answer_for(&request, false, Fault::None, &SimulatedOptions::default());
        assert_eq!(full.finish_reason, "stop");
        assert!(serde_json::from_str::<serde_json::Value>(&full.content).is_ok());
        let malformed = answer_for(
            &request,
            false,
            Fault::MalformedJson,
            &SimulatedOptions::default(),
        );
        assert!(serde_json::from_str::<serde_json::Value>(&malformed.content).is_err());
        assert!(full.content.starts_with(&malformed.content));
        let truncated = answer_for(
            &request,
            false,
            Fault::Truncate,
            &SimulatedOptions::default(),
        );
        assert_eq!(truncated.finish_reason, "length");
        assert!(
            full.content.starts_with(&truncated.content)
                && truncated.content.len() < full.content.len()
        );
    }

    #[test]
    fn json_mode_recognises_the_task_and_always_answers_an_object() {
        let crg = wire(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "<conversation>user: how do I boil an egg</conversation>"}],
            "response_format": {"type": "json_object"},
        }));
        let answer: serde_json::Value = serde_json::from_str(
            &answer_for(&crg, true, Fault::None, &SimulatedOptions::default()).content,
        )
        .unwrap();
        assert!(answer["items"].is_array(), "{answer}");
        let plain = wire(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "tell me about sourdough starters"}],
            "response_format": {"type": "json_object"},
        }));
        let answer: serde_json::Value = serde_json::from_str(
            &answer_for(&plain, true, Fault::None, &SimulatedOptions::default()).content,
        )
        .unwrap();
        assert!(answer["answer"].as_str().unwrap().contains("sourdough"));
    }

    #[test]
    fn json_mode_recognises_the_crg_judge_and_its_error_rate_applies() {
        let judge = wire(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "<conversation>user: sore throat?</conversation>\n<rubric>1. The response covers “ginger”. [Hard Rule]</rubric>\n<response_a>Try ginger.</response_a>\n<response_b>Nothing.</response_b>"}],
            "response_format": {"type": "json_object"},
            "seed": 3,
        }));
        let preferred = |rate: f64| {
            let options = SimulatedOptions {
                judge_error_rate: rate,
            };
            let answer: serde_json::Value =
                serde_json::from_str(&answer_for(&judge, true, Fault::None, &options).content)
                    .unwrap();
            answer["preferred"].as_str().unwrap().to_owned()
        };
        assert_eq!(preferred(0.0), "A");
        assert_eq!(preferred(1.0), "B");
    }

    #[test]
    fn answers_longer_than_max_tokens_stop_at_length() {
        let request = wire(json!({
            "model": "m",
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "<conversation>user: how do I boil an egg</conversation>"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": CRG_TASK, "schema": {}}},
        }));
        let answer = answer_for(&request, false, Fault::None, &SimulatedOptions::default());
        assert_eq!(answer.finish_reason, "length");
        assert_eq!(answer.content.chars().count(), 12);
    }
}
