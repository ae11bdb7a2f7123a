//! The OpenAI-compatible HTTP provider: one pooled keep-alive client per endpoint, the request
//! in the wire format, and every answer classified as an answer, a retryable failure (with the
//! server's retry hint), a bad record, or a fatal job error. The same provider speaks to Azure
//! OpenAI deployments ([`OpenAiProvider::azure`]: deployment URL, `api-version`, `api-key`
//! header). Every answer's `x-ratelimit-limit-requests` / `-tokens` headers are kept as the
//! endpoint's announced limits ([`ChatProvider::provider_limits`]).
//!
//! Server quirks handled (found across OpenAI, vLLM, SGLang, Ollama, llama.cpp,
//! llama-cpp-python and LiteLLM):
//! - structured output (`llm.structured_output`): `auto` sends `json_schema` first (with
//!   `strict: true` when the schema meets OpenAI's strict rules: every object closed with
//!   `additionalProperties: false` and every property required) and steps down to JSON mode
//!   (`json_object`), then to plain instructions, when the endpoint refuses a mode: any 4xx or
//!   5xx whose error message names the response format (`response_format`, `json_schema`,
//!   `json_object`, "structured output", "response format"), since some servers answer an
//!   unknown format with a 500 validation error (llama-cpp-python) rather than a 400. Each
//!   request remembers the mode it was sent in and steps only from that mode, so concurrent
//!   refusals of one mode step once, and the request is sent again in the current mode. A fixed
//!   mode never steps: its refusal is a fatal error that names `llm.structured_output`. The
//!   schema is always also in the prompt's instructions and the answer is validated locally, so
//!   every mode yields the same rows;
//! - OpenAI reasoning models reject `max_tokens`: a 4xx that names `max_completion_tokens`
//!   switches the endpoint to that parameter (once, also under concurrent refusals);
//! - response bodies, answers and errors alike, are read a chunk at a time and refused (as a
//!   retryable error) as soon as they pass `llm.max_response_mb`, or at once when
//!   `Content-Length` says they will, so a runaway answer cannot exhaust memory;
//! - `usage` may be missing (some llama.cpp and Ollama builds): the gateway estimates it;
//! - `content` may be null with a `refusal`: the record is rejected with the refusal text;
//! - retry hints come as `retry-after-ms`, `Retry-After` (seconds) or OpenAI's
//!   `x-ratelimit-reset-requests` / `-tokens` durations (`1s`, `6m0s`, `20ms`).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use rubricmill_core::spec::StructuredOutput;

use crate::azure::{self, AzureTarget};
use crate::limiter::{AnnouncedLimits, ProviderLimits, header_limit};
use crate::structured::strict_compatible;
use crate::wire::{WireErrorBody, WireRequest, WireResponse, WireResponseFormat};
use crate::{ChatProvider, ChatRequest, ChatResponse, LlmError, TokenUsage};

/// How an endpoint is reached. The API key is the value, read from the environment by the
/// caller; it is sent as a bearer token and never logged or formatted.
#[derive(Clone)]
pub struct EndpointConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    /// Name of the variable the key came from, for messages.
    pub api_key_env: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub max_connections: usize,
    /// How structured answers are asked for (`llm.structured_output`).
    pub structured_output: StructuredOutput,
    /// Largest response body read (`llm.max_response_mb`).
    pub max_response_bytes: u64,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("timeout", &self.timeout)
            .field("structured_output", &self.structured_output)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// How a structured answer is asked for on the wire, in the order `auto` steps through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaMode {
    /// `response_format: {type: json_schema}`.
    JsonSchema = 0,
    /// `response_format: {type: json_object}` (JSON mode).
    JsonObject = 1,
    /// No `response_format`: the prompt's instructions only.
    None = 2,
}

