//! Anthropic's Message Batches.

use std::sync::Arc;

use hyper::{Response, StatusCode};

use crate::server::{Body, IncomingRequest, State};

#[derive(Debug, Default)]
pub(crate) struct MessageBatches {}

pub(crate) async fn route(
    _state: &Arc<State>,
    _request: IncomingRequest,
    rest: String,
) -> Response<Body> {
    super::openai_error(StatusCode::NOT_FOUND, format!("unknown path {rest}"), "not_found_error", None)
}
