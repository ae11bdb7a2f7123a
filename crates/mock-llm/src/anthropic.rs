//! The Anthropic Messages endpoint of the mock server, `POST /v1/messages`.
//!
//! A Messages request is turned into the chat request it stands for (the `system` blocks as one
//! system message, a forced tool as the response format named after the tool, with its
//! `input_schema`) and answered by the chat path itself, so the same simulated answers, rate
//! limits, faults and latency apply; the result is then written back in the Messages form:
//! a structured answer as a `tool_use` block whose `input` is the answer's JSON (an answer
//! that is not JSON, cut or malformed by a fault, stays a text block), `stop_reason`
//! `max_tokens` for answers cut at `max_tokens`, errors as `{"type": "error", "error": {...}}`
//! with Anthropic's error types (a 503 becomes 529 `overloaded_error`), and the rate-limit
//! headers as `anthropic-ratelimit-*`.
//!
//! Prompt caching is simulated: a system block marked `cache_control` is written to the cache
//! the first time its text is answered (`cache_creation_input_tokens`) and read from it every
//! later time (`cache_read_input_tokens`); `input_tokens` is the rest of the prompt.
//!
//! [`answer_params`] answers a Messages `params` object without rate limits, faults or
//! latency, for the Message Batches endpoints.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use rubricmill_core::Message;
use rubricmill_llm::estimate_tokens;
use rubricmill_llm::simulated::SimulatedOptions;
use rubricmill_llm::wire::{WireErrorBody, WireRequest, WireResponse};
use rubricmill_llm::{ChatRequest, ResponseFormat};
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::limits::anthropic_headers;
use crate::server::{
    Body, Call, IncomingRequest, KeyHeader, State, add_headers, answer_for, json_response,
    prompt_tokens, respond,
};

/// Largest Messages request body accepted.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Distinct cached system prompts remembered; the cache starts over when it is full.
const PROMPT_CACHE_ENTRIES: usize = 10_000;

/// The system prompts seen with `cache_control`.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    seen: Mutex<HashSet<String>>,
}

impl PromptCache {
    /// Whether `text` was cached before; caches it from now on.
    pub(crate) fn read_or_write(&self, text: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(text) {
            return true;
        }
        if seen.len() >= PROMPT_CACHE_ENTRIES {
            seen.clear();
        }
        seen.insert(text.to_owned());
        false
    }
}

/// A Messages request as the chat request it stands for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessagesRequest {
    pub request: ChatRequest,
    /// The system text marked `cache_control`, when there is one.
    pub cached_system: Option<String>,
}

/// Reads a Messages `params` object; the error is the message of a 400.
pub(crate) fn parse_params(params: &Value) -> Result<MessagesRequest, String> {
    let model = params
        .get("model")
        .and_then(Value::as_str)
        .ok_or("model: Field required")?;
    let max_tokens = params
        .get("max_tokens")
        .and_then(Value::as_u64)
        .ok_or("max_tokens: Field required")?;
    let mut messages = Vec::new();
    let mut cached_system = None;
    match params.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(Message::new("system", text.clone())),
        Some(Value::Array(blocks)) => {
            let text: String = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            if blocks.iter().any(|b| b.get("cache_control").is_some()) {
                cached_system = Some(text.clone());
            }
            messages.push(Message::new("system", text));
        }
        Some(_) => return Err("system: Input should be a valid string or list".into()),
    }
    let turns = params
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if turns.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for turn in turns {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages: Unexpected role {role:?}. Allowed roles are \"user\" or \"assistant\""
            ));
        }
        let content = match turn.get("content") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect(),
            _ => return Err("messages.content: Field required".into()),
        };
        messages.push(Message::new(role, content));
    }
    let forced = params
        .get("tool_choice")
        .filter(|choice| choice.get("type").and_then(Value::as_str) == Some("tool"))
        .and_then(|choice| choice.get("name"))
        .and_then(Value::as_str);
    let response_format = match forced {
        None => None,
        Some(name) => {
            let tool = params
                .get("tools")
                .and_then(Value::as_array)
                .and_then(|tools| {
                    tools
                        .iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
                })
                .ok_or_else(|| format!("tool_choice: tool {name:?} is not in tools"))?;
            Some(ResponseFormat {
                name: name.to_owned(),
                schema: tool.get("input_schema").cloned().unwrap_or(json!({})),
            })
        }
    };
    Ok(MessagesRequest {
        request: ChatRequest {
            model: model.to_owned(),
            messages,
            temperature: params
                .get("temperature")
                .and_then(Value::as_f64)
                .unwrap_or(1.0) as f32,
            max_tokens: u32::try_from(max_tokens).unwrap_or(u32::MAX),
            seed: None,
            response_format,
        },
        cached_system,
    })
}

