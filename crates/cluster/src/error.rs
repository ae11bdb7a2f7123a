//! Errors of the distributed mode, each naming what was being done.

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("NATS option {option}: {reason}")]
    Option {
        option: &'static str,
        reason: String,
    },
    #[error("JetStream {what}: {reason}")]
    JetStream { what: String, reason: String },
    #[error("decoding {what}: {reason}")]
    Decode { what: String, reason: String },
    #[error("unknown job {0:?}: submit it first")]
    UnknownJob(String),
}

impl ClusterError {
    /// A failed JetStream request. When the server has denied this process a permission,
    /// the reason says so: the request itself only times out.
    pub(crate) fn js(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        let reason = match crate::connect::last_denial() {
            Some(denial) => format!(
                "{error} (the NATS server denied this user: {denial}; check the user's permissions)"
            ),
            None => error.to_string(),
        };
        Self::JetStream {
            what: what.into(),
            reason,
        }
    }

    pub(crate) fn decode(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Decode {
            what: what.into(),
            reason: error.to_string(),
        }
    }
}

impl From<ClusterError> for rubricmill_queue::QueueError {
    fn from(error: ClusterError) -> Self {
        rubricmill_queue::QueueError::Backend(error.to_string())
    }
}
