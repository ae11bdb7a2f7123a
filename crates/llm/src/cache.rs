//! The content-addressed response cache. The key is the blake3 hash of the endpoint's identity
//! (provider kind and normalised base URL) and the canonical request (model, messages, sampling
//! parameters, response schema), so any worker, a resumed shard, a redelivered shard or a later
//! job asking the same endpoint the same thing reads the stored answer instead of paying for it
//! again, and an answer is never served for another endpoint: a dry run against a mock server
//! leaves nothing a run against a real provider would read. Each entry records the attempt that
//! paid for it. Storage is behind [`CacheStore`]; the runtime puts it in object storage.

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

/// The identity of an endpoint in cache keys: provider kind and base URL (a provider's default
/// URL when it has one and none is set), with the scheme and
/// host lower-cased, default ports, user info and trailing slashes dropped, so spellings of one
/// URL share answers and different endpoints never do.
pub fn endpoint_identity(kind: &str, base_url: Option<&str>) -> String {
    // Anthropic without a base URL is its public API: both spellings are one endpoint.
    let base_url = base_url.or((kind == "anthropic").then_some(crate::anthropic::DEFAULT_BASE_URL));
    let Some(base_url) = base_url else {
        return kind.to_owned();
    };
    let normalised = match url::Url::parse(base_url.trim()) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_fragment(None);
            let path = url.path().trim_end_matches('/').to_owned();
            url.set_path(&path);
            url.to_string().trim_end_matches('/').to_owned()
        }
        Err(_) => base_url.trim().trim_end_matches('/').to_owned(),
    };
    format!("{kind}|{normalised}")
}

/// The cache key of a request sent to the endpoint `endpoint` (see [`endpoint_identity`]).
pub fn cache_key(endpoint: &str, request: &ChatRequest) -> String {
    // serde_json maps are ordered, so the serialization is canonical.
    let canonical = serde_json::to_vec(request).expect("requests serialize");
    let mut hasher = blake3::Hasher::new();
    hasher.update(endpoint.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    hasher.finalize().to_hex().to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedAnswer {
    content: String,
    finish_reason: String,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// The endpoint that answered (as in the key).
    #[serde(default)]
    endpoint: Option<String>,
    /// The attempt that paid for the answer (`<job>/<shard>/<attempt id>`).
    #[serde(default)]
    origin: Option<String>,
}

/// An answer read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub answer: ChatResponse,
    /// The attempt that paid for it, when it was stored by one.
    pub origin: Option<String>,
}

pub fn encode(response: &ChatResponse, endpoint: &str, origin: Option<String>) -> Bytes {
    let cached = CachedAnswer {
        content: response.content.clone(),
        finish_reason: response.finish_reason.clone(),
        prompt_tokens: response.usage.prompt_tokens,
        completion_tokens: response.usage.completion_tokens,
        endpoint: Some(endpoint.to_owned()),
        origin,
    };
    Bytes::from(serde_json::to_vec(&cached).expect("answers serialize"))
}

/// The answer in a cache entry; `None` for an unreadable entry or one another endpoint stored
/// (which a key collision would be the only way to reach).
pub fn decode(bytes: &[u8], endpoint: &str) -> Option<Cached> {
    let cached: CachedAnswer = serde_json::from_slice(bytes).ok()?;
    if cached.endpoint.as_deref() != Some(endpoint) {
        return None;
    }
    Some(Cached {
        answer: ChatResponse {
            content: cached.content,
            finish_reason: cached.finish_reason,
            usage: TokenUsage {
                prompt_tokens: cached.prompt_tokens,
                completion_tokens: cached.completion_tokens,
            },
        },
        origin: cached.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatRequest {
        crate::testing::request("gpt-4o")
    }

    #[test]
    fn spellings_of_one_endpoint_share_keys_and_other_endpoints_never_do() {
        let a = endpoint_identity("openai", Some("HTTPS://API.openai.com:443/v1/"));
        let b = endpoint_identity("openai", Some("https://user:pw@api.openai.com/v1"));
        assert_eq!(a, b);
        assert_eq!(a, "openai|https://api.openai.com/v1");
        let mock = endpoint_identity("openai", Some("http://127.0.0.1:8080/v1"));
        assert_ne!(cache_key(&a, &request()), cache_key(&mock, &request()));
        assert_eq!(cache_key(&a, &request()), cache_key(&b, &request()));
        assert_ne!(
            cache_key(&a, &request()),
            cache_key(&endpoint_identity("simulated", None), &request())
        );
    }

    #[test]
    fn an_entry_answers_only_for_the_endpoint_that_stored_it() {
        let answer = ChatResponse {
            content: "{}".into(),
            finish_reason: "stop".into(),
            usage: TokenUsage {
                prompt_tokens: 3,
                completion_tokens: 1,
            },
        };
        let bytes = encode(&answer, "openai|http://a/v1", Some("job/s/a".into()));
        let cached = decode(&bytes, "openai|http://a/v1").unwrap();
        assert_eq!(cached.answer, answer);
        assert_eq!(cached.origin.as_deref(), Some("job/s/a"));
        assert_eq!(decode(&bytes, "openai|http://b/v1"), None);
        // Entries written before endpoints were recorded answer nobody.
        let old =
            br#"{"content":"{}","finish_reason":"stop","prompt_tokens":1,"completion_tokens":1}"#;
        assert_eq!(decode(old, "openai|http://a/v1"), None);
    }
}