impl SchemaMode {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => SchemaMode::JsonSchema,
            1 => SchemaMode::JsonObject,
            _ => SchemaMode::None,
        }
    }

    /// The mode a setting starts in (`auto` starts at the richest).
    fn initial(setting: StructuredOutput) -> Self {
        match setting {
            StructuredOutput::Auto | StructuredOutput::JsonSchema => SchemaMode::JsonSchema,
            StructuredOutput::JsonObject => SchemaMode::JsonObject,
            StructuredOutput::None => SchemaMode::None,
        }
    }

    /// The mode `auto` steps down to when this one is refused.
    fn next(self) -> Option<Self> {
        match self {
            SchemaMode::JsonSchema => Some(SchemaMode::JsonObject),
            SchemaMode::JsonObject => Some(SchemaMode::None),
            SchemaMode::None => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            SchemaMode::JsonSchema => "json_schema",
            SchemaMode::JsonObject => "json_object",
            SchemaMode::None => "none",
        }
    }
}

/// The form one request was sent in: adaptations step from what the server actually refused,
/// never from what other requests changed in the meantime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Form {
    mode: SchemaMode,
    completion_tokens: bool,
}

/// What an error answer means for the request that got it.
#[derive(Debug)]
enum Adaptation {
    /// The endpoint now takes another form: send the request again.
    Resend,
    /// Every request would get this answer: stop with this error.
    Stop(LlmError),
    /// Not a refusal of the request's form: classify the status as usual.
    NotAForm,
}

/// Sends per call at most: the first, and one more after each adaptation (two schema-mode
/// steps, one token parameter). Forms only ever advance, so this bound is never reached by
/// refusals that adapt.
const MAX_SENDS: usize = 4;

pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    config: EndpointConfig,
    /// `openai` or `azure`.
    kind: &'static str,
    /// The current [`SchemaMode`], as its discriminant.
    schema_mode: AtomicU8,
    /// True once the endpoint asked for `max_completion_tokens`.
    completion_tokens_param: AtomicBool,
    /// The rate limits the endpoint announced (`x-ratelimit-limit-*`).
    limits: AnnouncedLimits,
}

impl OpenAiProvider {
    /// An OpenAI-compatible endpoint: `{base_url}/chat/completions` with a bearer token.
    pub fn new(config: EndpointConfig) -> Result<Self, LlmError> {
        let auth = bearer_auth(&config)?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Self::build(config, url, auth, "openai")
    }

    /// An Azure OpenAI deployment: `config.base_url` is the resource endpoint; the key goes in
    /// the `api-key` header (see [`crate::azure`]).
    pub fn azure(config: EndpointConfig, target: &AzureTarget) -> Result<Self, LlmError> {
        let auth = azure::auth_headers(config.api_key.as_deref(), config.api_key_env.as_deref())?;
        let url = azure::chat_url(&config.base_url, target);
        Self::build(config, url, auth, "azure")
    }

    fn build(
        config: EndpointConfig,
        url: String,
        auth: HeaderMap,
        kind: &'static str,
    ) -> Result<Self, LlmError> {
        let http = http_client(&config, auth)?;
        let mode = SchemaMode::initial(config.structured_output);
        Ok(Self {
            http,
            url,
            config,
            kind,
            schema_mode: AtomicU8::new(mode as u8),
            completion_tokens_param: AtomicBool::new(false),
            limits: AnnouncedLimits::default(),
        })
    }

    fn mode(&self) -> SchemaMode {
        SchemaMode::from_u8(self.schema_mode.load(Ordering::Acquire))
    }

    /// The form the next request is sent in.
    fn form(&self) -> Form {
        Form {
            mode: self.mode(),
            completion_tokens: self.completion_tokens_param.load(Ordering::Acquire),
        }
    }

    fn body(&self, request: &ChatRequest, form: Form) -> WireRequest {
        body_in_form(request, form)
    }

