//! The OpenAI-compatible HTTP provider: one pooled keep-alive client per endpoint, the request
//! in the wire format, and every answer classified as an answer, a retryable failure (with the
//! server's retry hint), a bad record, or a fatal job error.
//!
//! Server quirks handled (found across OpenAI, vLLM, SGLang, Ollama, llama.cpp and LiteLLM):
//! - structured output: `json_schema` is sent first; a 400 that names `response_format` or
//!   `json_schema` switches this endpoint to JSON mode (`json_object`), and a second such 400 to
//!   plain instructions; the schema is always also in the prompt's instructions and the answer
//!   is validated locally, so every mode yields the same rows;
//! - OpenAI reasoning models reject `max_tokens`: a 400 that names `max_completion_tokens`
//!   switches the endpoint to that parameter;
//! - `usage` may be missing (some llama.cpp and Ollama builds): the gateway estimates it;
//! - `content` may be null with a `refusal`: the record is rejected with the refusal text;
//! - retry hints come as `retry-after-ms`, `Retry-After` (seconds) or OpenAI's
//!   `x-ratelimit-reset-requests` / `-tokens` durations (`1s`, `6m0s`, `20ms`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use rubricmill_core::spec::StructuredOutput;

use crate::wire::{WireErrorBody, WireRequest, WireResponse};
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

const SCHEMA_JSON_SCHEMA: u8 = 0;
const SCHEMA_JSON_OBJECT: u8 = 1;
const SCHEMA_NONE: u8 = 2;

pub struct OpenAiProvider {
    http: reqwest::Client,
    url: String,
    config: EndpointConfig,
    schema_mode: AtomicU8,
    /// 1 once the endpoint asked for `max_completion_tokens`.
    completion_tokens_param: AtomicU8,
}

impl OpenAiProvider {
    pub fn new(config: EndpointConfig) -> Result<Self, LlmError> {
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
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                LlmError::Fatal(format!(
                    "the API key in ${} holds characters an HTTP header cannot carry",
                    config.api_key_env.as_deref().unwrap_or("?")
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10).min(config.timeout))
            .pool_max_idle_per_host(config.max_connections.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| LlmError::Fatal(format!("cannot build the HTTP client: {e}")))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            http,
            url,
            config,
            schema_mode: AtomicU8::new(SCHEMA_JSON_SCHEMA),
            completion_tokens_param: AtomicU8::new(0),
        })
    }

    fn body(&self, request: &ChatRequest) -> WireRequest {
        let mode = self.schema_mode.load(Ordering::Relaxed);
        let mut wire = WireRequest::from_request(request, mode == SCHEMA_JSON_SCHEMA);
        match mode {
            SCHEMA_JSON_SCHEMA | SCHEMA_JSON_OBJECT => {}
            _ => wire.response_format = None,
        }
        if self.completion_tokens_param.load(Ordering::Relaxed) == 1 {
            wire.max_completion_tokens = wire.max_tokens.take();
        }
        wire
    }

    /// Adapts to a 400 that names an unsupported parameter; true when the request should be
    /// sent again in the new form.
    fn adapt(&self, message: &str) -> bool {
        let lower = message.to_ascii_lowercase();
        if lower.contains("max_completion_tokens")
            && self.completion_tokens_param.swap(1, Ordering::Relaxed) == 0
        {
            tracing::info!(url = %self.url, "endpoint wants max_completion_tokens, switching");
            return true;
        }
        if lower.contains("response_format") || lower.contains("json_schema") {
            let mode = self.schema_mode.load(Ordering::Relaxed);
            if mode < SCHEMA_NONE {
                self.schema_mode.store(mode + 1, Ordering::Relaxed);
                tracing::info!(url = %self.url, mode = mode + 1, "endpoint refused the response format, falling back");
                return true;
            }
        }
        false
    }

    fn key_hint(&self) -> String {
        match &self.config.api_key_env {
            Some(var) => format!("check the API key in ${var}"),
            None => "set llm.api_key_env to the variable holding the API key".into(),
        }
    }
}

#[async_trait::async_trait]
impl ChatProvider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        "openai"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        // At most two adaptations (schema mode, token parameter) and one more try each.
        for _ in 0..4 {
            let body = serde_json::to_vec(&self.body(request)).expect("requests serialize");
            let post = self
                .http
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            let response = match post.send().await {
                Ok(response) => response,
                Err(error) => return Err(transport_error(&error)),
            };
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(error) => return Err(transport_error(&error)),
            };
            if status.is_success() {
                return parse_answer(&bytes);
            }
            let message = error_message(&bytes);
            if status == StatusCode::BAD_REQUEST && self.adapt(&message) {
                continue;
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

fn transport_error(error: &reqwest::Error) -> LlmError {
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

fn parse_answer(bytes: &[u8]) -> Result<ChatResponse, LlmError> {
    let answer: WireResponse = serde_json::from_slice(bytes).map_err(|e| LlmError::Retryable {
        reason: format!("unreadable response body: {e}"),
        retry_after: None,
        throttled: false,
    })?;
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

fn error_message(bytes: &[u8]) -> String {
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

/// Maps a non-success status to what the caller should do.
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    model: &str,
    url: &str,
    key_hint: &str,
) -> LlmError {
    let lower = message.to_ascii_lowercase();
    match status.as_u16() {
        401 | 403 => LlmError::Fatal(format!(
            "{url} refused the credentials ({status}): {key_hint}"
        )),
        404 if lower.contains("model") || lower.is_empty() => LlmError::Fatal(format!(
            "model {model:?} not found at {url} ({message}): check llm.model"
        )),
        404 => LlmError::Fatal(format!(
            "{url} answered 404 ({message}): check llm.base_url (it should end in /v1)"
        )),
        400 | 413 | 422
            if lower.contains("context_length")
                || lower.contains("context length")
                || lower.contains("too long")
                || lower.contains("maximum context") =>
        {
            LlmError::BadRecord(format!("input too long for the model: {message}"))
        }
        400 if lower.contains("content_filter")
            || lower.contains("content_policy")
            || lower.contains("content management") =>
        {
            LlmError::BadRecord(format!(
                "the provider's content filter refused the input: {message}"
            ))
        }
        408 | 409 | 425 | 429 | 500..=599 => LlmError::Retryable {
            reason: format!("{status}: {message}"),
            retry_after: retry_after(headers),
            throttled: matches!(status.as_u16(), 429 | 503),
        },
        _ => LlmError::BadRecord(format!("{status}: {message}")),
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

    #[test]
    fn debug_output_never_shows_the_key() {
        let config = EndpointConfig {
            base_url: "http://x/v1".into(),
            api_key: Some("sk-very-secret".into()),
            api_key_env: Some("KEY".into()),
            headers: vec![],
            timeout: Duration::from_secs(1),
            max_connections: 1,
            structured_output: StructuredOutput::Auto,
            max_response_bytes: 1 << 20,
        };
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }
}