/// Usage of a Messages answer: the prompt split into cache reads, cache writes and the rest.
fn usage(state: &State, parsed: &MessagesRequest, prompt_tokens: u64, output_tokens: u64) -> Value {
    let (mut read, mut written) = (0, 0);
    if let Some(system) = &parsed.cached_system {
        // The system message's share of the prompt, counted as the chat path counts it.
        let cached = (estimate_tokens(system) + 4).min(prompt_tokens);
        if state.prompt_cache.read_or_write(system) {
            read = cached;
        } else {
            written = cached;
        }
    }
    json!({
        "input_tokens": prompt_tokens - read - written,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
        "output_tokens": output_tokens,
    })
}

/// A Messages response object for an answer's content and finish reason.
fn message_object(
    state: &State,
    parsed: &MessagesRequest,
    content: String,
    finish_reason: &str,
    usage: Value,
) -> Value {
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let structured = parsed
        .request
        .response_format
        .as_ref()
        .filter(|_| finish_reason != "length")
        .and_then(|format| {
            serde_json::from_str::<Value>(&content)
                .ok()
                .filter(Value::is_object)
                .map(|input| (format.name.clone(), input))
        });
    let (block, stop_reason) = match structured {
        Some((name, input)) => (
            json!({"type": "tool_use", "id": format!("toolu_mock_{id}"), "name": name, "input": input}),
            "tool_use",
        ),
        None => (
            json!({"type": "text", "text": content}),
            if finish_reason == "length" {
                "max_tokens"
            } else {
                "end_turn"
            },
        ),
    };
    json!({
        "id": format!("msg_mock_{id}"),
        "type": "message",
        "role": "assistant",
        "model": parsed.request.model,
        "content": [block],
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

/// Answers a Messages `params` object as the chat path would, without rate limits, faults or
/// latency (the Message Batches endpoints answer their items with it). The error is the
/// message of an `invalid_request_error`.
pub(crate) fn answer_params(state: &State, params: &Value) -> Result<Value, String> {
    let parsed = parse_params(params)?;
    if !state.config.models.is_empty() && !state.config.models.contains(&parsed.request.model) {
        return Err(format!("model: {}", parsed.request.model));
    }
    let wire = WireRequest::from_request(&parsed.request, true);
    let options = SimulatedOptions {
        judge_error_rate: state.config.judge_error_rate,
    };
    let answer = answer_for(&wire, false, Fault::None, &options);
    let output_tokens = estimate_tokens(&answer.content);
    let usage = usage(state, &parsed, prompt_tokens(&wire), output_tokens);
    Ok(message_object(
        state,
        &parsed,
        answer.content,
        answer.finish_reason,
        usage,
    ))
}

/// An error in the Messages form.
pub(crate) fn error(status: StatusCode, kind: &str, message: String) -> Response<Body> {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}});
    json_response(status, body.to_string().into_bytes())
}

/// Anthropic's error type for a status.
fn error_kind(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The error every Messages API path answers a request without the right `x-api-key` (401) or
/// without `anthropic-version` (400) with; `None` when both are there.
pub(crate) fn refuse_headers(state: &State, headers: &header::HeaderMap) -> Option<Response<Body>> {
    if !KeyHeader::XApiKey.accepts(state, headers) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key".into(),
        ));
    }
    if !headers.contains_key("anthropic-version") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required".into(),
        ));
    }
    None
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    state: &State,
    call: &mut Call<'_>,
    request: IncomingRequest,
) -> Response<Body> {
    if let Some(refused) = refuse_headers(state, request.headers()) {
        return refused;
    }
    let bytes = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("could not read the request body: {e}"),
            );
        }
    };
    call.body_len = bytes.len() as u64;
    let parsed = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| format!("could not parse the JSON body: {e}"))
        .and_then(|params| parse_params(&params));
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", message),
    };
    let wire = WireRequest::from_request(&parsed.request, true);
    call.prompt_tokens = prompt_tokens(&wire);
    call.body = Some(wire);
    let answered = respond(state, call).await;
    translate(state, &parsed, call.prompt_tokens, answered).await
}

