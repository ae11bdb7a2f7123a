//! The token that retry and cancel want: read-only without one configured; with one, a request
//! must carry it as `Authorization: Bearer <token>`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

/// Why a changing request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token is configured: the UI is read-only.
    ReadOnly,
    /// The request's token is missing or wrong.
    BadToken,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ReadOnly => {
                "the ui is read-only: start it with RUBRICMILL_UI_TOKEN set to allow retry and cancel"
            }
            Refusal::BadToken => "missing or wrong bearer token",
        }
    }
}

/// Whether `headers` carry the configured token. An empty token counts as none: it would
/// let a request without any token through.
pub fn check(configured: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(configured) = configured.filter(|token| !token.is_empty()) else {
        return Err(Refusal::ReadOnly);
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if same(presented.as_bytes(), configured.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadToken)
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[test]
    fn only_the_configured_token_passes() {
        assert_eq!(check(None, &bearer("t")), Err(Refusal::ReadOnly));
        assert_eq!(
            check(Some("secret-1"), &HeaderMap::new()),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            check(Some("secret-1"), &bearer("secret-2")),
            Err(Refusal::BadToken)
        );
        assert_eq!(
            check(Some("secret-1"), &bearer("secret-")),
            Err(Refusal::BadToken)
        );
        assert_eq!(check(Some("secret-1"), &bearer("secret-1")), Ok(()));
    }

    #[test]
    fn an_empty_token_keeps_the_ui_read_only() {
        assert_eq!(check(Some(""), &HeaderMap::new()), Err(Refusal::ReadOnly));
        assert_eq!(check(Some(""), &bearer("")), Err(Refusal::ReadOnly));
    }
}