    /// What an error answer to a request sent in `sent` means: a refusal of its form (step to
    /// the next form and resend, or stop when the form is fixed), or anything else.
    fn adapt(&self, sent: Form, status: StatusCode, message: &str, has_format: bool) -> Adaptation {
        if !(status.is_client_error() || status.is_server_error()) {
            return Adaptation::NotAForm;
        }
        let lower = message.to_ascii_lowercase();
        if !sent.completion_tokens
            && status.is_client_error()
            && lower.contains("max_completion_tokens")
        {
            // Only the first of concurrent refusals switches (and says so); all resend.
            if self
                .completion_tokens_param
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::info!(url = %self.url, status = status.as_u16(), "endpoint wants max_completion_tokens, switching");
            }
            return Adaptation::Resend;
        }
        if !has_format || sent.mode == SchemaMode::None || !names_response_format(&lower) {
            return Adaptation::NotAForm;
        }
        if self.config.structured_output != StructuredOutput::Auto {
            let mode = sent.mode.as_str();
            return Adaptation::Stop(LlmError::Fatal(format!(
                "{} refused response_format {mode} ({status}: {message}); llm.structured_output = \"{mode}\" does not fall back: set it to \"auto\" or to a mode this server supports",
                self.url
            )));
        }
        let Some(next) = sent.mode.next() else {
            return Adaptation::NotAForm;
        };
        // Step from the mode this request was sent in only: a refusal of a mode the endpoint
        // already left just resends in the current mode.
        let stepped = self.schema_mode.compare_exchange(
            sent.mode as u8,
            next as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if stepped.is_ok() {
            tracing::info!(
                url = %self.url,
                from = sent.mode.as_str(),
                to = next.as_str(),
                status = status.as_u16(),
                error = ?message,
                "endpoint refused the response format, stepping down"
            );
        }
        Adaptation::Resend
    }

    fn key_hint(&self) -> String {
        key_hint(&self.config)
    }
}

#[async_trait::async_trait]
impl ChatProvider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn provider_limits(&self) -> ProviderLimits {
        self.limits.get()
    }

    fn structured_output(&self) -> Option<&'static str> {
        Some(self.mode().as_str())
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let has_format = request.response_format.is_some();
        for _ in 0..MAX_SENDS {
            let form = self.form();
            let body = serde_json::to_vec(&self.body(request, form)).expect("requests serialize");
            let post = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let response = post.send().await.map_err(|e| transport_error(&e))?;
            let status = response.status();
            self.limits.record(announced_limits(response.headers()));
            let headers = if status.is_success() {
                HeaderMap::new()
            } else {
                response.headers().clone()
            };
            let bytes = read_body(response, self.config.max_response_bytes, &self.url).await?;
            if status.is_success() {
                return parse_answer(&bytes);
            }
            let message = error_message(&bytes);
            match self.adapt(form, status, &message, has_format) {
                Adaptation::Resend => continue,
                Adaptation::Stop(error) => return Err(error),
                Adaptation::NotAForm => {}
            }
            return Err(classify_status(
                status,
                &headers,
                &message,
                &request.model,
                &self.url,
                &self.key_hint(),
            ));
        }
        Err(LlmError::BadRecord(
            "endpoint kept refusing every request form".into(),
        ))
    }
}

/// The wire body of a request in a form: the schema (strict when OpenAI's strict rules allow),
/// JSON mode or instructions only, and the token parameter the endpoint takes.
fn body_in_form(request: &ChatRequest, form: Form) -> WireRequest {
    let mut wire = WireRequest::from_request(request, form.mode == SchemaMode::JsonSchema);
    match form.mode {
        SchemaMode::JsonSchema => {
            if let Some(WireResponseFormat::JsonSchema { json_schema }) = &mut wire.response_format
                && strict_compatible(&json_schema.schema)
            {
                json_schema.strict = Some(true);
            }
        }
        SchemaMode::JsonObject => {}
        SchemaMode::None => wire.response_format = None,
    }
    if form.completion_tokens {
        wire.max_completion_tokens = wire.max_tokens.take();
    }
    wire
}

/// The body the online provider sends first for `request` under `llm.structured_output =
/// setting` (a batch cannot step down a refused form, so it is sent in the first form).
pub(crate) fn initial_body(request: &ChatRequest, setting: StructuredOutput) -> WireRequest {
    body_in_form(
        request,
        Form {
            mode: SchemaMode::initial(setting),
            completion_tokens: false,
        },
    )
}

