//! OpenAI's files and batches (and Azure OpenAI's, which differ in their paths, key header and
//! the `url` of a batch line): upload, list and download files; create, read, list and cancel
//! batches. Listings are newest first, paged with `limit` and `after`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::header;
use hyper::{Method, Response, StatusCode};
use rubricmill_llm::wire::WireRequest;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    NO_NAME, Outcome, answer_item, bytes_response, count_created, count_tokens, draw_expiry, due,
    json_value_response, lock, multipart, now_secs, openai_error, page, query_value, read_body,
};
use crate::server::{Body, IncomingRequest, KeyHeader, State};

/// Which API a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `/v1/...`, `Authorization: Bearer`, lines for `/v1/chat/completions`.
    OpenAi,
    /// `/openai/...?api-version=`, `api-key`, lines for `/chat/completions`.
    Azure,
}

impl Flavor {
    fn endpoint(self) -> &'static str {
        match self {
            Flavor::OpenAi => "/v1/chat/completions",
            Flavor::Azure => "/chat/completions",
        }
    }
}

/// The files and batches of the OpenAI-style endpoints.
#[derive(Debug, Default)]
pub(crate) struct OpenAiStore {
    next: u64,
    /// In creation order.
    files: Vec<StoredFile>,
    /// In creation order.
    batches: Vec<StoredBatch>,
}

#[derive(Debug)]
struct StoredFile {
    id: String,
    filename: String,
    purpose: String,
    content: Bytes,
    created_at: u64,
}

impl StoredFile {
    fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.content.len(),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": null,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    InProgress,
    Completed,
    Expired,
    Failed,
    Cancelled,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::InProgress => "in_progress",
            Phase::Completed => "completed",
            Phase::Expired => "expired",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug)]
struct StoredBatch {
    id: String,
    endpoint: String,
    input_file_id: String,
    metadata: Value,
    created_at: u64,
    started: Instant,
    phase: Phase,
    /// Validation errors of the input file: the batch fails.
    errors: Vec<Value>,
    /// The outcomes, until the batch ends and they become results files.
    items: Vec<(String, Outcome)>,
    total: u64,
    completed: u64,
    failed: u64,
    expire: bool,
    ended_at: Option<u64>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
}

impl StoredBatch {
    fn object(&self) -> Value {
        let ended = |phase: Phase| {
            if self.phase == phase {
                self.ended_at
            } else {
                None
            }
        };
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": if self.errors.is_empty() { Value::Null } else { json!({"object": "list", "data": self.errors}) },
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.phase.as_str(),
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600,
            "completed_at": ended(Phase::Completed),
            "failed_at": ended(Phase::Failed),
            "expired_at": ended(Phase::Expired),
            "cancelled_at": ended(Phase::Cancelled),
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        })
    }

    fn name(&self) -> &str {
        self.metadata
            .get(rubricmill_llm::batch::NAME_METADATA_KEY)
            .and_then(Value::as_str)
            .unwrap_or(NO_NAME)
    }
}

impl OpenAiStore {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn add_file(&mut self, filename: String, purpose: &str, content: Bytes) -> &StoredFile {
        let id = self.next_id("file-mock-");
        self.files.push(StoredFile {
            id,
            filename,
            purpose: purpose.into(),
            content,
            created_at: now_secs(),
        });
        self.files.last().expect("just pushed")
    }

