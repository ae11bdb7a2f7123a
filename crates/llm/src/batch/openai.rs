//! OpenAI's Batch API, and Azure OpenAI's copy of it.
//!
//! A batch is a JSONL file of requests (one line per item: `custom_id`, `method`, `url`, and
//! the body the online provider sends) uploaded with `POST /files` (`purpose=batch`, file name
//! `<name>.jsonl`), then `POST /batches` with the file's id, the endpoint, the 24-hour window
//! and `metadata.rubricmill_batch = <name>`. Results come as two JSONL files (answers, errors)
//! read with `GET /files/{id}/content`.
//!
//! Idempotency: a file already uploaded under `<name>.jsonl` with the same size is reused, and
//! [`find`](BatchApi::find) lists the batches (newest first, up to 10,000) for one whose
//! metadata carries the name. A batch that `failed` (refused at validation) or was
//! `cancelled`/`cancelling` is not found, so the same name can be submitted again; an
//! `expired` one is found: its answered items have results, the rest fail as
//! `batch_expired`, and the caller resubmits those under a new name.
//!
//! Azure OpenAI speaks the same API under `{resource}/openai/files?api-version=…` and
//! `/openai/batches?api-version=…` with the key in an `api-key` header; its JSONL lines say
//! `"url": "/chat/completions"` and name the deployment as the model.

use serde::Deserialize;

use super::{
    BatchApi, BatchHttp, BatchItem, BatchState, BatchStatus, ItemResult, MAX_PAGES, Target,
    check_batch, check_byte_count, check_item_count,
};
use crate::azure::{self, AzureTarget};
use crate::client::{answer_from_wire, bearer_auth, initial_body};
use crate::wire::WireResponse;
use crate::{EndpointConfig, LlmError};

/// The metadata key that carries a batch's name.
pub const NAME_METADATA_KEY: &str = "rubricmill_batch";

#[derive(Debug, Clone)]
enum Flavor {
    /// `base` ends in `/v1`.
    OpenAi { base: String },
    /// `base` is the resource endpoint (see [`crate::azure::url`]).
    Azure { base: String, target: AzureTarget },
}

/// The Batch API of OpenAI (and of servers that copy it) or of Azure OpenAI.
#[derive(Debug)]
pub struct OpenAiBatch {
    http: BatchHttp,
    flavor: Flavor,
}

impl OpenAiBatch {
    /// Most requests OpenAI takes in one batch.
    pub const MAX_ITEMS: usize = 50_000;
    /// Largest batch file OpenAI takes (200 MB).
    pub const MAX_FILE_BYTES: usize = 200 * 1000 * 1000;

    /// OpenAI's Batch API at `config.base_url` (ending in `/v1`), the key as a bearer token.
    pub fn new(config: &EndpointConfig) -> Result<Self, LlmError> {
        Ok(Self {
            http: BatchHttp::new(config, bearer_auth(config)?)?,
            flavor: Flavor::OpenAi {
                base: config.base_url.trim_end_matches('/').to_owned(),
            },
        })
    }

    /// Azure OpenAI's Batch API: `config.base_url` is the resource endpoint
    /// (`https://NAME.openai.azure.com`, with or without `/openai`), the key goes in `api-key`.
    pub fn azure(config: &EndpointConfig, target: &AzureTarget) -> Result<Self, LlmError> {
        if target.deployment.is_empty() || target.api_version.is_empty() {
            return Err(LlmError::Fatal(
                "azure batches need llm.deployment and llm.api_version".into(),
            ));
        }
        let auth = azure::auth_headers(config.api_key.as_deref(), config.api_key_env.as_deref())?;
        Ok(Self {
            http: BatchHttp::new(config, auth)?,
            flavor: Flavor::Azure {
                base: config.base_url.clone(),
                target: target.clone(),
            },
        })
    }

