//! Anthropic's Message Batches: create (`POST /v1/messages/batches`), read, list (newest
//! first, `limit` and `after_id`), cancel, and the results JSONL at the batch's `results_url`.
//! Every item's `params` is answered by the Messages endpoint's own translation
//! ([`crate::anthropic::answer_params`]); the chat faults that fail a request (500, 503, hang,
//! context length) and `batch_item_failure_rate` make an item `errored`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    NO_NAME, bytes_response, count_created, count_tokens, draw_expiry, due, json_value_response,
    lock, now_secs, page, query_value, read_body,
};
use crate::anthropic::{answer_params, error, refuse_headers};
use crate::faults::Fault;
use crate::server::{Body, IncomingRequest, State};

/// Anthropic's limit on requests in one batch.
const MAX_REQUESTS: usize = 100_000;

/// The Message Batches of the server, in creation order.
#[derive(Debug, Default)]
pub(crate) struct MessageBatches {
    next: u64,
    batches: Vec<StoredBatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    InProgress,
    Canceling,
    Ended,
}

#[derive(Debug)]
enum ItemOutcome {
    Succeeded {
        message: Value,
        prompt_tokens: u64,
        output_tokens: u64,
    },
    Errored {
        kind: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    processing: u64,
    succeeded: u64,
    errored: u64,
    canceled: u64,
    expired: u64,
}

#[derive(Debug)]
struct StoredBatch {
    id: String,
    created_at: u64,
    started: Instant,
    phase: Phase,
    expire: bool,
    items: Vec<(String, ItemOutcome)>,
    counts: Counts,
    ended_at: Option<u64>,
    cancel_initiated_at: Option<u64>,
    results: Option<Bytes>,
}

impl StoredBatch {
    fn object(&self, host: &str) -> Value {
        let counts = self.counts;
        json!({
            "id": self.id,
            "type": "message_batch",
            "processing_status": match self.phase {
                Phase::InProgress => "in_progress",
                Phase::Canceling => "canceling",
                Phase::Ended => "ended",
            },
            "request_counts": {
                "processing": counts.processing,
                "succeeded": counts.succeeded,
                "errored": counts.errored,
                "canceled": counts.canceled,
                "expired": counts.expired,
            },
            "ended_at": self.ended_at.map(rfc3339),
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.created_at + 24 * 3600),
            "archived_at": null,
            "cancel_initiated_at": self.cancel_initiated_at.map(rfc3339),
            "results_url": (self.phase == Phase::Ended)
                .then(|| format!("http://{host}/v1/messages/batches/{}/results", self.id)),
        })
    }