/// The `Authorization: Bearer KEY` header of OpenAI-compatible endpoints (sensitive, so it is
/// never logged); none without a key.
pub(crate) fn bearer_auth(config: &EndpointConfig) -> Result<HeaderMap, LlmError> {
    let bearer = config.api_key.as_ref().map(|key| format!("Bearer {key}"));
    key_header(
        reqwest::header::AUTHORIZATION,
        bearer.as_deref(),
        config.api_key_env.as_deref(),
    )
}

/// The one header that carries an API key, `name: value`, marked sensitive so it is never
/// logged; none without a key. A key an HTTP header cannot carry is fatal, naming the variable
/// `api_key_env` it came from (never the key). Every provider's key header is built here.
pub(crate) fn key_header(
    name: HeaderName,
    value: Option<&str>,
    api_key_env: Option<&str>,
) -> Result<HeaderMap, LlmError> {
    let mut headers = HeaderMap::new();
    if let Some(value) = value {
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            LlmError::Fatal(format!(
                "the API key in ${} holds characters an HTTP header cannot carry",
                api_key_env.unwrap_or("?")
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The pooled HTTP client of an endpoint: its timeouts, and `llm.headers` plus the key headers
/// `auth` (built by [`bearer_auth`], [`crate::azure::auth_headers`] or
/// [`crate::anthropic::auth_headers`]) as default headers. Online providers and batch clients
/// alike build their client here.
pub(crate) fn http_client(
    config: &EndpointConfig,
    auth: HeaderMap,
) -> Result<reqwest::Client, LlmError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
            LlmError::Fatal(format!("bad header name {name:?} in llm.headers: {e}"))
        })?;
        let value = HeaderValue::from_str(value).map_err(|e| {
            LlmError::Fatal(format!("bad value for header {name} in llm.headers: {e}"))
        })?;
        headers.insert(name, value);
    }
    headers.extend(auth);
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(config.timeout)
        .connect_timeout(Duration::from_secs(10).min(config.timeout))
        .pool_max_idle_per_host(config.max_connections.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| LlmError::Fatal(format!("cannot build the HTTP client: {e}")))
}

/// What to tell the user about a refused key.
pub(crate) fn key_hint(config: &EndpointConfig) -> String {
    match &config.api_key_env {
        Some(var) => format!("check the API key in ${var}"),
        None => "set llm.api_key_env to the variable holding the API key".into(),
    }
}

/// The limits announced in an answer's `x-ratelimit-limit-requests` / `-tokens` headers
/// (OpenAI, Azure OpenAI, and servers that copy them).
pub fn announced_limits(headers: &HeaderMap) -> ProviderLimits {
    ProviderLimits {
        requests_per_minute: header_limit(headers, "x-ratelimit-limit-requests"),
        tokens_per_minute: header_limit(headers, "x-ratelimit-limit-tokens"),
    }
}

/// True when an error message (lowercased) is about the response format.
fn names_response_format(lower: &str) -> bool {
    [
        "response_format",
        "json_schema",
        "json_object",
        "structured output",
        "response format",
    ]
    .iter()
    .any(|name| lower.contains(name))
}

pub(crate) fn transport_error(error: &reqwest::Error) -> LlmError {
    let what = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    LlmError::Retryable {
        reason: format!("{what}: {error}"),
        retry_after: None,
        throttled: error.is_timeout(),
    }
}

/// Reads a response body a chunk at a time, refusing it as soon as it passes `limit` bytes (or
/// at once when `Content-Length` says it will); dropping the response closes the connection.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, LlmError> {
    let status = response.status().as_u16();
    let too_large = |error: LlmError| {
        tracing::warn!(url = %url, status, error = %error, "response body too large, dropping it");
        error
    };
    let mut body = BoundedBody::new(limit, response.content_length()).map_err(too_large)?;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        body.push(&chunk).map_err(too_large)?;
    }
    Ok(body.into_bytes())
}

/// A response body collected up to a limit.
#[derive(Debug)]
struct BoundedBody {
    limit: u64,
    bytes: Vec<u8>,
}