/// A chat-path response in the Messages form.
async fn translate(
    state: &State,
    parsed: &MessagesRequest,
    prompt_tokens: u64,
    answered: Response<Body>,
) -> Response<Body> {
    let status = answered.status();
    let limits: Vec<(&'static str, String)> = answered
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?.to_owned();
            let name: &'static str = match name.as_str() {
                "x-ratelimit-limit-requests" => "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests" => "x-ratelimit-remaining-requests",
                "x-ratelimit-limit-tokens" => "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens" => "x-ratelimit-remaining-tokens",
                "retry-after" => "retry-after",
                "retry-after-ms" => "retry-after-ms",
                _ => return None,
            };
            Some((name, value))
        })
        .collect();
    let headers = anthropic_headers(&limits);
    let bytes = match answered.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("could not encode the answer: {e}"),
            );
        }
    };
    let mut response = if status.is_success() {
        match serde_json::from_slice::<WireResponse>(&bytes) {
            Ok(answer) => {
                let choice = answer.choices.into_iter().next();
                let (content, finish) = choice.map_or((String::new(), "stop".into()), |c| {
                    (
                        c.message.content.unwrap_or_default(),
                        c.finish_reason.unwrap_or_else(|| "stop".into()),
                    )
                });
                let output_tokens = answer.usage.map_or(0, |u| u.completion_tokens);
                let usage = usage(state, parsed, prompt_tokens, output_tokens);
                let object = message_object(state, parsed, content, &finish, usage);
                json_response(StatusCode::OK, object.to_string().into_bytes())
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("could not encode the answer: {e}"),
            ),
        }
    } else {
        let message = serde_json::from_slice::<WireErrorBody>(&bytes)
            .map(|body| body.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
        let status = if status == StatusCode::SERVICE_UNAVAILABLE {
            StatusCode::from_u16(529).expect("valid status")
        } else {
            status
        };
        error(status, error_kind(status), message)
    };
    add_headers(&mut response, &headers);
    response.headers_mut().insert(
        header::HeaderName::from_static("request-id"),
        HeaderValue::from_static("req_mock"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_become_the_chat_request_they_stand_for() {
        let request = ChatRequest {
            model: "claude-mock".into(),
            messages: vec![Message::new("system", "rules"), Message::new("user", "q")],
            temperature: 0.5,
            max_tokens: 200,
            seed: None,
            response_format: Some(ResponseFormat {
                name: "crg_rubric".into(),
                schema: json!({"type": "object"}),
            }),
        };
        let params = rubricmill_llm::anthropic::request_params(&request);
        let parsed = parse_params(&params).unwrap();
        assert_eq!(parsed.request, request);
        assert_eq!(parsed.cached_system.as_deref(), Some("rules"));
        let mut plain = params.clone();
        plain["system"] = json!("rules");
        assert_eq!(parse_params(&plain).unwrap().cached_system, None);
        let mut bad = params;
        bad["messages"] = json!([{"role": "system", "content": "x"}]);
        assert!(parse_params(&bad).unwrap_err().contains("Unexpected role"));
    }

    #[test]
    fn batch_answers_use_the_tool_and_the_prompt_cache() {
        let state = State::new(crate::MockConfig::default());
        let request = ChatRequest {
            model: "claude-mock".into(),
            messages: vec![
                Message::new("system", "a long shared instruction prefix"),
                Message::new("user", "<conversation>hello</conversation>"),
            ],
            temperature: 0.0,
            max_tokens: 2000,
            seed: None,
            response_format: Some(ResponseFormat {
                name: rubricmill_llm::simulated::CRG_TASK.into(),
                schema: json!({"type": "object"}),
            }),
        };
        let params = rubricmill_llm::anthropic::request_params(&request);
        let first = answer_params(&state, &params).unwrap();
        assert_eq!(first["content"][0]["type"], "tool_use");
        assert_eq!(first["stop_reason"], "tool_use");
        assert!(
            first["usage"]["cache_creation_input_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
        let second = answer_params(&state, &params).unwrap();
        assert_eq!(
            second["usage"]["cache_read_input_tokens"],
            first["usage"]["cache_creation_input_tokens"]
        );
        let answer = rubricmill_llm::anthropic::parse_message(&second).unwrap();
        assert!(
            serde_json::from_str::<Value>(&answer.content)
                .unwrap()
                .is_object()
        );
        let mut bad = params;
        bad.as_object_mut().unwrap().remove("max_tokens");
        assert!(
            answer_params(&state, &bad)
                .unwrap_err()
                .contains("max_tokens")
        );
    }
}