    /// The URL of an API path (`/files`, `/batches/ID`) with its query.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in query {
            pairs.append_pair(key, value);
        }
        let query = pairs.finish();
        match &self.flavor {
            Flavor::OpenAi { base } if query.is_empty() => format!("{base}{path}"),
            Flavor::OpenAi { base } => format!("{base}{path}?{query}"),
            Flavor::Azure { base, target } => {
                let url = azure::url(base, path, &target.api_version);
                if query.is_empty() {
                    url
                } else {
                    format!("{url}&{query}")
                }
            }
        }
    }

    /// The JSONL batch file: one line per item, each carrying the online body.
    pub fn batch_file(&self, items: &[BatchItem]) -> Vec<u8> {
        let (url, deployment) = match &self.flavor {
            Flavor::OpenAi { .. } => ("/v1/chat/completions", None),
            Flavor::Azure { target, .. } => ("/chat/completions", Some(&target.deployment)),
        };
        let mut file = Vec::new();
        for item in items {
            let mut body = initial_body(&item.request, self.http.config().structured_output);
            if let Some(deployment) = deployment {
                body.model.clone_from(deployment);
            }
            let line = serde_json::json!({
                "custom_id": item.custom_id,
                "method": "POST",
                "url": url,
                "body": body,
            });
            serde_json::to_writer(&mut file, &line).expect("batch lines serialize");
            file.push(b'\n');
        }
        file
    }

    /// A file uploaded earlier as `filename` with exactly `size` bytes, still usable.
    async fn existing_file(&self, filename: &str, size: u64) -> Result<Option<String>, LlmError> {
        self.first_listed("/files", &[("purpose", "batch")], |file: &FileObject| {
            file.filename == filename
                && file.bytes == Some(size)
                && !matches!(file.status.as_deref(), Some("error" | "deleted"))
        })
        .await
    }

    /// The id of the first object of the listing at `path` (with `query`, newest first, 100 a
    /// page, at most [`MAX_PAGES`] pages) that `wanted` picks.
    async fn first_listed<T: serde::de::DeserializeOwned + HasId>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        wanted: impl Fn(&T) -> bool,
    ) -> Result<Option<String>, LlmError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut pairs = query.to_vec();
            pairs.push(("limit", "100"));
            if let Some(after) = &after {
                pairs.push(("after", after));
            }
            let url = self.url(path, &pairs);
            let page: Page<T> = self.http.get_json(&url, Target::Api).await?;
            if let Some(found) = page.data.iter().find(|object| wanted(object)) {
                return Ok(Some(found.id().to_owned()));
            }
            match page.next_after() {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(None)
    }

    /// Uploads the batch file as `filename` (multipart: `purpose=batch`, `file`).
    async fn upload(&self, filename: &str, content: Vec<u8>) -> Result<String, LlmError> {
        let boundary = format!("rubricmill-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(content.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = self.url("/files", &[]);
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let file: FileObject = self.http.post_json(&url, &content_type, body).await?;
        tracing::info!(file = %file.id, filename, "uploaded a batch file");
        Ok(file.id)
    }

    async fn batch(&self, id: &str) -> Result<BatchObject, LlmError> {
        let url = self.url(&format!("/batches/{id}"), &[]);
        self.http.get_json(&url, Target::Object("batch", id)).await
    }

    /// Reads one results file (answers or errors) into `results`.
    async fn read_results_file(
        &self,
        file_id: &str,
        results: &mut Vec<(String, ItemResult)>,
    ) -> Result<(), LlmError> {
        let url = self.url(&format!("/files/{file_id}/content"), &[]);
        self.http
            .read_lines(&url, Target::Object("file", file_id), |line: ResultLine| {
                results.push((line.custom_id.clone(), line.into_result()));
            })
            .await
    }
}