    /// Ends every batch whose processing delay has passed: writes its results files and
    /// counts its items.
    fn settle(&mut self, state: &State) {
        let due_ids: Vec<usize> = self
            .batches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.phase == Phase::InProgress && due(state, b.started))
            .map(|(i, _)| i)
            .collect();
        for index in due_ids {
            self.end(state, index);
        }
    }

    fn end(&mut self, state: &State, index: usize) {
        let now = now_secs();
        let batch = &mut self.batches[index];
        batch.ended_at = Some(now);
        if !batch.errors.is_empty() {
            batch.phase = Phase::Failed;
            return;
        }
        let items = std::mem::take(&mut batch.items);
        let answered_upto = if batch.expire {
            items.len() / 2
        } else {
            items.len()
        };
        batch.phase = if batch.expire {
            Phase::Expired
        } else {
            Phase::Completed
        };
        let batch_id = batch.id.clone();
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let (mut completed, mut failed) = (0u64, 0u64);
        for (index, (custom_id, outcome)) in items.into_iter().enumerate() {
            let line_id = format!("batch_req_{batch_id}_{index}");
            let line = if index >= answered_upto {
                failed += 1;
                json!({
                    "id": line_id, "custom_id": custom_id, "response": null,
                    "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
                })
            } else {
                match outcome {
                    Outcome::Answered {
                        completion,
                        prompt_tokens,
                        completion_tokens,
                    } => {
                        completed += 1;
                        count_tokens(state, prompt_tokens, completion_tokens);
                        json!({
                            "id": line_id, "custom_id": custom_id,
                            "response": {"status_code": 200, "request_id": line_id, "body": completion},
                            "error": null,
                        })
                    }
                    Outcome::Failed { status, error } => {
                        failed += 1;
                        json!({
                            "id": line_id, "custom_id": custom_id,
                            "response": {"status_code": status, "request_id": line_id, "body": error},
                            "error": null,
                        })
                    }
                }
            };
            let target = if line["response"]["status_code"] == 200 {
                &mut output
            } else {
                &mut errors
            };
            serde_json::to_writer(&mut *target, &line).expect("lines serialize");
            target.push(b'\n');
        }
        let expired = batch.expire;
        batch.completed = completed;
        batch.failed = failed;
        let file_of = |store: &mut Self, lines: Vec<u8>, suffix: &str| {
            (!lines.is_empty()).then(|| {
                store
                    .add_file(
                        format!("{batch_id}_{suffix}.jsonl"),
                        "batch_output",
                        Bytes::from(lines),
                    )
                    .id
                    .clone()
            })
        };
        let output_file_id = file_of(self, output, "output");
        let error_file_id = file_of(self, errors, "error");
        let batch = &mut self.batches[index];
        batch.output_file_id = output_file_id;
        batch.error_file_id = error_file_id;
        state.batches.count(|stats| {
            stats.items_answered += completed;
            stats.items_failed += failed;
            stats.batches_expired += u64::from(expired);
        });
    }

    fn batch_index(&self, id: &str) -> Option<usize> {
        self.batches.iter().position(|b| b.id == id)
    }
}

pub(crate) async fn route(
    state: &Arc<State>,
    request: IncomingRequest,
    rest: String,
    flavor: Flavor,
) -> Response<Body> {
    let key = match flavor {
        Flavor::OpenAi => KeyHeader::Bearer,
        Flavor::Azure => KeyHeader::ApiKey,
    };
    if !key.accepts(state, request.headers()) {
        return openai_error(
            StatusCode::UNAUTHORIZED,
            "Incorrect API key provided. You can find your API key in the mock-llm flags (--api-key or MOCK_LLM_API_KEY).".into(),
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let query = request.uri().query().map(str::to_owned);
    let query = query.as_deref();
    match (request.method().clone(), segments.as_slice()) {
        (Method::POST, ["files"]) => upload(state, request).await,
        (Method::GET, ["files"]) => list_files(state, query),
        (Method::GET, ["files", id]) => with_file(state, id, |file| {
            json_value_response(StatusCode::OK, &file.object())
        }),
        (Method::GET, ["files", id, "content"]) => with_file(state, id, |file| {
            bytes_response(StatusCode::OK, file.content.clone(), "application/jsonl")
        }),
        (Method::POST, ["batches"]) => create(state, request, flavor).await,
        (Method::GET, ["batches"]) => list_batches(state, query),
        (Method::GET, ["batches", id]) => {
            let mut store = lock(&state.batches.openai);
            store.settle(state);
            match store.batch_index(id) {
                Some(index) => json_value_response(StatusCode::OK, &store.batches[index].object()),
                None => not_found("batch", id),
            }
        }
        (Method::POST, ["batches", id, "cancel"]) => cancel(state, id),
        _ => openai_error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown path or method: {} {}",
                request.method(),
                request.uri().path()
            ),
            "invalid_request_error",
            Some("not_found"),
        ),
    }
}

fn not_found(kind: &str, id: &str) -> Response<Body> {
    openai_error(
        StatusCode::NOT_FOUND,
        format!("No such {kind}: {id}"),
        "invalid_request_error",
        Some("not_found"),
    )
}

