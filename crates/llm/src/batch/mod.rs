//! Provider batch APIs: many chat requests sent as one batch, answered within the provider's
//! window (24 hours) at about half the online price.
//!
//! [`BatchApi`] is what the runtime's batch mode speaks; each provider kind that has a batch
//! API implements it (OpenAI's files + batches, Azure OpenAI's, Anthropic's Message Batches).
//! A batch is submitted under a *name* derived from its content: submitting the same requests
//! again finds the batch already there ([`BatchApi::find`]) instead of paying twice.
//!
//! Answers come back as [`ChatResponse`]s, so the gateway parses, validates, caches and
//! accounts them exactly as online answers.
//!
//! Implementations: [`OpenAiBatch`] (OpenAI's `/v1/files` + `/v1/batches`, and the same API of
//! Azure OpenAI under `/openai/...?api-version=` with the `api-key` header) and
//! [`AnthropicBatch`] (Anthropic's Message Batches).
//!
//! Rules every caller keeps, checked by `submit` before anything is sent:
//! - a batch name is 1 to [`MAX_NAME_LEN`] characters of `A-Z a-z 0-9 _ - .`;
//! - a `custom_id` is 1 to [`MAX_CUSTOM_ID_LEN`] characters of `A-Z a-z 0-9 _ -`, unique
//!   within its batch. The limit leaves room for the name tag the Anthropic client puts in
//!   front of every id within Anthropic's 64 characters.
//!
//! How [`BatchApi::find`] keeps a resubmission from paying twice differs by provider, see
//! [`OpenAiBatch`] (the batch's metadata carries the name: found while the provider lists it)
//! and [`AnthropicBatch`] (Anthropic batches carry nothing the submitter chose: never found,
//! the caller's durable record is the only guard).

mod anthropic;
mod jsonl;
mod openai;

pub use crate::azure::AzureTarget;
pub use anthropic::{AnthropicBatch, NAME_TAG_LEN};
pub use openai::{NAME_METADATA_KEY, OpenAiBatch};

use rubricmill_core::spec::ProviderKind;
use serde::{Deserialize, Serialize};

use crate::{ChatRequest, ChatResponse, EndpointConfig, LlmError};

/// Longest batch name: it goes into OpenAI metadata and file names.
pub const MAX_NAME_LEN: usize = 128;
/// Longest `custom_id` of an item.
pub const MAX_CUSTOM_ID_LEN: usize = 40;

/// One request of a batch. `custom_id` is unique within the batch and names the answer: 1 to
/// [`MAX_CUSTOM_ID_LEN`] characters of `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchItem {
    pub custom_id: String,
    pub request: ChatRequest,
}

/// Where a submitted batch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Accepted and not finished: validating, in progress, finalizing.
    InProgress,
    /// Finished: every item has a result (an answer or a failure).
    Ended,
    /// The provider's window passed: finished items have results, the others failed as
    /// expired.
    Expired,
    /// The whole batch was refused or cancelled; no item was answered.
    Failed,
}

impl BatchState {
    /// Whether results can be read (possibly none).
    pub fn is_final(self) -> bool {
        !matches!(self, BatchState::InProgress)
    }
}

/// A batch's state and item counts as the provider reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    pub state: BatchState,
    pub total: u64,
    /// Items answered so far.
    pub completed: u64,
    /// Items that failed (errors, expiry).
    pub failed: u64,
    /// The provider's message when the whole batch failed.
    pub reason: Option<String>,
}

/// What one item of a finished batch came to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ItemResult {
    Answered {
        answer: ChatResponse,
    },
    /// Errored, expired or cancelled: `reason` says which. The reason of an item the
    /// provider's window ran out on starts with `batch_expired` (every provider), so the
    /// caller can tell expiry (resubmit or answer online) from an error answer.
    Failed {
        reason: String,
    },
}

/// A provider's batch API. Errors are classified as for online calls: `Retryable` for
/// network trouble, 429 and 5xx (the caller tries again later), `Fatal` for a refused key, an
/// endpoint without batch support (404 on the batch API itself) or a name or custom id that
/// breaks the rules above, `BadRecord` when the provider no longer knows the batch or file
/// asked for (404 on one id) or refused a request body (400).
#[async_trait::async_trait]
pub trait BatchApi: Send + Sync {
    /// `openai`, `azure` or `anthropic`.
    fn kind(&self) -> &'static str;

    /// The id of a batch submitted earlier under `name`, if the provider still has it: the
    /// submitter may have died before it recorded the id. OpenAI and Azure: the newest batch
    /// whose metadata carries the name, unless it failed or was cancelled (then the name may
    /// be submitted again); an expired one is found. Anthropic: always `None` (its batches
    /// carry no name), so the caller's durable record is the only guard there.
    async fn find(&self, name: &str) -> Result<Option<String>, LlmError>;

