//! The batch endpoints, kept in memory: OpenAI's files and batches (`/v1/files`,
//! `/v1/batches`), the same under Azure OpenAI's `/openai/...?api-version=` with the `api-key`
//! header, and Anthropic's Message Batches (`/v1/messages/batches`) with `x-api-key`.
//!
//! Every item of a batch is answered when the batch is created, through the same simulated
//! answer and fault draw as an online chat request (no rate limits, no latency: the batch's
//! processing delay stands for both), so every pipeline's prompts get valid task answers. A
//! batch stays in progress for `batch_delay_ms`, then ends at the next look at it (a status
//! poll or a listing): its results files are written, its items counted in the stats and their
//! tokens in the token totals. With `batch_expire_rate` a batch expires instead: the first half
//! of its items is answered, the rest fails as expired. `batch_item_failure_rate` fails single
//! items with a server error. Uploads and batch bodies over `batch_max_bytes` get 413.

mod anthropic;
mod multipart;
mod openai;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use rubricmill_llm::wire::{WireErrorBody, WireRequest, WireResponse, WireResponseFormat};

use crate::faults::Fault;
use crate::server::{
    Body, CONTEXT_WINDOW, IncomingRequest, State, answer_for, check_request, completion_body,
    error_body, prompt_tokens,
};
use crate::stats::BatchStats;

pub(crate) use openai::OpenAiStore;

/// Whether a path belongs to the batch endpoints.
pub(crate) fn serves(path: &str) -> bool {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    under("/v1/files")
        || under("/v1/batches")
        || under("/openai/files")
        || under("/openai/batches")
        || under("/v1/messages/batches")
}

/// Answers a request to one of the batch endpoints.
pub(crate) async fn route(state: &Arc<State>, request: IncomingRequest) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/v1/messages/batches") {
        return anthropic::route(state, request, rest.to_owned()).await;
    }
    if let Some(rest) = path.strip_prefix("/openai") {
        let has_version =
            query_value(request.uri().query(), "api-version").is_some_and(|v| !v.is_empty());
        if !has_version {
            return openai_error(
                StatusCode::BAD_REQUEST,
                "Missing required query parameter 'api-version'.".into(),
                "invalid_request_error",
                Some("missing_api_version"),
            );
        }
        return openai::route(state, request, rest.to_owned(), openai::Flavor::Azure).await;
    }
    let rest = path.strip_prefix("/v1").unwrap_or(&path).to_owned();
    openai::route(state, request, rest, openai::Flavor::OpenAi).await
}

/// Files, batches and counters of the batch endpoints.
#[derive(Debug, Default)]
pub(crate) struct BatchStore {
    openai: Mutex<OpenAiStore>,
    anthropic: Mutex<anthropic::MessageBatches>,
    stats: Mutex<BatchStats>,
}

impl BatchStore {
    pub fn stats(&self) -> BatchStats {
        lock(&self.stats).clone()
    }

    fn count(&self, update: impl FnOnce(&mut BatchStats)) {
        update(&mut lock(&self.stats));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one batch item came to, in the chat endpoint's terms.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Answered {
        completion: WireResponse,
        prompt_tokens: u64,
        completion_tokens: u64,
    },
    /// The error answer the chat endpoint would have given.
    Failed { status: u16, error: WireErrorBody },
}

impl Outcome {
    fn failed(status: u16, message: String, kind: &str, code: Option<&str>) -> Self {
        Outcome::Failed {
            status,
            error: error_body(message, kind, code),
        }
    }
}