fn bad_request(message: String) -> Response<Body> {
    openai_error(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        None,
    )
}

fn with_file(
    state: &State,
    id: &str,
    answer: impl FnOnce(&StoredFile) -> Response<Body>,
) -> Response<Body> {
    let store = lock(&state.batches.openai);
    match store.files.iter().find(|f| f.id == id) {
        Some(file) => answer(file),
        None => not_found("file", id),
    }
}

async fn upload(state: &State, request: IncomingRequest) -> Response<Body> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(boundary) = multipart::boundary(&content_type) else {
        return bad_request("POST /files takes multipart/form-data".into());
    };
    // Room for the form around the file.
    let limit = state.config.batch_max_bytes.saturating_add(64 << 10);
    let body = match read_body(request, limit).await {
        Ok(body) => body,
        Err((status, message)) => {
            return openai_error(status, message, "invalid_request_error", None);
        }
    };
    let parts = match multipart::parse(&body, &boundary) {
        Ok(parts) => parts,
        Err(error) => return bad_request(format!("unreadable form: {error}")),
    };
    let purpose = parts
        .iter()
        .find(|p| p.name == "purpose")
        .map(|p| String::from_utf8_lossy(&p.data).trim().to_owned());
    let Some(file) = parts.into_iter().find(|p| p.name == "file") else {
        return bad_request("the form has no 'file' part".into());
    };
    let Some(purpose) = purpose else {
        return bad_request("the form has no 'purpose' part".into());
    };
    if file.data.len() as u64 > state.config.batch_max_bytes {
        return openai_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the file is larger than the mock's batch_max_bytes ({} bytes)",
                state.config.batch_max_bytes
            ),
            "invalid_request_error",
            None,
        );
    }
    let filename = file.filename.unwrap_or_else(|| "upload".into());
    let object = {
        let mut store = lock(&state.batches.openai);
        store.add_file(filename, &purpose, file.data).object()
    };
    state.batches.count(|stats| stats.files_uploaded += 1);
    json_value_response(StatusCode::OK, &object)
}

/// `limit` of a listing: `default` when absent, clamped to `1..=max`.
fn limit(query: Option<&str>, default: usize, max: usize) -> usize {
    query_value(query, "limit")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn list_files(state: &State, query: Option<&str>) -> Response<Body> {
    let purpose = query_value(query, "purpose");
    let limit = limit(query, 10_000, 10_000);
    let store = lock(&state.batches.openai);
    let matching = store
        .files
        .iter()
        .rev()
        .filter(|f| purpose.is_none_or(|p| f.purpose == p));
    let (data, has_more) = page(matching, |f| &f.id, query_value(query, "after"), limit);
    let data: Vec<Value> = data.iter().map(|f| f.object()).collect();
    json_value_response(StatusCode::OK, &listing(data, has_more))
}

fn listing(data: Vec<Value>, has_more: bool) -> Value {
    let first_id = data.first().map(|d| d["id"].clone());
    let last_id = data.last().map(|d| d["id"].clone());
    json!({"object": "list", "data": data, "first_id": first_id, "last_id": last_id, "has_more": has_more})
}

fn list_batches(state: &State, query: Option<&str>) -> Response<Body> {
    let limit = limit(query, 20, 100);
    let mut store = lock(&state.batches.openai);
    store.settle(state);
    let (data, has_more) = page(
        store.batches.iter().rev(),
        |b| &b.id,
        query_value(query, "after"),
        limit,
    );
    let data: Vec<Value> = data.iter().map(|b| b.object()).collect();
    json_value_response(StatusCode::OK, &listing(data, has_more))
}

#[derive(Debug, Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// One line of a batch input file.
#[derive(Debug, Deserialize)]
struct InputLine {
    custom_id: String,
    method: String,
    url: String,
    body: WireRequest,
}

async fn create(state: &Arc<State>, request: IncomingRequest, flavor: Flavor) -> Response<Body> {
    let body = match read_body(request, 1 << 20).await {
        Ok(body) => body,
        Err((status, message)) => {
            return openai_error(status, message, "invalid_request_error", None);
        }
    };
    let create: CreateBatch = match serde_json::from_slice(&body) {
        Ok(create) => create,
        Err(error) => return bad_request(format!("unreadable batch request: {error}")),
    };
    if create.endpoint != flavor.endpoint() {
        return bad_request(format!(
            "endpoint must be {} here, got {:?}",
            flavor.endpoint(),
            create.endpoint
        ));
    }
    if create.completion_window != "24h" {
        return bad_request(format!(
            "completion_window must be \"24h\", got {:?}",
            create.completion_window
        ));
    }
    let metadata = create.metadata.unwrap_or(Value::Null);
    if !(metadata.is_null() || metadata.is_object()) {
        return bad_request("metadata must be an object".into());
    }
    let content = {
        let store = lock(&state.batches.openai);
        match store.files.iter().find(|f| f.id == create.input_file_id) {
            Some(file) if file.purpose == "batch" => file.content.clone(),
            Some(_) => {
                return bad_request(format!(
                    "file {} was not uploaded with purpose batch",
                    create.input_file_id
                ));
            }
            None => return not_found("file", &create.input_file_id),
        }
    };
    // Answering thousands of items is CPU work: off the async threads.
    let answering = Arc::clone(state);
    let endpoint = flavor.endpoint();
    let checked =
        tokio::task::spawn_blocking(move || check_and_answer(&answering, &content, endpoint)).await;
    let (items, errors) = match checked {
        Ok(checked) => checked,
        Err(error) => {
            return openai_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not answer the batch: {error}"),
                "server_error",
                None,
            );
        }
    };
    let expire = draw_expiry(state);
    let mut store = lock(&state.batches.openai);
    let id = store.next_id("batch_mock_");
    let batch = StoredBatch {
        id,
        endpoint: create.endpoint,
        input_file_id: create.input_file_id,
        metadata,
        created_at: now_secs(),
        started: Instant::now(),
        phase: Phase::InProgress,
        total: items.len() as u64,
        items,
        errors,
        completed: 0,
        failed: 0,
        expire,
        ended_at: None,
        output_file_id: None,
        error_file_id: None,
    };
    count_created(&state.batches, batch.name());
    let object = batch.object();
    store.batches.push(batch);
    json_value_response(StatusCode::OK, &object)
}

