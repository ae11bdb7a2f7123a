//! Accounting: LLM usage counters (per call, shard and job) and per-stage record counts.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Calls answered by the provider (cache hits excluded).
    pub calls: u64,
    /// Calls answered from the response cache.
    pub cache_hits: u64,
    /// Retried attempts (429, 5xx, timeouts, repair retries).
    pub retries: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.cache_hits += other.cache_hits;
        self.retries += other.retries;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost_usd += other.cost_usd;
    }
}

/// Counts of one pipeline stage: items that came in, went on, and were rejected. For a stage
/// that maps one item to one outcome, `input == output + rejected` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    pub input: u64,
    pub output: u64,
    pub rejected: u64,
}

impl StageCounts {
    pub fn add(&mut self, other: &StageCounts) {
        self.input += other.input;
        self.output += other.output;
        self.rejected += other.rejected;
    }
}
