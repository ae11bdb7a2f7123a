//! Azure OpenAI addressing: the OpenAI wire format reached through a resource endpoint
//! (`llm.base_url`, `https://RESOURCE.openai.azure.com`), a deployment (`llm.deployment`) and
//! an API version (`llm.api_version`), with the key in the `api-key` header instead of a bearer
//! token. The online provider is [`crate::OpenAiProvider::azure`]; these helpers are public so
//! the batch client builds its file and batch URLs and its key header the same way.

use reqwest::header::{HeaderMap, HeaderName};

use crate::LlmError;
use crate::client::key_header;

/// The header that carries an Azure OpenAI key.
pub const API_KEY_HEADER: &str = "api-key";

/// Which deployment, in which API version, an Azure endpoint is called with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureTarget {
    pub deployment: String,
    pub api_version: String,
}

/// `{base}/openai/{path}?api-version={version}`: `path` is `deployments/D/chat/completions`,
/// `files`, `batches`, `batches/ID`, `files/ID/content`, …
pub fn url(base_url: &str, path: &str, api_version: &str) -> String {
    let base = base_url.trim().trim_end_matches('/');
    let base = base.strip_suffix("/openai").unwrap_or(base);
    format!(
        "{base}/openai/{}?api-version={api_version}",
        path.trim_start_matches('/')
    )
}

/// The chat completions URL of a deployment.
pub fn chat_url(base_url: &str, target: &AzureTarget) -> String {
    url(
        base_url,
        &format!("deployments/{}/chat/completions", target.deployment),
        &target.api_version,
    )
}

/// The key header (marked sensitive, so it is never logged); none without a key.
pub fn auth_headers(
    api_key: Option<&str>,
    api_key_env: Option<&str>,
) -> Result<HeaderMap, LlmError> {
    key_header(
        HeaderName::from_static(API_KEY_HEADER),
        api_key,
        api_key_env,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_azure_addressing() {
        let target = AzureTarget {
            deployment: "gpt-4o-mini".into(),
            api_version: "2024-10-21".into(),
        };
        let expected = "https://r.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21";
        assert_eq!(chat_url("https://r.openai.azure.com/", &target), expected);
        assert_eq!(
            chat_url("https://r.openai.azure.com/openai", &target),
            expected
        );
        assert_eq!(
            url("http://h:1", "batches/b1", "2024-10-21"),
            "http://h:1/openai/batches/b1?api-version=2024-10-21"
        );
        let headers = auth_headers(Some("azure-secret"), Some("K")).unwrap();
        assert!(headers[API_KEY_HEADER].is_sensitive());
        assert!(auth_headers(None, None).unwrap().is_empty());
    }
}
