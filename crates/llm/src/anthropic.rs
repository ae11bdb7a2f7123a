//! The native Anthropic Messages API provider (`llm.provider = "anthropic"`).
//!
//! A [`ChatRequest`] becomes one `POST {base_url}/v1/messages` (the default base URL is
//! [`DEFAULT_BASE_URL`]; a base URL already ending in `/v1` is used as it is):
//! - the key goes in `x-api-key` (marked sensitive, never logged), with `anthropic-version`
//!   [`API_VERSION`];
//! - system messages become the top-level `system` field, one text block marked
//!   `cache_control: ephemeral`, so the instruction prefix every record of a stage shares is
//!   read from Anthropic's prompt cache after the first call (billed at a tenth of the input
//!   price);
//! - a structured answer is asked for as one tool whose `input_schema` is the answer's schema,
//!   forced with `tool_choice`; the `tool_use` block's `input`, as JSON text, is the answer;
//! - `stop_reason` maps to the finish reasons the gateway knows (`max_tokens` → `length`, the
//!   others → `stop`); a `refusal` rejects the record with the model's text;
//! - usage counts cache reads and cache writes as prompt tokens.
//!
//! [`request_params`] and [`parse_message`] are the two conversions, public so Anthropic's
//! Message Batches client sends and reads exactly what the online provider does. Errors are
//! classified as for the OpenAI-compatible provider: a refused key or unknown model stops the
//! job, a prompt that is too long rejects the record, 429 and 529 (overloaded) are throttling
//! with the server's retry hint, other 5xx and network trouble are retried. The rate limits
//! Anthropic announces (`anthropic-ratelimit-*-limit`) are kept for the gateway.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use rubricmill_core::spec::StructuredOutput;

use crate::client::{ErrorDialect, http_client, key_header, key_hint, read_body, transport_error};
use crate::limiter::{AnnouncedLimits, ProviderLimits, header_limit};
use crate::{ChatProvider, ChatRequest, ChatResponse, EndpointConfig, LlmError, TokenUsage};

/// Where the Messages API is when `llm.base_url` is unset.
pub const DEFAULT_BASE_URL: &str = rubricmill_core::spec::ANTHROPIC_BASE_URL;

/// The `anthropic-version` header every request carries.
pub const API_VERSION: &str = "2023-06-01";

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The URL of an endpoint path (`messages`, `messages/batches`) under a base URL, with or
/// without its `/v1`; an empty base URL means [`DEFAULT_BASE_URL`].
pub fn endpoint_url(base_url: &str, path: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    let base = if base.is_empty() {
        DEFAULT_BASE_URL
    } else {
        base
    };
    let path = path.trim_start_matches('/');
    if base.ends_with("/v1") {
        format!("{base}/{path}")
    } else {
        format!("{base}/v1/{path}")
    }
}

/// The headers every Anthropic request carries: the key (sensitive) and the API version.
pub fn auth_headers(
    api_key: Option<&str>,
    api_key_env: Option<&str>,
) -> Result<HeaderMap, LlmError> {
    let mut headers = key_header(
        HeaderName::from_static(API_KEY_HEADER),
        api_key,
        api_key_env,
    )?;
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(API_VERSION),
    );
    Ok(headers)
}

/// A tool name Anthropic accepts (`[a-zA-Z0-9_-]{1,64}`) made from a response format's name.
pub fn tool_name(format_name: &str) -> String {
    let name: String = format_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "answer".into()
    } else {
        name
    }
}

