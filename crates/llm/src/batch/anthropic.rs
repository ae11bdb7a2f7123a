//! Anthropic's Message Batches: `POST /v1/messages/batches` with every item's Messages
//! `params` (built as the online provider builds them, [`crate::anthropic::request_params`]),
//! `GET /v1/messages/batches/{id}` for the state, and the JSONL at the batch's `results_url`
//! for the answers, each `message` parsed as the online provider parses one
//! ([`crate::anthropic::parse_message`]).
//!
//! States: `in_progress` and `canceling` are in progress; `ended` is [`BatchState::Ended`],
//! or [`BatchState::Expired`] when any item expired (nothing is processing once a batch has
//! ended), or [`BatchState::Failed`] when the batch was cancelled before any item was answered
//! or errored.
//!
//! Finding a batch again: Anthropic batches carry nothing the submitter chose (no metadata, no
//! name), the listing shows no custom ids, and results exist only once a batch has ended, so
//! a batch in progress cannot be recognised. [`find`](BatchApi::find) therefore always answers
//! `None`, and the guarantee against paying twice is the caller's: record the batch name
//! durably before `submit` and the returned id right after it. Only a submitter killed between
//! Anthropic accepting the batch and the id being recorded (one HTTP round trip) leaves a
//! batch that a retry submits again. Every item's custom id is sent as
//! `<tag>_<custom_id>`, where the tag ([`AnthropicBatch::name_tag`]) is 16 hex characters
//! derived from the batch name, so the provider's console and results tell which batch an item
//! belongs to; [`results`](BatchApi::results) strips the tag again.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    BatchApi, BatchHttp, BatchItem, BatchState, BatchStatus, ItemResult, Target, check_batch,
    check_byte_count, check_item_count,
};
use crate::anthropic::{auth_headers, endpoint_url, parse_message, request_params};
use crate::{EndpointConfig, LlmError};
use rubricmill_core::spec::StructuredOutput;

/// Length of the name tag in front of every custom id.
pub const NAME_TAG_LEN: usize = 16;

// The longest custom id fits Anthropic's 64 characters with its tag and separator.
const _: () = assert!(NAME_TAG_LEN + 1 + super::MAX_CUSTOM_ID_LEN <= 64);

/// Anthropic's Message Batches API.
#[derive(Debug)]
pub struct AnthropicBatch {
    http: BatchHttp,
}

impl AnthropicBatch {
    /// Most requests Anthropic takes in one batch.
    pub const MAX_ITEMS: usize = 100_000;
    /// Largest batch request body Anthropic takes (256 MB).
    pub const MAX_BODY_BYTES: usize = 256 * 1000 * 1000;

    /// The Message Batches API under `config.base_url` (with or without `/v1`; empty for
    /// Anthropic's own), with `x-api-key` and `anthropic-version` on every request.
    pub fn new(config: &EndpointConfig) -> Result<Self, LlmError> {
        let auth = auth_headers(config.api_key.as_deref(), config.api_key_env.as_deref())?;
        Ok(Self {
            http: BatchHttp::new(config, auth)?,
        })
    }

    /// The tag of a batch name put in front of its items' custom ids: the first 16 hex
    /// characters of the name's BLAKE3 hash.
    pub fn name_tag(name: &str) -> String {
        blake3::hash(name.as_bytes()).to_hex()[..NAME_TAG_LEN].to_owned()
    }

    fn url(&self, path: &str) -> String {
        endpoint_url(&self.http.config().base_url, path)
    }

    /// The request body of a batch: each item's tagged custom id and its Messages params.
    pub fn batch_body(&self, name: &str, items: &[BatchItem]) -> Value {
        let tag = Self::name_tag(name);
        let requests: Vec<Value> = items
            .iter()
            .map(|item| {
                // As the online provider: `none` sends no tool, the prompt's instructions alone.
                let params = if self.http.config().structured_output == StructuredOutput::None {
                    let mut plain = item.request.clone();
                    plain.response_format = None;
                    request_params(&plain)
                } else {
                    request_params(&item.request)
                };
                json!({"custom_id": format!("{tag}_{}", item.custom_id), "params": params})
            })
            .collect();
        json!({ "requests": requests })
    }

