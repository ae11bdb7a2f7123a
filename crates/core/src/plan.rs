//! The plan of a job: its spec as planned, the fingerprint that guards its output folder, and
//! its shard list. Stored as `job.json` beside the output; the distributed mode keeps a copy
//! without the shard list in the cluster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{JobSpec, ShardSpec};

/// The plan of a job as stored beside its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobManifest {
    pub name: String,
    pub fingerprint: String,
    pub planned_at: DateTime<Utc>,
    /// Store URL that the shards' file URLs live in.
    pub input_root: String,
    pub spec: JobSpec,
    /// Prompt template overrides in force (name → text), read from `spec.prompts` at planning.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    pub shards: Vec<ShardSpec>,
}