    /// Submits `items` as one batch named `name` and returns the provider's batch id.
    /// Uploading the same content twice is avoided where the provider allows it (an OpenAI
    /// file of the same name is reused). A batch over the provider's limits (OpenAI 50,000
    /// items or 200 MB, Anthropic 100,000 items or 256 MB) is refused as `Fatal` before
    /// anything is sent: split it.
    async fn submit(&self, name: &str, items: &[BatchItem]) -> Result<String, LlmError>;

    /// The batch's state and counts.
    async fn status(&self, id: &str) -> Result<BatchStatus, LlmError>;

    /// The results of a batch in a final state, by `custom_id` (as given to `submit`). Items
    /// the provider has no result for (a failed batch, an expired item without an error line)
    /// are left out. A batch not yet final is a `Retryable` error.
    async fn results(&self, id: &str) -> Result<Vec<(String, ItemResult)>, LlmError>;
}

/// The batch API of a provider kind (`llm.provider`), reached as its online provider is:
/// `openai` through [`OpenAiBatch::new`], `azure` through [`OpenAiBatch::azure`] with its
/// deployment and API version, `anthropic` through [`AnthropicBatch::new`]. The simulated
/// provider has no batch API.
pub fn batch_api(
    provider: ProviderKind,
    config: &crate::EndpointConfig,
    azure: Option<&AzureTarget>,
) -> Result<std::sync::Arc<dyn BatchApi>, LlmError> {
    Ok(match provider {
        ProviderKind::Openai => std::sync::Arc::new(OpenAiBatch::new(config)?),
        ProviderKind::Azure => {
            let target = azure.ok_or_else(|| {
                LlmError::Fatal("azure batches need llm.deployment and llm.api_version".into())
            })?;
            std::sync::Arc::new(OpenAiBatch::azure(config, target)?)
        }
        ProviderKind::Anthropic => std::sync::Arc::new(AnthropicBatch::new(config)?),
        ProviderKind::Simulated => {
            return Err(LlmError::Fatal(
                "llm.provider = \"simulated\" has no batch API: use llm.mode = \"online\"".into(),
            ));
        }
    })
}

/// Checks a batch name and its items against the rules every provider accepts.
pub fn check_batch(name: &str, items: &[BatchItem]) -> Result<(), LlmError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        return Err(LlmError::Fatal(format!(
            "batch name {name:?} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ - ."
        )));
    }
    if items.is_empty() {
        return Err(LlmError::Fatal(format!("batch {name} has no items")));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        check_custom_id(&item.custom_id)?;
        if !seen.insert(item.custom_id.as_str()) {
            return Err(LlmError::Fatal(format!(
                "custom_id {:?} appears twice in batch {name}",
                item.custom_id
            )));
        }
    }
    Ok(())
}

/// Checks one `custom_id`: 1 to [`MAX_CUSTOM_ID_LEN`] characters of `A-Z a-z 0-9 _ -`.
pub fn check_custom_id(custom_id: &str) -> Result<(), LlmError> {
    let ok = !custom_id.is_empty()
        && custom_id.len() <= MAX_CUSTOM_ID_LEN
        && custom_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LlmError::Fatal(format!(
            "custom_id {custom_id:?} must be 1 to {MAX_CUSTOM_ID_LEN} characters of A-Z a-z 0-9 _ -"
        )))
    }
}

/// What a request to a batch API is about, for the meaning of a 404.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The API itself (listing, creating, uploading): a 404 means there is no batch API.
    Api,
    /// One object (`batch`, `file`) by id: a 404 means the provider no longer has it.
    Object(&'static str, &'a str),
}

/// Refuses a batch of more items than the provider takes in one, before anything is sent.
pub(crate) fn check_item_count(name: &str, count: usize, max: usize) -> Result<(), LlmError> {
    if count > max {
        return Err(LlmError::Fatal(format!(
            "batch {name} has {count} items, more than the {max} a batch may hold: split it"
        )));
    }
    Ok(())
}

/// Refuses a batch whose `what` (its file, its request body) is larger than the provider
/// takes, before it is sent.
pub(crate) fn check_byte_count(
    name: &str,
    what: &str,
    len: usize,
    max: usize,
) -> Result<(), LlmError> {
    if len > max {
        return Err(LlmError::Fatal(format!(
            "the {what} of batch {name} has {len} bytes, more than the {max} a batch {what} may have: split it"
        )));
    }
    Ok(())
}

/// The HTTP side every batch client shares: the endpoint's pooled client (built by
/// [`crate::client::http_client`] with the provider's key headers) and its config. Every
/// error answer is classified as online calls are (see [`BatchApi`]); answers are read within
/// `llm.max_response_mb`.
pub(crate) struct BatchHttp {
    http: reqwest::Client,
    config: EndpointConfig,
}