    async fn batch(&self, id: &str) -> Result<MessageBatch, LlmError> {
        let url = self.url(&format!("messages/batches/{id}"));
        self.http.get_json(&url, Target::Object("batch", id)).await
    }
}

#[async_trait::async_trait]
impl BatchApi for AnthropicBatch {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    /// Always `None`: see the module documentation for why and what guards against paying
    /// twice instead.
    async fn find(&self, _name: &str) -> Result<Option<String>, LlmError> {
        Ok(None)
    }

    async fn submit(&self, name: &str, items: &[BatchItem]) -> Result<String, LlmError> {
        check_batch(name, items)?;
        check_item_count(name, items.len(), Self::MAX_ITEMS)?;
        let body = serde_json::to_vec(&self.batch_body(name, items)).expect("bodies serialize");
        check_byte_count(name, "body", body.len(), Self::MAX_BODY_BYTES)?;
        let url = self.url("messages/batches");
        let batch: MessageBatch = self.http.post_json(&url, "application/json", body).await?;
        tracing::info!(batch = %batch.id, name, items = items.len(), provider = "anthropic", "submitted a batch");
        Ok(batch.id)
    }

    async fn status(&self, id: &str) -> Result<BatchStatus, LlmError> {
        Ok(self.batch(id).await?.status())
    }

    async fn results(&self, id: &str) -> Result<Vec<(String, ItemResult)>, LlmError> {
        let batch = self.batch(id).await?;
        if batch.processing_status != "ended" {
            return Err(LlmError::Retryable {
                reason: format!("batch {id} is still {}", batch.processing_status),
                retry_after: None,
                throttled: false,
            });
        }
        let url = batch
            .results_url
            .clone()
            .unwrap_or_else(|| self.url(&format!("messages/batches/{id}/results")));
        let mut results = Vec::new();
        self.http
            .read_lines(
                &url,
                Target::Object("batch results", id),
                |line: ResultLine| {
                    let custom_id = strip_tag(&line.custom_id).to_owned();
                    results.push((custom_id, line.result.into_result()));
                },
            )
            .await?;
        Ok(results)
    }
}

/// A custom id without the name tag in front (`<16 hex>_`), when it has one.
fn strip_tag(custom_id: &str) -> &str {
    match custom_id.split_at_checked(NAME_TAG_LEN) {
        Some((tag, rest))
            if tag.bytes().all(|b| b.is_ascii_hexdigit()) && rest.starts_with('_') =>
        {
            &rest[1..]
        }
        _ => custom_id,
    }
}