    /// Ends the batch: writes its results and counts its items.
    fn end(&mut self, state: &State) {
        let items = std::mem::take(&mut self.items);
        let cancelled = self.phase == Phase::Canceling;
        let answered_upto = if self.expire {
            items.len() / 2
        } else {
            items.len()
        };
        let mut counts = Counts::default();
        let mut lines = Vec::new();
        for (index, (custom_id, outcome)) in items.into_iter().enumerate() {
            let result = if cancelled {
                counts.canceled += 1;
                json!({"type": "canceled"})
            } else if index >= answered_upto {
                counts.expired += 1;
                json!({"type": "expired"})
            } else {
                match outcome {
                    ItemOutcome::Succeeded {
                        message,
                        prompt_tokens,
                        output_tokens,
                    } => {
                        counts.succeeded += 1;
                        count_tokens(state, prompt_tokens, output_tokens);
                        json!({"type": "succeeded", "message": message})
                    }
                    ItemOutcome::Errored { kind, message } => {
                        counts.errored += 1;
                        json!({"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message}}})
                    }
                }
            };
            let line = json!({"custom_id": custom_id, "result": result});
            serde_json::to_writer(&mut lines, &line).expect("lines serialize");
            lines.push(b'\n');
        }
        self.counts = counts;
        self.phase = Phase::Ended;
        self.ended_at = Some(now_secs());
        self.results = Some(Bytes::from(lines));
        let expired = counts.expired > 0;
        state.batches.count(|stats| {
            stats.items_answered += counts.succeeded;
            stats.items_failed += counts.errored + counts.canceled + counts.expired;
            stats.batches_expired += u64::from(expired);
        });
    }
}

impl MessageBatches {
    /// Ends every batch whose processing delay has passed (a cancelled one at once).
    fn settle(&mut self, state: &State) {
        for batch in &mut self.batches {
            let ends = match batch.phase {
                Phase::InProgress => due(state, batch.started),
                Phase::Canceling => true,
                Phase::Ended => false,
            };
            if ends {
                batch.end(state);
            }
        }
    }
}

/// `ISO 8601` UTC time of a Unix time in seconds.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

pub(crate) async fn route(
    state: &Arc<State>,
    request: IncomingRequest,
    rest: String,
) -> Response<Body> {
    if let Some(refused) = refuse_headers(state, request.headers()) {
        return refused;
    }
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let query = request.uri().query().map(str::to_owned);
    let segments: Vec<&str> = rest
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (request.method().clone(), segments.as_slice()) {
        (Method::POST, []) => create(state, request, &host).await,
        (Method::GET, []) => list(state, query.as_deref(), &host),
        (Method::GET, [id]) => {
            let mut store = lock(&state.batches.anthropic);
            store.settle(state);
            match store.batches.iter().find(|b| b.id == *id) {
                Some(batch) => json_value_response(StatusCode::OK, &batch.object(&host)),
                None => not_found(id),
            }
        }
        (Method::GET, [id, "results"]) => {
            let mut store = lock(&state.batches.anthropic);
            store.settle(state);
            match store.batches.iter().find(|b| b.id == *id) {
                Some(StoredBatch {
                    results: Some(results),
                    ..
                }) => bytes_response(StatusCode::OK, results.clone(), "application/x-jsonl"),
                Some(_) => error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("message batch {id} has not ended yet: no results"),
                ),
                None => not_found(id),
            }
        }
        (Method::POST, [id, "cancel"]) => {
            let mut store = lock(&state.batches.anthropic);
            store.settle(state);
            match store.batches.iter_mut().find(|b| b.id == *id) {
                Some(batch) => {
                    if batch.phase == Phase::InProgress {
                        batch.phase = Phase::Canceling;
                        batch.cancel_initiated_at = Some(now_secs());
                    }
                    json_value_response(StatusCode::OK, &batch.object(&host))
                }
                None => not_found(id),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!(
                "unknown path or method: {} {}",
                request.method(),
                request.uri().path()
            ),
        ),
    }
}

fn not_found(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("message batch {id} not found"),
    )
}

fn list(state: &State, query: Option<&str>, host: &str) -> Response<Body> {
    let limit = query_value(query, "limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 1000);
    let mut store = lock(&state.batches.anthropic);
    store.settle(state);
    let (data, has_more) = page(
        store.batches.iter().rev(),
        |b| &b.id,
        query_value(query, "after_id"),
        limit,
    );
    let data: Vec<Value> = data.iter().map(|b| b.object(host)).collect();
    let first_id = data.first().map(|d| d["id"].clone());
    let last_id = data.last().map(|d| d["id"].clone());
    json_value_response(
        StatusCode::OK,
        &json!({"data": data, "has_more": has_more, "first_id": first_id, "last_id": last_id}),
    )
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    requests: Vec<BatchRequest>,
}

#[derive(Debug, Deserialize)]
struct BatchRequest {
    custom_id: String,
    params: Value,
}

/// Anthropic's rule for custom ids: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

async fn create(state: &Arc<State>, request: IncomingRequest, host: &str) -> Response<Body> {
    let body = match read_body(request, state.config.batch_max_bytes).await {
        Ok(body) => body,
        Err((status, message)) => {
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request_too_large"
            } else {
                "invalid_request_error"
            };
            return error(status, kind, message);
        }
    };
    let create: CreateBody = match serde_json::from_slice(&body) {
        Ok(create) => create,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("requests: {e}"),
            );
        }
    };
    if create.requests.is_empty() || create.requests.len() > MAX_REQUESTS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("requests: a batch holds 1 to {MAX_REQUESTS} requests"),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for item in &create.requests {
        if !valid_custom_id(&item.custom_id) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!(
                    "custom_id {:?} must be 1 to 64 characters of letters, digits, _ and -",
                    item.custom_id
                ),
            );
        }
        if !seen.insert(item.custom_id.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("custom_id {:?} appears more than once", item.custom_id),
            );
        }
    }
    let name = create.requests[0]
        .custom_id
        .split_once('_')
        .map_or(NO_NAME.to_owned(), |(prefix, _)| prefix.to_owned());
    // Answering thousands of items is CPU work: off the async threads.
    let answering = Arc::clone(state);
    let answered = tokio::task::spawn_blocking(move || {
        create
            .requests
            .into_iter()
            .map(|item| {
                let outcome = answer(&answering, &item.params);
                (item.custom_id, outcome)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let items = match answered {
        Ok(items) => items,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("could not answer the batch: {e}"),
            );
        }
    };
    let expire = draw_expiry(state);
    let mut store = lock(&state.batches.anthropic);
    store.next += 1;
    let batch = StoredBatch {
        id: format!("msgbatch_mock_{}", store.next),
        created_at: now_secs(),
        started: Instant::now(),
        phase: Phase::InProgress,
        expire,
        counts: Counts {
            processing: items.len() as u64,
            ..Counts::default()
        },
        items,
        ended_at: None,
        cancel_initiated_at: None,
        results: None,
    };
    count_created(&state.batches, &name);
    let object = batch.object(host);
    store.batches.push(batch);
    json_value_response(StatusCode::OK, &object)
}

/// One item: the faults that fail a request and `batch_item_failure_rate` make it errored,
/// otherwise the Messages endpoint's answer.
fn answer(state: &State, params: &Value) -> ItemOutcome {
    let [fault_draw, failure_draw] = state.draws.next_uniforms::<2>();
    let fault = state.faults.pick(fault_draw);
    if failure_draw < state.config.batch_item_failure_rate
        || matches!(fault, Fault::Fail500 | Fault::Hang)
    {
        return ItemOutcome::Errored {
            kind: "api_error",
            message: "Internal server error".into(),
        };
    }
    match fault {
        Fault::Fail503 => {
            return ItemOutcome::Errored {
                kind: "overloaded_error",
                message: "Overloaded".into(),
            };
        }
        Fault::ContextLength => {
            return ItemOutcome::Errored {
                kind: "invalid_request_error",
                message: "prompt is too long: the mock's context window is exceeded".into(),
            };
        }
        _ => {}
    }
    match answer_params(state, params) {
        Ok(message) => {
            let usage = &message["usage"];
            let count = |name: &str| usage[name].as_u64().unwrap_or(0);
            ItemOutcome::Succeeded {
                prompt_tokens: count("input_tokens")
                    + count("cache_read_input_tokens")
                    + count("cache_creation_input_tokens"),
                output_tokens: count("output_tokens"),
                message,
            }
        }
        Err(message) => ItemOutcome::Errored {
            kind: "invalid_request_error",
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn custom_ids_follow_anthropics_rule() {
        assert!(valid_custom_id("0123456789abcdef_rec-1"));
        assert!(valid_custom_id(&"a".repeat(64)));
        assert!(!valid_custom_id(&"a".repeat(65)));
        assert!(!valid_custom_id(""));
        assert!(!valid_custom_id("a b"));
    }
}