impl BoundedBody {
    /// Refuses a body whose declared length is over the limit before reading any of it.
    fn new(limit: u64, declared: Option<u64>) -> Result<Self, LlmError> {
        if let Some(length) = declared
            && length > limit
        {
            return Err(body_too_large(limit, Some(length)));
        }
        // What the server declared, within the limit; a lying Content-Length costs at most 1 MiB.
        let capacity = declared.unwrap_or(0).min(limit).min(1 << 20);
        Ok(Self {
            limit,
            bytes: Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)),
        })
    }

    fn push(&mut self, chunk: &[u8]) -> Result<(), LlmError> {
        if self.bytes.len() as u64 + chunk.len() as u64 > self.limit {
            return Err(body_too_large(self.limit, None));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn body_too_large(limit: u64, declared: Option<u64>) -> LlmError {
    let limit = match limit % (1 << 20) {
        0 => format!("{} MiB", limit >> 20),
        _ => format!("{limit} bytes"),
    };
    let reason = match declared {
        Some(length) => format!(
            "response body of {length} bytes (Content-Length) is larger than llm.max_response_mb ({limit})"
        ),
        None => format!("response body larger than llm.max_response_mb ({limit})"),
    };
    LlmError::Retryable {
        reason,
        retry_after: None,
        throttled: false,
    }
}

fn parse_answer(bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let answer: WireResponse = serde_json::from_slice(bytes).map_err(|e| LlmError::Retryable {
        reason: format!("unreadable response body: {e}"),
        retry_after: None,
        throttled: false,
    })?;
    answer_from_wire(answer)
}

/// A chat completion as rubricmill sees it: the first choice's content (a refusal or the
/// content filter reject the record), its finish reason and the usage. Online answers and the
/// bodies in batch results files go through this one function.
pub(crate) fn answer_from_wire(answer: WireResponse) -> Result<ChatResponse, LlmError> {
    let Some(choice) = answer.choices.into_iter().next() else {
        return Err(LlmError::Retryable {
            reason: "response has no choices".into(),
            retry_after: None,
            throttled: false,
        });
    };
    let finish_reason = choice.finish_reason.unwrap_or_else(|| "stop".into());
    if finish_reason == "content_filter" {
        return Err(LlmError::BadRecord(
            "the provider's content filter stopped the answer".into(),
        ));
    }
    let content = match (choice.message.content, choice.message.refusal) {
        (Some(content), _) => content,
        (None, Some(refusal)) => {
            return Err(LlmError::BadRecord(format!("the model refused: {refusal}")));
        }
        (None, None) => String::new(),
    };
    let usage = answer.usage.unwrap_or_default();
    Ok(ChatResponse {
        content,
        finish_reason,
        usage: TokenUsage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        },
    })
}

/// The message of an error body (`{"error": {"message", "code"}}`), or its first bytes.
pub(crate) fn error_message(bytes: &[u8]) -> String {
    match serde_json::from_slice::<WireErrorBody>(bytes) {
        Ok(body) => {
            let code = body.error.code.map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| c.to_string())
            });
            match code {
                Some(code) => format!("{} ({code})", body.error.message),
                None => body.error.message,
            }
        }
        Err(_) => String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            .trim()
            .to_owned(),
    }
}

/// Maps a non-success status of an OpenAI-compatible endpoint to what the caller should do
/// (see [`ErrorDialect::classify`]).
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    model: &str,
    url: &str,
    key_hint: &str,
) -> LlmError {
    OPENAI_DIALECT.classify(status, headers, message, model, url, key_hint)
}

/// What sets one API's error answers apart from another's; the classification itself is the
/// same for all ([`ErrorDialect::classify`]).
#[derive(Debug)]
pub(crate) struct ErrorDialect {
    /// What a 404 that is not about the model tells the user to check.
    pub base_url_hint: &'static str,
    /// Phrases (lowercase) of a 400, 413 or 422 message that say the input is too long.
    pub too_long: &'static [&'static str],
    /// Phrases (lowercase) of a 400 message that say a content filter refused the input.
    pub content_filter: &'static [&'static str],
    /// The statuses that mean the server is throttling (besides being retryable).
    pub throttling: &'static [u16],
}

