//! LLM access for rubricmill: the chat request and response types every provider speaks, the
//! [`ChatProvider`] trait with its OpenAI-compatible HTTP implementation, and the [`Gateway`]
//! that pipelines call: rate limits, adaptive concurrency, retries, structured output, the
//! response cache, usage, cost and budget. Also the simulated provider for tests and dry runs.
//!
//! The simulated provider is not a model: it derives deterministic answers from the prompt
//! text so the whole pipeline can run with no network. Rows it makes say `provider =
//! "simulated"`, and output files carry `rubricmill.simulated = true` in their metadata.

pub mod anthropic;
pub mod azure;
pub mod batch;
pub mod cache;
pub mod client;
pub mod concurrency;
mod gateway;
pub mod limiter;
pub mod scope;
pub mod simulated;
pub mod structured;
#[cfg(test)]
mod testing;
pub mod tokens;
pub mod wire;

use rubricmill_core::Message;
use serde::{Deserialize, Serialize};

pub use anthropic::AnthropicProvider;
pub use cache::{CacheStore, endpoint_identity};
pub use client::{EndpointConfig, OpenAiProvider};
pub use gateway::{
    Budget, CallObserver, CallOutcome, CallReport, Gateway, GatewayConfig, ThrottleObserver,
    full_jitter,
};
pub use limiter::{Limits, ProviderLimits};
pub use scope::{AttemptScope, BatchScope, DeferredCall, RecordScope, SpendLedger};
pub use simulated::SimulatedProvider;

/// A JSON Schema the answer must follow, named so servers (and the simulated provider) can tell
/// which task a request belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFormat {
    pub name: String,
    pub schema: serde_json::Value,
}

/// One `/v1/chat/completions` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub temperature: f32,
    pub max_tokens: u32,
    pub seed: Option<u64>,
    pub response_format: Option<ResponseFormat>,
}

/// Token counts as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    pub content: String,
    /// `stop`, `length`, `content_filter`, …
    pub finish_reason: String,
    pub usage: TokenUsage,
}

/// Why a call failed, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The whole job cannot go on (bad key, unknown model): stop and say what to fix.
    #[error("llm: {0}")]
    Fatal(String),
    /// This record cannot be answered (context too long, content filter): reject it.
    #[error("llm rejected the record: {0}")]
    BadRecord(String),
    /// The model answered, but its answer failed the caller's parser twice (first and after
    /// one repair): reject the record, or ask again differently (a new seed).
    #[error("llm answer unusable: {0}")]
    Unusable(String),
    /// May pass later (429, 5xx, timeouts, connection resets). `retry_after` is the server's
    /// hint; `throttled` marks push-back (429, 503, timeouts) for the concurrency controller.
    #[error("llm temporarily unavailable: {reason}")]
    Retryable {
        reason: String,
        retry_after: Option<std::time::Duration>,
        throttled: bool,
    },
    /// Batch mode: the call was queued for the shard's next provider batch instead of being
    /// sent. The record is not finished; the shard waits for the batch and runs again.
    #[error("llm call deferred to a provider batch")]
    Deferred,
    /// The job's budget is spent: no new calls.
    #[error("llm budget of ${budget:.2} reached (spent ${spent:.2})")]
    BudgetExhausted { budget: f64, spent: f64 },
}

/// Anything that answers chat requests.
#[async_trait::async_trait]
pub trait ChatProvider: Send + Sync {
    /// `openai`, `azure`, `anthropic` or `simulated`: written into every row's provenance.
    fn kind(&self) -> &'static str;
    /// The structured-output mode this endpoint is using now (`json_schema`, `json_object`,
    /// `none`), for providers that speak a wire protocol with such modes.
    fn structured_output(&self) -> Option<&'static str> {
        None
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;
    /// The rate limits the provider announced in its latest answers' headers (per API key);
    /// none known by default.
    fn provider_limits(&self) -> ProviderLimits {
        ProviderLimits::default()
    }
}

/// Rough token count for text when no tokenizer is at hand: about four characters a token for
/// English prose.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
