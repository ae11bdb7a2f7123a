//! The content-addressed response cache. The key is the blake3 hash of the canonical request
//! (model, messages, sampling parameters, response schema), so any worker, a resumed shard, a
//! redelivered shard or a later job asking the same thing reads the stored answer instead of
//! paying for it again. Storage is behind [`CacheStore`]; the store crate puts it in object
//! storage.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{ChatRequest, ChatResponse, TokenUsage};

/// Where cached answers live. Failures are the backend's to log: a failed read is a miss, a
/// failed write is skipped.
#[async_trait::async_trait]
pub trait CacheStore: Send + Sync {
    async fn get(&self, key: &str) -> Option<Bytes>;
    async fn put(&self, key: &str, value: Bytes);
}

/// The cache key of a request.
pub fn cache_key(request: &ChatRequest) -> String {
    // serde_json maps are ordered, so the serialization is canonical.
    let canonical = serde_json::to_vec(request).expect("requests serialize");
    blake3::hash(&canonical).to_hex().to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedAnswer {
    content: String,
    finish_reason: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

pub fn encode(response: &ChatResponse) -> Bytes {
    let cached = CachedAnswer {
        content: response.content.clone(),
        finish_reason: response.finish_reason.clone(),
        prompt_tokens: response.usage.prompt_tokens,
        completion_tokens: response.usage.completion_tokens,
    };
    Bytes::from(serde_json::to_vec(&cached).expect("answers serialize"))
}

pub fn decode(bytes: &[u8]) -> Option<ChatResponse> {
    let cached: CachedAnswer = serde_json::from_slice(bytes).ok()?;
    Some(ChatResponse {
        content: cached.content,
        finish_reason: cached.finish_reason,
        usage: TokenUsage {
            prompt_tokens: cached.prompt_tokens,
            completion_tokens: cached.completion_tokens,
        },
    })
}