/// The error answers of OpenAI and the servers that copy its API.
pub(crate) const OPENAI_DIALECT: ErrorDialect = ErrorDialect {
    base_url_hint: "check llm.base_url (it should end in /v1)",
    too_long: &[
        "context_length",
        "context length",
        "too long",
        "maximum context",
    ],
    content_filter: &["content_filter", "content_policy", "content management"],
    throttling: &[429, 503],
};

impl ErrorDialect {
    /// Maps a non-success status (with the error `message`, for a request to `model` at `url`)
    /// to what the caller should do: a refused key or an unknown model or path stops the job,
    /// an input that is too long or a content filter's refusal rejects the record,
    /// 408/409/425/429/5xx are retried with the server's hint (throttling where this dialect
    /// says so), anything else rejects the record.
    pub(crate) fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
        model: &str,
        url: &str,
        key_hint: &str,
    ) -> LlmError {
        let lower = message.to_ascii_lowercase();
        let says = |phrases: &[&str]| phrases.iter().any(|phrase| lower.contains(phrase));
        match status.as_u16() {
            401 | 403 => LlmError::Fatal(format!(
                "{url} refused the credentials ({status}): {key_hint}"
            )),
            404 if lower.contains("model") || lower.is_empty() => LlmError::Fatal(format!(
                "model {model:?} not found at {url} ({message}): check llm.model"
            )),
            404 => LlmError::Fatal(format!(
                "{url} answered 404 ({message}): {}",
                self.base_url_hint
            )),
            400 | 413 | 422 if says(self.too_long) => {
                LlmError::BadRecord(format!("input too long for the model: {message}"))
            }
            400 if says(self.content_filter) => LlmError::BadRecord(format!(
                "the provider's content filter refused the input: {message}"
            )),
            408 | 409 | 425 | 429 | 500..=599 => LlmError::Retryable {
                reason: format!("{status}: {message}"),
                retry_after: retry_after(headers),
                throttled: self.throttling.contains(&status.as_u16()),
            },
            _ => LlmError::BadRecord(format!("{status}: {message}")),
        }
    }
}

/// The server's retry hint: `retry-after-ms`, `Retry-After` seconds, or the larger of OpenAI's
/// `x-ratelimit-reset-*` durations.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    if let Some(seconds) = text("retry-after").and_then(|v| v.parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(seconds.max(0.0)));
    }
    let resets = ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"];
    resets
        .iter()
        .filter_map(|name| text(name).and_then(parse_reset))
        .max()
}

