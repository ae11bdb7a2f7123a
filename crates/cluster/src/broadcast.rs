//! Rate-limit pauses shared by the fleet: a worker that gets a 429 with a retry hint publishes
//! the pause, and every worker holds its calls to that endpoint for as long. Core NATS is
//! enough here: a notice that is missed only means that worker meets the 429 itself.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::{Cluster, ClusterError};

/// "Hold calls to this endpoint for a while."
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitNotice {
    /// Identifies the endpoint (a hash of its URL and model), never the key.
    pub endpoint: String,
    pub pause_ms: u64,
    /// The worker that saw the 429.
    pub from: String,
}

pub async fn publish_pause(
    cluster: &Cluster,
    notice: &RateLimitNotice,
) -> Result<(), ClusterError> {
    let payload = crate::state::encode(notice);
    cluster
        .client
        .publish(cluster.names.rate_limits(), payload)
        .await
        .map_err(|e| ClusterError::js("publishing a rate-limit pause", e))
}

/// Calls `apply` with every notice published, until the subscription ends. A worker's own
/// notices come back too: its other jobs on the same endpoint pause with the one that was
/// throttled (a pause only ever extends, so applying it twice is harmless).
pub async fn subscribe_pauses(
    cluster: &Cluster,
    apply: impl Fn(&str, Duration) + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
    let mut subscription = cluster
        .client
        .subscribe(cluster.names.rate_limits())
        .await
        .map_err(|e| ClusterError::js("subscribing to rate-limit pauses", e))?;
    Ok(tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            let Ok(notice) = serde_json::from_slice::<RateLimitNotice>(&message.payload) else {
                tracing::warn!("ignoring an undecodable rate-limit notice");
                continue;
            };
            tracing::debug!(endpoint = %notice.endpoint, pause_ms = notice.pause_ms, from = %notice.from, "pausing endpoint on a fleet notice");
            apply(&notice.endpoint, Duration::from_millis(notice.pause_ms));
        }
    }))
}
