//! Fixtures the crate's unit tests share: an endpoint nothing listens on and a plain request.

use std::time::Duration;

use rubricmill_core::Message;
use rubricmill_core::spec::StructuredOutput;

use crate::{ChatRequest, EndpointConfig};

/// An endpoint at `base_url` without a key: one connection, a one-second timeout, structured
/// output `auto`, answers up to 1 MiB.
pub(crate) fn endpoint(base_url: &str) -> EndpointConfig {
    EndpointConfig {
        base_url: base_url.into(),
        api_key: None,
        api_key_env: None,
        headers: vec![],
        timeout: Duration::from_secs(1),
        max_connections: 1,
        structured_output: StructuredOutput::Auto,
        max_response_bytes: 1 << 20,
    }
}

/// Port 9 (discard): nothing listens there, so every request fails as a connection error.
pub(crate) const NOWHERE: &str = "http://127.0.0.1:9/v1";

/// One user message `hi` to `model`, at most 10 tokens, no seed, no response format.
pub(crate) fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: vec![Message::new("user", "hi")],
        temperature: 0.0,
        max_tokens: 10,
        seed: None,
        response_format: None,
    }
}
