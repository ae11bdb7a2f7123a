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

use serde::{Deserialize, Serialize};

use crate::{ChatRequest, ChatResponse, LlmError};

/// One request of a batch. `custom_id` is unique within the batch and names the answer.
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
    /// Errored, expired or cancelled: `reason` says which.
    Failed {
        reason: String,
    },
}

/// A provider's batch API. Errors are classified as for online calls: `Retryable` for
/// network trouble, 429 and 5xx (the caller tries again later), `Fatal` for a refused key or
/// an endpoint without batch support.
#[async_trait::async_trait]
pub trait BatchApi: Send + Sync {
    /// `openai`, `azure` or `anthropic`.
    fn kind(&self) -> &'static str;

    /// The id of a batch submitted earlier under `name`, if the provider still has it: the
    /// submitter may have died before it recorded the id.
    async fn find(&self, name: &str) -> Result<Option<String>, LlmError>;

    /// Submits `items` as one batch named `name` and returns the provider's batch id.
    /// Uploading the same content twice is avoided where the provider allows it (an OpenAI
    /// file of the same name is reused).
    async fn submit(&self, name: &str, items: &[BatchItem]) -> Result<String, LlmError>;

    /// The batch's state and counts.
    async fn status(&self, id: &str) -> Result<BatchStatus, LlmError>;

    /// The results of a batch in a final state, by `custom_id`. Items the provider has no
    /// result for (a failed batch, an expired item without an error line) are left out.
    async fn results(&self, id: &str) -> Result<Vec<(String, ItemResult)>, LlmError>;
}