/// The Messages API `params` of a request: model, max_tokens, system (one cached text block),
/// messages, temperature (clamped to Anthropic's 0–1), and for a structured answer the one tool
/// and the `tool_choice` that forces it. No `stream`. Anthropic has no sampling seed, so
/// `seed` is not sent.
pub fn request_params(request: &ChatRequest) -> Value {
    let system: Vec<&str> = request
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = request
        .messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| {
            let role = if m.role == "assistant" {
                "assistant"
            } else {
                "user"
            };
            json!({"role": role, "content": m.content})
        })
        .collect();
    let mut params = json!({
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": messages,
        "temperature": f64::from(request.temperature.clamp(0.0, 1.0)),
    });
    if !system.is_empty() {
        params["system"] = json!([{
            "type": "text",
            "text": system.join("\n\n"),
            "cache_control": {"type": "ephemeral"},
        }]);
    }
    if let Some(format) = &request.response_format {
        let name = tool_name(&format.name);
        params["tools"] = json!([{
            "name": name,
            "description": format!("Record the answer ({}) in the required structure.", format.name),
            "input_schema": format.schema,
        }]);
        params["tool_choice"] = json!({"type": "tool", "name": name});
    }
    params
}

/// A Messages API response object (or an error object, `{"type": "error", ...}`) as a
/// [`ChatResponse`]: the forced tool's `input` as JSON text when the answer used a tool, else
/// the text blocks joined.
pub fn parse_message(body: &Value) -> Result<ChatResponse, LlmError> {
    if body.get("type").and_then(Value::as_str) == Some("error") {
        return Err(classify_error_object(body));
    }
    let Some(blocks) = body.get("content").and_then(Value::as_array) else {
        return Err(LlmError::Retryable {
            reason: "message has no content".into(),
            retry_after: None,
            throttled: false,
        });
    };
    let text: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let stop_reason = body
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    if stop_reason == "refusal" {
        let why = if text.trim().is_empty() {
            "no reason given".to_owned()
        } else {
            text.trim().to_owned()
        };
        return Err(LlmError::BadRecord(format!("the model refused: {why}")));
    }
    let tool_input = blocks
        .iter()
        .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .and_then(|b| b.get("input"));
    let content = match tool_input {
        Some(input) => serde_json::to_string(input).expect("json values serialize"),
        None => text,
    };
    let finish_reason = match stop_reason {
        "max_tokens" => "length",
        _ => "stop",
    };
    let usage = body.get("usage");
    let count = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(ChatResponse {
        content,
        finish_reason: finish_reason.into(),
        usage: TokenUsage {
            prompt_tokens: count("input_tokens")
                + count("cache_read_input_tokens")
                + count("cache_creation_input_tokens"),
            completion_tokens: count("output_tokens"),
        },
    })
}

