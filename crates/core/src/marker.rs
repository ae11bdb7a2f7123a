//! The summary of a commit marker: every figure of the marker except the per-stage counts (but
//! for the score pipeline's `agreement`, which `status` reports), which is what progress,
//! budgets, resume and export need of a committed shard. Workers send it
//! in their commit events and the progress log stores it, so that knowing what a job committed
//! does not take one read per marker.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ShardId, StageCounts, Usage};

/// What a commit marker says about its shard, less the per-stage counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarkerSummary {
    pub shard_id: ShardId,
    pub attempt_id: String,
    pub worker_id: String,
    pub committed_at: DateTime<Utc>,
    /// Path of the rows file relative to the job folder; `None` when the shard made no rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Path of the rejects file relative to the job folder; `None` when nothing was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_part: Option<String>,
    pub rows: u64,
    pub rejects: u64,
    /// Size of the rows file.
    pub bytes: u64,
    /// blake3 of the rows file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// Input records the shard read.
    pub records: u64,
    pub usage: Usage,
    /// The score pipeline's `agreement` stage: labelled records in, records whose scores
    /// prefer the labelled response out. `None` for other pipelines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<StageCounts>,
}