#[async_trait::async_trait]
impl BatchApi for OpenAiBatch {
    fn kind(&self) -> &'static str {
        match self.flavor {
            Flavor::OpenAi { .. } => "openai",
            Flavor::Azure { .. } => "azure",
        }
    }

    async fn find(&self, name: &str) -> Result<Option<String>, LlmError> {
        self.first_listed("/batches", &[], |batch: &BatchObject| {
            batch.name() == Some(name)
                && !matches!(batch.status.as_str(), "failed" | "cancelled" | "cancelling")
        })
        .await
    }

    async fn submit(&self, name: &str, items: &[BatchItem]) -> Result<String, LlmError> {
        check_batch(name, items)?;
        check_item_count(name, items.len(), Self::MAX_ITEMS)?;
        let content = self.batch_file(items);
        check_byte_count(name, "file", content.len(), Self::MAX_FILE_BYTES)?;
        let filename = format!("{name}.jsonl");
        let file_id = match self.existing_file(&filename, content.len() as u64).await? {
            Some(id) => {
                tracing::info!(file = %id, filename, "reusing an uploaded batch file");
                id
            }
            None => self.upload(&filename, content).await?,
        };
        let endpoint = match self.flavor {
            Flavor::OpenAi { .. } => "/v1/chat/completions",
            Flavor::Azure { .. } => "/chat/completions",
        };
        let url = self.url("/batches", &[]);
        let body = serde_json::json!({
            "input_file_id": file_id,
            "endpoint": endpoint,
            "completion_window": "24h",
            "metadata": { NAME_METADATA_KEY: name },
        });
        let batch: BatchObject = self
            .http
            .post_json(&url, "application/json", body.to_string().into_bytes())
            .await?;
        tracing::info!(batch = %batch.id, name, items = items.len(), provider = self.kind(), "submitted a batch");
        Ok(batch.id)
    }

    async fn status(&self, id: &str) -> Result<BatchStatus, LlmError> {
        Ok(self.batch(id).await?.status())
    }

    async fn results(&self, id: &str) -> Result<Vec<(String, ItemResult)>, LlmError> {
        let batch = self.batch(id).await?;
        let status = batch.status();
        if !status.state.is_final() {
            return Err(LlmError::Retryable {
                reason: format!("batch {id} is still {}", batch.status),
                retry_after: None,
                throttled: false,
            });
        }
        let mut results = Vec::new();
        for file_id in [&batch.output_file_id, &batch.error_file_id]
            .into_iter()
            .flatten()
        {
            self.read_results_file(file_id, &mut results).await?;
        }
        Ok(results)
    }
}

/// A page of a listing: `{"data": [...], "has_more", "last_id"}`.
#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

trait HasId {
    fn id(&self) -> &str;
}

impl<T: HasId> Page<T> {
    /// The cursor of the next page, when there is one.
    fn next_after(&self) -> Option<String> {
        if !self.has_more {
            return None;
        }
        self.last_id
            .clone()
            .or_else(|| self.data.last().map(|item| item.id().to_owned()))
    }
}

#[derive(Debug, Deserialize)]
struct FileObject {
    id: String,
    #[serde(default)]
    filename: String,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default)]
    status: Option<String>,
}