/// The `(type, message)` of an Anthropic error object `{"type": "error", "error": {...}}`.
fn error_parts(body: &Value) -> (String, String) {
    let error = body.get("error").unwrap_or(body);
    let text = |name: &str| {
        error
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (text("type"), text("message"))
}

/// What an error object means when no HTTP status comes with it (a batch item's error).
pub fn classify_error_object(body: &Value) -> LlmError {
    let (kind, message) = error_parts(body);
    let status = match kind.as_str() {
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "overloaded_error" => 529,
        _ => 400,
    };
    ANTHROPIC_DIALECT.classify(
        StatusCode::from_u16(status).expect("valid status"),
        &HeaderMap::new(),
        &format!("{kind}: {message}"),
        "?",
        "the Messages API",
        "check llm.api_key_env",
    )
}

/// The error answers of the Messages API: its own words for a prompt that is too long, and
/// 529 (overloaded) is throttling as 429 and 503 are.
const ANTHROPIC_DIALECT: ErrorDialect = ErrorDialect {
    base_url_hint: "check llm.base_url",
    too_long: &[
        "prompt is too long",
        "too many tokens",
        "too long",
        "request_too_large",
    ],
    content_filter: &[],
    throttling: &[429, 503, 529],
};

/// The limits announced in an answer's `anthropic-ratelimit-*` headers: the combined token
/// limit where given, else the input-token one.
pub fn announced_limits(headers: &HeaderMap) -> ProviderLimits {
    ProviderLimits {
        requests_per_minute: header_limit(headers, "anthropic-ratelimit-requests-limit"),
        tokens_per_minute: header_limit(headers, "anthropic-ratelimit-tokens-limit")
            .or_else(|| header_limit(headers, "anthropic-ratelimit-input-tokens-limit")),
    }
}

/// The Messages API provider; one pooled keep-alive client per endpoint.
pub struct AnthropicProvider {
    http: reqwest::Client,
    url: String,
    config: EndpointConfig,
    limits: AnnouncedLimits,
}

impl AnthropicProvider {
    /// `config.base_url` may be empty for [`DEFAULT_BASE_URL`]; `structured_output = "none"`
    /// sends no tool (the prompt's instructions alone), any other setting the forced tool.
    pub fn new(config: EndpointConfig) -> Result<Self, LlmError> {
        let auth = auth_headers(config.api_key.as_deref(), config.api_key_env.as_deref())?;
        let http = http_client(&config, auth)?;
        let url = endpoint_url(&config.base_url, "messages");
        Ok(Self {
            http,
            url,
            config,
            limits: AnnouncedLimits::default(),
        })
    }

    fn uses_tool(&self) -> bool {
        self.config.structured_output != StructuredOutput::None
    }
}

#[async_trait::async_trait]
impl ChatProvider for AnthropicProvider {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn structured_output(&self) -> Option<&'static str> {
        Some(if self.uses_tool() { "tool" } else { "none" })
    }

    fn provider_limits(&self) -> ProviderLimits {
        self.limits.get()
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let params = if self.uses_tool() {
            request_params(request)
        } else {
            let mut plain = request.clone();
            plain.response_format = None;
            request_params(&plain)
        };
        let body = serde_json::to_vec(&params).expect("requests serialize");
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        self.limits.record(announced_limits(&headers));
        let bytes = read_body(response, self.config.max_response_bytes, &self.url).await?;
        let parsed = serde_json::from_slice::<Value>(&bytes);
        if status.is_success() {
            let body = parsed.map_err(|e| LlmError::Retryable {
                reason: format!("unreadable response body: {e}"),
                retry_after: None,
                throttled: false,
            })?;
            return parse_message(&body);
        }
        let message = match parsed {
            Ok(body) => {
                let (kind, message) = error_parts(&body);
                match (kind.is_empty(), message.is_empty()) {
                    (_, true) => kind,
                    (true, false) => message,
                    (false, false) => format!("{message} ({kind})"),
                }
            }
            Err(_) => String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                .trim()
                .to_owned(),
        };
        Err(ANTHROPIC_DIALECT.classify(
            status,
            &headers,
            &message,
            &request.model,
            &self.url,
            &key_hint(&self.config),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ResponseFormat;
    use rubricmill_core::Message;

    fn request(format: bool) -> ChatRequest {
        ChatRequest {
            model: "claude-x".into(),
            messages: vec![
                Message::new("system", "rules one"),
                Message::new("system", "rules two"),
                Message::new("user", "question"),
            ],
            temperature: 1.4,
            max_tokens: 300,
            seed: Some(3),
            response_format: format.then(|| ResponseFormat {
                name: "crg.rubric v1".into(),
                schema: json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            }),
        }
    }

    #[test]
    fn params_put_system_in_a_cached_block_and_force_the_tool() {
        let params = request_params(&request(true));
        assert_eq!(params["model"], "claude-x");
        assert_eq!(params["max_tokens"], 300);
        assert_eq!(params["temperature"], 1.0);
        assert_eq!(params["system"][0]["text"], "rules one\n\nrules two");
        assert_eq!(params["system"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(
            params["messages"],
            json!([{"role": "user", "content": "question"}])
        );
        assert_eq!(params["tools"][0]["name"], "crg_rubric_v1");
        assert_eq!(params["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            params["tool_choice"],
            json!({"type": "tool", "name": "crg_rubric_v1"})
        );
        assert!(params.get("seed").is_none() && params.get("stream").is_none());
        let plain = request_params(&request(false));
        assert!(plain.get("tools").is_none() && plain.get("tool_choice").is_none());
    }

    #[test]
    fn a_tool_answer_is_its_input_as_json_text() {
        let body = json!({
            "type": "message", "role": "assistant", "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Here it is."},
                {"type": "tool_use", "id": "t1", "name": "x", "input": {"a": "b"}}
            ],
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
                      "cache_creation_input_tokens": 5, "output_tokens": 7}
        });
        let answer = parse_message(&body).unwrap();
        assert_eq!(answer.content, r#"{"a":"b"}"#);
        assert_eq!(answer.finish_reason, "stop");
        assert_eq!(answer.usage.prompt_tokens, 105);
        assert_eq!(answer.usage.completion_tokens, 7);
    }

    #[test]
    fn text_answers_stop_reasons_and_refusals() {
        let message = |stop: &str| {
            json!({"type": "message", "stop_reason": stop,
                   "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}],
                   "usage": {"input_tokens": 1, "output_tokens": 2}})
        };
        let answer = parse_message(&message("max_tokens")).unwrap();
        assert_eq!(
            (answer.content.as_str(), answer.finish_reason.as_str()),
            ("one two", "length")
        );
        for stop in ["end_turn", "stop_sequence", "tool_use"] {
            assert_eq!(parse_message(&message(stop)).unwrap().finish_reason, "stop");
        }
        let refused = parse_message(&message("refusal")).unwrap_err();
        assert!(
            matches!(&refused, LlmError::BadRecord(m) if m.contains("refused: one two")),
            "{refused}"
        );
    }

    #[test]
    fn error_objects_and_statuses_are_classified() {
        let error = |kind: &str, message: &str| {
            parse_message(&json!({"type": "error", "error": {"type": kind, "message": message}}))
                .unwrap_err()
        };
        assert!(matches!(
            error("overloaded_error", "Overloaded"),
            LlmError::Retryable {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
            LlmError::BadRecord(m) if m.contains("too long")
        ));
        assert!(matches!(
            error("authentication_error", "invalid x-api-key"),
            LlmError::Fatal(_)
        ));
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        let classify_status = |code: u16| {
            ANTHROPIC_DIALECT.classify(
                StatusCode::from_u16(code).unwrap(),
                &headers,
                "m",
                "claude-x",
                "http://x/v1/messages",
                "check the API key in $K",
            )
        };
        assert!(matches!(classify_status(401), LlmError::Fatal(m) if m.contains("$K")));
        assert!(matches!(
            classify_status(529),
            LlmError::Retryable { throttled: true, retry_after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify_status(500),
            LlmError::Retryable {
                throttled: false,
                ..
            }
        ));
    }

    #[test]
    fn urls_keys_and_limit_headers() {
        assert_eq!(
            endpoint_url("", "messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            endpoint_url("http://h:1/v1/", "messages/batches"),
            "http://h:1/v1/messages/batches"
        );
        assert_eq!(
            endpoint_url("http://h:1", "messages"),
            "http://h:1/v1/messages"
        );
        let headers = auth_headers(Some("sk-ant-secret"), Some("K")).unwrap();
        assert!(headers["x-api-key"].is_sensitive());
        assert_eq!(headers["anthropic-version"], API_VERSION);
        let mut answer = HeaderMap::new();
        answer.insert(
            "anthropic-ratelimit-requests-limit",
            HeaderValue::from_static("50"),
        );
        answer.insert(
            "anthropic-ratelimit-input-tokens-limit",
            HeaderValue::from_static("40000"),
        );
        assert_eq!(
            announced_limits(&answer),
            ProviderLimits {
                requests_per_minute: Some(50),
                tokens_per_minute: Some(40000)
            }
        );
        answer.insert(
            "anthropic-ratelimit-tokens-limit",
            HeaderValue::from_static("80000"),
        );
        assert_eq!(announced_limits(&answer).tokens_per_minute, Some(80000));
    }
}
