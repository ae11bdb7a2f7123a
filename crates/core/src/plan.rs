//! The plan of a job: its spec as planned, the fingerprint that guards its output folder, and
//! an index of its shard list. Stored as `job.json` beside the output; the shard list itself
//! lives in chunk files next to it (`plan/<checksum>.jsonl.zst`, see the store crate), so
//! loading the plan costs the same for ten shards as for ten million, and the shards are read a
//! chunk at a time by whoever needs them. The distributed mode keeps a copy of this index in
//! the cluster.

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
    /// Shards in the plan.
    #[serde(default)]
    pub shard_count: u64,
    /// Records the planner expects over all shards (files, for Markdown).
    #[serde(default)]
    pub expected_records: u64,
    /// The shard list, in plan order, as chunk files beside `job.json`.
    #[serde(default)]
    pub chunks: Vec<PlanChunk>,
    /// The shard list of a plan stored before plans were chunked, inline in `job.json`; read
    /// before the chunks. New plans leave it empty.
    #[serde(default, rename = "shards", skip_serializing_if = "Vec::is_empty")]
    pub inline_shards: Vec<ShardSpec>,
}

/// One chunk file of a plan's shard list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChunk {
    /// Path relative to the job folder; its name is the blake3 checksum of its bytes, so equal
    /// chunks are one file and a damaged chunk is detected when it is read.
    pub file: String,
    /// Shards in the chunk.
    pub shards: u64,
}

impl JobManifest {
    /// Fills the counts of a plan stored inline by an earlier version, which did not have them.
    pub fn with_counts_of_inline_shards(mut self) -> Self {
        if self.chunks.is_empty() && !self.inline_shards.is_empty() && self.shard_count == 0 {
            self.shard_count = self.inline_shards.len() as u64;
            self.expected_records = self.inline_shards.iter().map(|s| s.expected_records).sum();
        }
        self
    }

    /// The index without the shard list, as the cluster keeps it.
    pub fn without_inline_shards(&self) -> Self {
        Self {
            inline_shards: Vec::new(),
            ..self.clone()
        }
    }
}