impl HasId for FileObject {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Deserialize)]
struct BatchObject {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    request_counts: Option<RequestCounts>,
    #[serde(default)]
    errors: Option<BatchErrors>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl HasId for BatchObject {
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct RequestCounts {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    failed: u64,
}

#[derive(Debug, Default, Deserialize)]
struct BatchErrors {
    #[serde(default)]
    data: Vec<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    line: Option<u64>,
}

impl BatchObject {
    fn name(&self) -> Option<&str> {
        self.metadata.as_ref()?.get(NAME_METADATA_KEY)?.as_str()
    }

    fn status(&self) -> BatchStatus {
        let state = match self.status.as_str() {
            "completed" => BatchState::Ended,
            "expired" => BatchState::Expired,
            "failed" | "cancelled" => BatchState::Failed,
            // validating, in_progress, finalizing, cancelling, and anything new.
            _ => BatchState::InProgress,
        };
        let counts = self.request_counts.unwrap_or_default();
        let reason = match state {
            BatchState::Failed => Some(self.failure_reason()),
            BatchState::Expired => {
                Some("the batch expired before every item was answered".to_owned())
            }
            _ => None,
        };
        BatchStatus {
            state,
            total: counts.total,
            completed: counts.completed,
            failed: counts.failed,
            reason,
        }
    }

    fn failure_reason(&self) -> String {
        let details: Vec<String> = self
            .errors
            .iter()
            .flat_map(|errors| &errors.data)
            .take(5)
            .map(|error| {
                let mut text = error.message.clone().unwrap_or_default();
                if let Some(code) = &error.code {
                    text = format!("{code}: {text}");
                }
                if let Some(line) = error.line {
                    text = format!("{text} (line {line})");
                }
                text
            })
            .collect();
        if details.is_empty() {
            format!("batch {}", self.status)
        } else {
            format!("batch {}: {}", self.status, details.join("; "))
        }
    }
}

/// One line of a results file: an answer (`response`) or an error.
#[derive(Debug, Deserialize)]
struct ResultLine {
    custom_id: String,
    #[serde(default)]
    response: Option<ResultResponse>,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ResultResponse {
    status_code: u16,
    #[serde(default)]
    body: serde_json::Value,
}

impl ResultLine {
    fn into_result(self) -> ItemResult {
        if let Some(error) = self.error {
            let code = error.code.unwrap_or_else(|| "error".into());
            let message = error.message.unwrap_or_default();
            return ItemResult::Failed {
                reason: format!("{code}: {message}"),
            };
        }
        let Some(response) = self.response else {
            return ItemResult::Failed {
                reason: "the results line has neither a response nor an error".into(),
            };
        };
        if response.status_code != 200 {
            let message = crate::client::error_message(response.body.to_string().as_bytes());
            return ItemResult::Failed {
                reason: format!("{}: {message}", response.status_code),
            };
        }
        let parsed = serde_json::from_value::<WireResponse>(response.body)
            .map_err(|e| LlmError::BadRecord(format!("unreadable answer body: {e}")))
            .and_then(answer_from_wire);
        match parsed {
            Ok(answer) => ItemResult::Answered { answer },
            Err(error) => ItemResult::Failed {
                reason: error.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChatResponse;
    use crate::TokenUsage;
    use crate::testing::{NOWHERE, endpoint, request};

    fn line(json: serde_json::Value) -> ItemResult {
        serde_json::from_value::<ResultLine>(json)
            .unwrap()
            .into_result()
    }

    #[test]
    fn result_lines_become_answers_or_failures_with_reasons() {
        let answered = line(serde_json::json!({
            "id": "r1", "custom_id": "a",
            "response": {"status_code": 200, "body": {
                "choices": [{"message": {"content": "{\"x\":1}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3}
            }},
            "error": null
        }));
        assert_eq!(
            answered,
            ItemResult::Answered {
                answer: ChatResponse {
                    content: "{\"x\":1}".into(),
                    finish_reason: "stop".into(),
                    usage: TokenUsage {
                        prompt_tokens: 7,
                        completion_tokens: 3
                    },
                }
            }
        );
        let refused = line(serde_json::json!({
            "custom_id": "b",
            "response": {"status_code": 200, "body": {
                "choices": [{"message": {"content": null, "refusal": "no"}, "finish_reason": "stop"}]
            }}
        }));
        assert!(matches!(refused, ItemResult::Failed { reason } if reason.contains("refused: no")));
        let server_error = line(serde_json::json!({
            "custom_id": "c",
            "response": {"status_code": 500, "body": {"error": {"message": "boom", "code": "server_error"}}}
        }));
        assert!(
            matches!(server_error, ItemResult::Failed { reason } if reason == "500: boom (server_error)")
        );
        let expired = line(serde_json::json!({
            "custom_id": "d", "response": null,
            "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}
        }));
        assert!(
            matches!(expired, ItemResult::Failed { reason } if reason.starts_with("batch_expired: "))
        );
    }

    #[tokio::test]
    async fn batches_over_the_provider_limit_are_refused_before_anything_is_sent() {
        // Nothing listens on port 9: any request would fail as retryable, not fatal.
        let api = OpenAiBatch::new(&endpoint(NOWHERE)).unwrap();
        let request = request("m");
        let items: Vec<BatchItem> = (0..=OpenAiBatch::MAX_ITEMS)
            .map(|i| BatchItem {
                custom_id: format!("r{i}"),
                request: request.clone(),
            })
            .collect();
        match api.submit("big", &items).await {
            Err(LlmError::Fatal(message)) => assert!(message.contains("split it"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            api.submit("small", &items[..1]).await,
            Err(LlmError::Retryable { .. })
        ));
    }

    #[test]
    fn statuses_map_to_states() {
        let batch = |json: serde_json::Value| serde_json::from_value::<BatchObject>(json).unwrap();
        for (status, state) in [
            ("validating", BatchState::InProgress),
            ("in_progress", BatchState::InProgress),
            ("finalizing", BatchState::InProgress),
            ("cancelling", BatchState::InProgress),
            ("completed", BatchState::Ended),
            ("expired", BatchState::Expired),
            ("cancelled", BatchState::Failed),
        ] {
            assert_eq!(
                batch(serde_json::json!({"id": "b", "status": status}))
                    .status()
                    .state,
                state,
                "{status}"
            );
        }
        let failed = batch(serde_json::json!({
            "id": "b", "status": "failed",
            "request_counts": {"total": 3, "completed": 0, "failed": 0},
            "errors": {"data": [{"code": "invalid_json_line", "message": "bad line", "line": 2}]}
        }))
        .status();
        assert_eq!((failed.state, failed.total), (BatchState::Failed, 3));
        assert_eq!(
            failed.reason.as_deref(),
            Some("batch failed: invalid_json_line: bad line (line 2)")
        );
    }
}