/// Answers one batch item as the chat endpoint would, without rate limits and latency: empty
/// messages (400), unknown model (404), refused response formats (400), then the fault draw
/// (500, 503 and hangs become server errors, context length a 400, malformed and truncated
/// answers as online), then `batch_item_failure_rate`.
pub(crate) fn answer_item(state: &State, wire: &WireRequest) -> Outcome {
    let config = &state.config;
    if let Err(refused) = check_request(config, wire) {
        return Outcome::failed(
            refused.status.as_u16(),
            refused.message,
            refused.kind,
            refused.code,
        );
    }
    let json_object = match &wire.response_format {
        Some(WireResponseFormat::JsonSchema { .. })
            if config.refuse_json_schema.is_some() || config.no_schema_support =>
        {
            return Outcome::failed(
                400,
                "response_format type json_schema is not supported by this server".into(),
                "invalid_request_error",
                Some("unsupported_response_format"),
            );
        }
        Some(WireResponseFormat::JsonObject) if config.refuse_json_object.is_some() => {
            return Outcome::failed(
                400,
                "response_format type json_object is not supported by this server".into(),
                "invalid_request_error",
                Some("unsupported_response_format"),
            );
        }
        Some(WireResponseFormat::JsonObject) => true,
        _ => false,
    };
    let [fault_draw, failure_draw] = state.draws.next_uniforms::<2>();
    if failure_draw < config.batch_item_failure_rate {
        return server_error();
    }
    let fault = state.faults.pick(fault_draw);
    let prompt = prompt_tokens(wire);
    match fault {
        Fault::Fail500 | Fault::Hang => server_error(),
        Fault::Fail503 => Outcome::failed(
            503,
            "The engine is currently overloaded, please try again later.".into(),
            "server_error",
            Some("overloaded"),
        ),
        Fault::ContextLength => {
            let requested =
                (prompt + u64::from(wire.to_request().max_tokens)).max(CONTEXT_WINDOW + 1);
            Outcome::failed(
                400,
                format!(
                    "This model's maximum context length is {CONTEXT_WINDOW} tokens. However, you requested {requested} tokens. Please reduce the length of the messages or completion."
                ),
                "invalid_request_error",
                Some("context_length_exceeded"),
            )
        }
        Fault::None | Fault::MalformedJson | Fault::Truncate => {
            let options = rubricmill_llm::simulated::SimulatedOptions {
                judge_error_rate: config.judge_error_rate,
            };
            let answer = answer_for(wire, json_object, fault, &options);
            let completion_tokens = rubricmill_llm::estimate_tokens(&answer.content);
            Outcome::Answered {
                completion: completion_body(state, wire, answer, prompt, completion_tokens),
                prompt_tokens: prompt,
                completion_tokens,
            }
        }
    }
}

fn server_error() -> Outcome {
    Outcome::failed(
        500,
        "The server had an error while processing your request. Sorry about that!".into(),
        "server_error",
        Some("server_error"),
    )
}

/// Whether the next batch expires (`batch_expire_rate`).
fn draw_expiry(state: &State) -> bool {
    let [draw] = state.draws.next_uniforms::<1>();
    draw < state.config.batch_expire_rate
}

/// Whether a batch created at `started` has been processing for `batch_delay_ms`.
fn due(state: &State, started: Instant) -> bool {
    started.elapsed().as_millis() >= u128::from(state.config.batch_delay_ms)
}

/// Counts the tokens of an answered item in the server's token totals.
fn count_tokens(state: &State, prompt_tokens: u64, completion_tokens: u64) {
    use std::sync::atomic::Ordering;
    state
        .counters
        .prompt_tokens
        .fetch_add(prompt_tokens, Ordering::Relaxed);
    state
        .counters
        .completion_tokens
        .fetch_add(completion_tokens, Ordering::Relaxed);
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a request body of at most `limit` bytes; a larger one (declared or sent) is a 413.
async fn read_body(request: IncomingRequest, limit: u64) -> Result<Bytes, (StatusCode, String)> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the mock's batch_max_bytes ({limit} bytes)"),
        )
    };
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err((
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {error}"),
        )),
    }
}

/// The value of `name` in a query string (not percent-decoded: the values used here are plain).
pub(crate) fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bytes_response(status: StatusCode, body: Bytes, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_value_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    bytes_response(status, Bytes::from(value.to_string()), "application/json")
}

/// An OpenAI-style error answer.
fn openai_error(
    status: StatusCode,
    message: String,
    kind: &str,
    code: Option<&str>,
) -> Response<Body> {
    crate::server::error_response(status, message, kind, code)
}

/// Counts a new batch under `name` in the stats.
fn count_created(store: &BatchStore, name: &str) {
    store.count(|stats| {
        stats.batches_created += 1;
        *stats.batches_by_name.entry(name.to_owned()).or_default() += 1;
    });
}

/// The by-name key of a batch without a name.
const NO_NAME: &str = "-";

/// Newest-first paging: the items after the one with id `after`, at most `limit`.
fn page<'a, T>(
    newest_first: impl Iterator<Item = &'a T>,
    id: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
) -> (Vec<&'a T>, bool)
where
    T: 'a,
{
    let mut items = newest_first.peekable();
    if let Some(after) = after {
        for item in items.by_ref() {
            if id(item) == after {
                break;
            }
        }
    }
    let page: Vec<&T> = items.by_ref().take(limit).collect();
    let has_more = items.peek().is_some();
    (page, has_more)
}