#[derive(Debug, Deserialize)]
struct MessageBatch {
    id: String,
    #[serde(default)]
    processing_status: String,
    #[serde(default)]
    request_counts: Counts,
    #[serde(default)]
    results_url: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Counts {
    #[serde(default)]
    processing: u64,
    #[serde(default)]
    succeeded: u64,
    #[serde(default)]
    errored: u64,
    #[serde(default)]
    canceled: u64,
    #[serde(default)]
    expired: u64,
}

impl MessageBatch {
    fn status(&self) -> BatchStatus {
        let counts = self.request_counts;
        let total = counts.processing
            + counts.succeeded
            + counts.errored
            + counts.canceled
            + counts.expired;
        let (state, reason) = match self.processing_status.as_str() {
            "ended" if counts.expired > 0 => (
                BatchState::Expired,
                Some(format!(
                    "{} items expired before they were answered",
                    counts.expired
                )),
            ),
            "ended" if counts.canceled > 0 && counts.succeeded + counts.errored == 0 => (
                BatchState::Failed,
                Some("the batch was cancelled before any item was answered".to_owned()),
            ),
            "ended" => (BatchState::Ended, None),
            // in_progress, canceling, and anything new.
            _ => (BatchState::InProgress, None),
        };
        BatchStatus {
            state,
            total,
            completed: counts.succeeded,
            failed: counts.errored + counts.canceled + counts.expired,
            reason,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ResultLine {
    custom_id: String,
    result: ResultBody,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResultBody {
    Succeeded {
        message: Value,
    },
    Errored {
        #[serde(default)]
        error: Value,
    },
    Canceled,
    Expired,
    #[serde(other)]
    Unknown,
}

impl ResultBody {
    fn into_result(self) -> ItemResult {
        let reason = match self {
            ResultBody::Succeeded { message } => match parse_message(&message) {
                Ok(answer) => return ItemResult::Answered { answer },
                Err(error) => error.to_string(),
            },
            ResultBody::Errored { error } => {
                // `{"type": "error", "error": {"type", "message"}}`, or the inner object.
                let inner = error.get("error").unwrap_or(&error);
                let text = |name: &str| inner.get(name).and_then(Value::as_str).unwrap_or("");
                format!("errored: {}: {}", text("type"), text("message"))
            }
            ResultBody::Canceled => "canceled: the batch was cancelled".into(),
            ResultBody::Expired => {
                "batch_expired: the batch's window passed before the item was answered".into()
            }
            ResultBody::Unknown => "the result has an unknown type".into(),
        };
        ItemResult::Failed { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: Value) -> (String, ItemResult) {
        let line: ResultLine = serde_json::from_value(json).unwrap();
        (
            strip_tag(&line.custom_id).to_owned(),
            line.result.into_result(),
        )
    }

    #[test]
    fn tags_are_stable_and_stripped_from_custom_ids() {
        let tag = AnthropicBatch::name_tag("job-7.stage0.shard12");
        assert_eq!(tag.len(), NAME_TAG_LEN);
        assert_eq!(tag, AnthropicBatch::name_tag("job-7.stage0.shard12"));
        assert_ne!(tag, AnthropicBatch::name_tag("job-7.stage0.shard13"));
        assert_eq!(strip_tag(&format!("{tag}_rec-3")), "rec-3");
        assert_eq!(strip_tag("rec-3"), "rec-3");
        assert_eq!(strip_tag("0123456789abcdefXrec"), "0123456789abcdefXrec");
    }

    #[test]
    fn results_become_answers_or_failures_with_reasons() {
        let (id, answered) = line(json!({
            "custom_id": "0123456789abcdef_a",
            "result": {"type": "succeeded", "message": {
                "type": "message", "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "task", "input": {"x": 1}}],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 3}
            }}
        }));
        assert_eq!(id, "a");
        match answered {
            ItemResult::Answered { answer } => {
                assert_eq!(answer.content, r#"{"x":1}"#);
                assert_eq!(
                    (answer.usage.prompt_tokens, answer.usage.completion_tokens),
                    (7, 3)
                );
            }
            other => panic!("{other:?}"),
        }
        let (_, errored) = line(json!({
            "custom_id": "b",
            "result": {"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "boom"}}}
        }));
        assert_eq!(
            errored,
            ItemResult::Failed {
                reason: "errored: api_error: boom".into()
            }
        );
        let (_, expired) = line(json!({"custom_id": "c", "result": {"type": "expired"}}));
        assert!(
            matches!(expired, ItemResult::Failed { reason } if reason.starts_with("batch_expired"))
        );
        let (_, canceled) = line(json!({"custom_id": "d", "result": {"type": "canceled"}}));
        assert!(
            matches!(canceled, ItemResult::Failed { reason } if reason.starts_with("canceled"))
        );
    }

    #[test]
    fn processing_statuses_map_to_states() {
        let batch = |status: &str, counts: Value| {
            serde_json::from_value::<MessageBatch>(
                json!({"id": "b", "processing_status": status, "request_counts": counts}),
            )
            .unwrap()
            .status()
        };
        let running = batch("in_progress", json!({"processing": 4}));
        assert_eq!((running.state, running.total), (BatchState::InProgress, 4));
        assert_eq!(
            batch("canceling", json!({"processing": 1})).state,
            BatchState::InProgress
        );
        let ended = batch("ended", json!({"succeeded": 3, "errored": 1}));
        assert_eq!(
            (ended.state, ended.total, ended.completed, ended.failed),
            (BatchState::Ended, 4, 3, 1)
        );
        let expired = batch("ended", json!({"succeeded": 2, "expired": 2}));
        assert_eq!((expired.state, expired.failed), (BatchState::Expired, 2));
        let cancelled = batch("ended", json!({"canceled": 4}));
        assert_eq!(cancelled.state, BatchState::Failed);
    }
}