/// Parses OpenAI's reset durations: `1s`, `1.5s`, `20ms`, `6m0s`, `1h2m3s`.
pub fn parse_reset(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (scale, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.is_empty() {
            (1.0, 0)
        } else {
            return None;
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn retry_hints_in_every_form() {
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("x-ratelimit-reset-requests", "20ms"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ])),
            Some(Duration::from_secs(360))
        );
        assert_eq!(retry_after(&headers(&[])), None);
        assert_eq!(parse_reset("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[test]
    fn statuses_are_classified_by_what_to_do() {
        let none = HeaderMap::new();
        let classify = |code: u16, message: &str| {
            classify_status(
                StatusCode::from_u16(code).unwrap(),
                &none,
                message,
                "m",
                "http://x/v1/chat/completions",
                "check $KEY",
            )
        };
        assert!(matches!(classify(401, "bad key"), LlmError::Fatal(m) if m.contains("check $KEY")));
        assert!(
            matches!(classify(404, "The model `m` does not exist"), LlmError::Fatal(m) if m.contains("llm.model"))
        );
        assert!(matches!(
            classify(400, "maximum context length is 8192 tokens"),
            LlmError::BadRecord(_)
        ));
        assert!(matches!(
            classify(429, "slow down"),
            LlmError::Retryable {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            classify(500, "oops"),
            LlmError::Retryable {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            classify(503, "busy"),
            LlmError::Retryable {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(classify(400, "bad field"), LlmError::BadRecord(_)));
    }

    fn provider(setting: StructuredOutput) -> OpenAiProvider {
        OpenAiProvider::new(EndpointConfig {
            structured_output: setting,
            max_response_bytes: 16 << 20,
            ..crate::testing::endpoint(crate::testing::NOWHERE)
        })
        .unwrap()
    }

    fn request(schema: serde_json::Value) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![rubricmill_core::Message::new("user", "hi")],
            temperature: 0.0,
            max_tokens: 100,
            seed: None,
            response_format: Some(crate::ResponseFormat {
                name: "task".into(),
                schema,
            }),
        }
    }

    const LLAMA_CPP_PYTHON_500: &str = "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', input_type=str]";

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn refusals_naming_the_response_format_are_recognised_at_any_error_status() {
        for message in [
            LLAMA_CPP_PYTHON_500,
            "response_format type json_schema is not supported",
            "JSON_OBJECT is not available for this model",
            "This model does not support Structured Outputs",
            "unsupported Response Format",
        ] {
            assert!(
                names_response_format(&message.to_ascii_lowercase()),
                "{message}"
            );
        }
        assert!(!names_response_format("the server had an error"));
        for code in [400, 422, 500, 501] {
            let provider = provider(StructuredOutput::Auto);
            let sent = provider.form();
            assert!(matches!(
                provider.adapt(sent, status(code), LLAMA_CPP_PYTHON_500, true),
                Adaptation::Resend
            ));
            assert_eq!(provider.structured_output(), Some("json_object"), "{code}");
        }
    }

    #[test]
    fn concurrent_refusals_of_one_mode_step_once() {
        let provider = provider(StructuredOutput::Auto);
        assert_eq!(provider.structured_output(), Some("json_schema"));
        // Two requests sent in json_schema mode, both refused.
        let first = provider.form();
        let second = provider.form();
        for sent in [first, second] {
            assert!(matches!(
                provider.adapt(sent, status(500), LLAMA_CPP_PYTHON_500, true),
                Adaptation::Resend
            ));
        }
        assert_eq!(
            provider.structured_output(),
            Some("json_object"),
            "the second refusal of json_schema must not skip json_object"
        );
        // A refusal of json_object itself steps to plain instructions, and there it stops.
        let in_json_mode = provider.form();
        assert_eq!(in_json_mode.mode, SchemaMode::JsonObject);
        assert!(matches!(
            provider.adapt(
                in_json_mode,
                status(400),
                "json_object is not supported",
                true
            ),
            Adaptation::Resend
        ));
        assert_eq!(provider.structured_output(), Some("none"));
        let body = provider.body(
            &request(serde_json::json!({"type": "object"})),
            provider.form(),
        );
        assert_eq!(body.response_format, None);
        assert!(matches!(
            provider.adapt(provider.form(), status(400), "bad response_format", true),
            Adaptation::NotAForm
        ));
    }

    #[test]
    fn a_fixed_mode_never_steps_and_its_refusal_is_fatal() {
        for (setting, mode) in [
            (StructuredOutput::JsonSchema, "json_schema"),
            (StructuredOutput::JsonObject, "json_object"),
        ] {
            let provider = provider(setting);
            assert_eq!(provider.structured_output(), Some(mode));
            match provider.adapt(provider.form(), status(500), LLAMA_CPP_PYTHON_500, true) {
                Adaptation::Stop(LlmError::Fatal(message)) => {
                    assert!(message.contains("llm.structured_output"), "{message}");
                    assert!(message.contains("input_value='json_schema'"), "{message}");
                    assert!(message.contains(mode), "{message}");
                }
                other => panic!("{setting:?}: {other:?}"),
            }
            assert_eq!(provider.structured_output(), Some(mode), "it never steps");
        }
        let none = provider(StructuredOutput::None);
        assert_eq!(none.structured_output(), Some("none"));
        let body = none.body(&request(serde_json::json!({"type": "object"})), none.form());
        assert_eq!(body.response_format, None);
        let json_mode = provider(StructuredOutput::JsonObject);
        let body = json_mode.body(
            &request(serde_json::json!({"type": "object"})),
            json_mode.form(),
        );
        assert_eq!(body.response_format, Some(WireResponseFormat::JsonObject));
    }

    #[test]
    fn errors_that_are_not_about_the_form_are_classified_as_usual() {
        let provider = provider(StructuredOutput::Auto);
        let sent = provider.form();
        for (code, message, has_format) in [
            (
                500,
                "The server had an error while processing your request.",
                true,
            ),
            (429, "Rate limit reached", true),
            (400, "response_format is not supported", false),
        ] {
            assert!(
                matches!(
                    provider.adapt(sent, status(code), message, has_format),
                    Adaptation::NotAForm
                ),
                "{code} {message}"
            );
        }
        assert_eq!(provider.structured_output(), Some("json_schema"));
    }

    #[test]
    fn max_completion_tokens_switches_once_under_concurrent_refusals() {
        let provider = provider(StructuredOutput::Auto);
        let message = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.";
        let (first, second) = (provider.form(), provider.form());
        for sent in [first, second] {
            assert!(matches!(
                provider.adapt(sent, status(400), message, true),
                Adaptation::Resend
            ));
        }
        let now = provider.form();
        assert!(now.completion_tokens);
        assert_eq!(
            now.mode,
            SchemaMode::JsonSchema,
            "the schema mode is untouched"
        );
        let body = provider.body(&request(serde_json::json!({"type": "object"})), now);
        assert_eq!(
            (body.max_tokens, body.max_completion_tokens),
            (None, Some(100))
        );
        // Sent with max_completion_tokens already, the same complaint is not a form to adapt.
        assert!(matches!(
            provider.adapt(now, status(400), message, true),
            Adaptation::NotAForm
        ));
    }

    #[test]
    fn strict_is_sent_only_for_schemas_strict_mode_accepts() {
        let provider = provider(StructuredOutput::Auto);
        let strict_of = |schema: serde_json::Value| match provider
            .body(&request(schema), provider.form())
            .response_format
        {
            Some(WireResponseFormat::JsonSchema { json_schema }) => json_schema.strict,
            other => panic!("{other:?}"),
        };
        let closed = serde_json::json!({
            "type": "object", "additionalProperties": false, "required": ["a"],
            "properties": {"a": {"type": "string"}}
        });
        assert_eq!(strict_of(closed.clone()), Some(true));
        let mut optional = closed.clone();
        optional["required"] = serde_json::json!([]);
        assert_eq!(strict_of(optional), None);
        assert_eq!(strict_of(serde_json::json!({"type": "object"})), None);
        let wire = serde_json::to_value(provider.body(&request(closed), provider.form())).unwrap();
        assert_eq!(wire["response_format"]["json_schema"]["strict"], true);
    }

    #[test]
    fn bodies_over_the_limit_are_refused_as_retryable() {
        let too_large = |result: Result<BoundedBody, LlmError>| match result {
            Err(LlmError::Retryable {
                reason, throttled, ..
            }) => {
                assert!(!throttled);
                reason
            }
            other => panic!("{other:?}"),
        };
        // Declared too large: refused before reading.
        let reason = too_large(BoundedBody::new(16 << 20, Some(200 << 20)));
        assert!(reason.contains("llm.max_response_mb (16 MiB)"), "{reason}");
        assert!(reason.contains("209715200"), "{reason}");
        // Undeclared: refused at the chunk that passes the limit.
        let mut body = BoundedBody::new(10, None).unwrap();
        body.push(b"12345").unwrap();
        body.push(b"67890").unwrap();
        let reason = too_large(body.push(b"!").map(|()| body));
        assert!(
            reason.contains("llm.max_response_mb (10 bytes)"),
            "{reason}"
        );
        let mut body = BoundedBody::new(10, Some(4)).unwrap();
        body.push(b"1234").unwrap();
        assert_eq!(body.into_bytes(), b"1234");
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let config = EndpointConfig {
            api_key: Some("sk-very-secret".into()),
            api_key_env: Some("KEY".into()),
            ..crate::testing::endpoint("http://x/v1")
        };
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }
}