impl std::fmt::Debug for BatchHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchHttp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl BatchHttp {
    /// A client for `config`'s endpoint with `auth` (the provider's key headers).
    pub fn new(
        config: &EndpointConfig,
        auth: reqwest::header::HeaderMap,
    ) -> Result<Self, LlmError> {
        Ok(Self {
            http: crate::client::http_client(config, auth)?,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// `GET url`: the successful response.
    pub async fn get(&self, url: &str, target: Target<'_>) -> Result<reqwest::Response, LlmError> {
        send(self.http.get(url), url, target, &self.config).await
    }

    /// `GET url`: its JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        target: Target<'_>,
    ) -> Result<T, LlmError> {
        let response = self.get(url, target).await?;
        read_json(response, url, &self.config).await
    }

    /// `POST url` to the API itself with a body of `content_type`: its JSON answer.
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T, LlmError> {
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        let response = send(request, url, Target::Api, &self.config).await?;
        read_json(response, url, &self.config).await
    }

    /// `GET url` of a results file: each JSON line handed to `each` (see
    /// [`jsonl::read_lines`]).
    pub async fn read_lines<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        target: Target<'_>,
        each: impl FnMut(T),
    ) -> Result<(), LlmError> {
        let response = self.get(url, target).await?;
        jsonl::read_lines(response, self.config.max_response_bytes, url, each).await
    }
}

/// Sends a request to a batch API and returns the successful response, or the error answer
/// classified as online calls are (see [`BatchApi`]).
async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
    target: Target<'_>,
    config: &EndpointConfig,
) -> Result<reqwest::Response, LlmError> {
    let response = request
        .send()
        .await
        .map_err(|e| crate::client::transport_error(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    // Error bodies are small; a runaway one is cut at 64 KiB.
    let bytes = crate::client::read_body(response, 64 << 10, url)
        .await
        .unwrap_or_default();
    let message = crate::client::error_message(&bytes);
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err(match target {
            Target::Api => LlmError::Fatal(format!(
                "{url} answered 404 ({message}): the endpoint has no batch API; check llm.base_url and llm.provider, or use llm.mode = \"online\""
            )),
            Target::Object(kind, id) => {
                LlmError::BadRecord(format!("{kind} {id} not found at {url} ({message})"))
            }
        });
    }
    Err(crate::client::classify_status(
        status,
        &headers,
        &message,
        "",
        url,
        &crate::client::key_hint(config),
    ))
}

/// Reads a JSON answer of a batch API (bounded by `llm.max_response_mb`).
async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    url: &str,
    config: &EndpointConfig,
) -> Result<T, LlmError> {
    let bytes = crate::client::read_body(response, config.max_response_bytes, url).await?;
    serde_json::from_slice(&bytes).map_err(|e| LlmError::Retryable {
        reason: format!("unreadable answer from {url}: {e}"),
        retry_after: None,
        throttled: false,
    })
}

/// At most this many pages of a listing are read (100 items a page): a server that keeps
/// saying `has_more` cannot keep a caller busy for ever.
pub(crate) const MAX_PAGES: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NOWHERE, endpoint, request};

    fn item(custom_id: &str) -> BatchItem {
        BatchItem {
            custom_id: custom_id.into(),
            request: request("m"),
        }
    }

    #[test]
    fn each_provider_kind_gets_its_batch_api() {
        let config = endpoint(NOWHERE);
        let target = AzureTarget {
            deployment: "d".into(),
            api_version: "2024-10-21".into(),
        };
        let kind = |provider, azure| batch_api(provider, &config, azure).map(|api| api.kind());
        assert_eq!(kind(ProviderKind::Openai, None), Ok("openai"));
        assert_eq!(kind(ProviderKind::Azure, Some(&target)), Ok("azure"));
        assert_eq!(kind(ProviderKind::Anthropic, None), Ok("anthropic"));
        assert!(matches!(
            kind(ProviderKind::Azure, None),
            Err(LlmError::Fatal(m)) if m.contains("llm.deployment")
        ));
        assert!(matches!(
            kind(ProviderKind::Simulated, None),
            Err(LlmError::Fatal(m)) if m.contains("llm.mode")
        ));
    }

    #[test]
    fn names_and_custom_ids_follow_the_rules() {
        assert!(check_batch("job-1.stage_a", &[item("r-0"), item("r_1")]).is_ok());
        let longest = "x".repeat(MAX_CUSTOM_ID_LEN);
        assert!(check_batch("n", &[item(&longest)]).is_ok());
        for (name, ids) in [
            ("", vec!["a"]),
            ("has space", vec!["a"]),
            ("n", vec![]),
            ("n", vec!["a", "a"]),
            ("n", vec![""]),
            ("n", vec!["a/b"]),
        ] {
            let items: Vec<BatchItem> = ids.iter().map(|id| item(id)).collect();
            assert!(
                matches!(check_batch(name, &items), Err(LlmError::Fatal(_))),
                "{name:?} {ids:?}"
            );
        }
        let too_long = "x".repeat(MAX_CUSTOM_ID_LEN + 1);
        assert!(matches!(
            check_batch("n", &[item(&too_long)]),
            Err(LlmError::Fatal(m)) if m.contains("40")
        ));
        assert!(check_batch(&"n".repeat(MAX_NAME_LEN + 1), &[item("a")]).is_err());
    }
}