/// Checks every line of an input file (JSON, method, url, unique custom ids) and answers the
/// items; any bad line fails the whole batch, as OpenAI's validation does.
fn check_and_answer(
    state: &State,
    content: &[u8],
    endpoint: &str,
) -> (Vec<(String, Outcome)>, Vec<Value>) {
    let mut errors = Vec::new();
    let mut lines = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (number, line) in content.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let error = |code: &str, message: String| json!({"code": code, "message": message, "param": null, "line": number + 1});
        match serde_json::from_slice::<InputLine>(line) {
            Err(e) => errors.push(error(
                "invalid_json_line",
                format!("line is not a valid request: {e}"),
            )),
            Ok(input) if input.method != "POST" || input.url != endpoint => errors.push(error(
                "invalid_url",
                format!(
                    "each line must be POST {endpoint}, got {} {}",
                    input.method, input.url
                ),
            )),
            Ok(input) if !seen.insert(input.custom_id.clone()) => errors.push(error(
                "duplicate_custom_id",
                format!("custom_id {} appears more than once", input.custom_id),
            )),
            Ok(input) => lines.push(input),
        }
    }
    if lines.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "the input file has no requests", "param": null, "line": null}));
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let items = lines
        .into_iter()
        .map(|line| {
            let outcome = answer_item(state, &line.body);
            (line.custom_id, outcome)
        })
        .collect();
    (items, errors)
}

fn cancel(state: &State, id: &str) -> Response<Body> {
    let mut store = lock(&state.batches.openai);
    store.settle(state);
    let Some(index) = store.batch_index(id) else {
        return not_found("batch", id);
    };
    let batch = &mut store.batches[index];
    if batch.phase != Phase::InProgress {
        return bad_request(format!(
            "batch {id} is {} and cannot be cancelled",
            batch.phase.as_str()
        ));
    }
    batch.phase = Phase::Cancelled;
    batch.ended_at = Some(now_secs());
    let cancelled = batch.items.len() as u64;
    batch.items.clear();
    batch.failed = cancelled;
    let object = batch.object();
    state.batches.count(|stats| stats.items_failed += cancelled);
    json_value_response(StatusCode::OK, &object)
}
