//! LLM usage counters, summed per call, shard and job.

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
