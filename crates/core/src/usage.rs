//! Accounting: LLM usage counters (per call, shard and job) and per-stage record counts.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Calls answered by the provider (cache hits excluded).
    pub calls: u64,
    /// Calls answered from the response cache.
    pub cache_hits: u64,
    /// Attempts sent again (429, 5xx, timeouts, truncated or invalid answers).
    pub retries: u64,
    /// Answers that were 429 or 503 (push-back from the provider).
    #[serde(default)]
    pub throttled: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Latency of answered calls.
    #[serde(default)]
    pub latency: LatencyHistogram,
    /// Of `calls`, those answered through a provider batch (billed at the batch price).
    #[serde(default)]
    pub batch_calls: u64,
    /// What the batch answers would have cost online, less what they cost: the saving.
    #[serde(default)]
    pub batch_saved_usd: f64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.calls += other.calls;
        self.cache_hits += other.cache_hits;
        self.retries += other.retries;
        self.throttled += other.throttled;
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.cost_usd += other.cost_usd;
        self.latency.merge(&other.latency);
        self.batch_calls += other.batch_calls;
        self.batch_saved_usd += other.batch_saved_usd;
    }
}

/// Buckets of the latency histogram: bucket `i` holds latencies in `[2^(i/2), 2^((i+1)/2))` ms,
/// so quantiles are within about 20 %; the last bucket holds everything from about 46 s up.
const LATENCY_BUCKETS: usize = 32;

/// A mergeable latency histogram with logarithmic buckets, small enough to live in every commit
/// marker, from which p50 and p95 can be read at any level (shard, job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    counts: [u32; LATENCY_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: [0; LATENCY_BUCKETS],
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: std::time::Duration) {
        let ms = latency.as_secs_f64() * 1000.0;
        let bucket = if ms < 1.0 {
            0
        } else {
            ((ms.log2() * 2.0).floor() as usize).min(LATENCY_BUCKETS - 1)
        };
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine = mine.saturating_add(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }

    /// The `q` quantile (0..=1) in milliseconds: the geometric middle of its bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += u64::from(*count);
            if seen >= rank {
                return Some(2f64.powf((bucket as f64 + 0.5) / 2.0));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_land_within_a_bucket_of_the_truth() {
        let mut histogram = LatencyHistogram::default();
        for ms in 1..=100u64 {
            histogram.record(Duration::from_millis(ms * 10));
        }
        let p50 = histogram.quantile_ms(0.5).unwrap();
        let p95 = histogram.quantile_ms(0.95).unwrap();
        assert!((500.0 * 0.8..=500.0 * 1.25).contains(&p50), "{p50}");
        assert!((950.0 * 0.8..=950.0 * 1.25).contains(&p95), "{p95}");
        let mut merged = LatencyHistogram::default();
        merged.merge(&histogram);
        merged.merge(&histogram);
        assert_eq!(merged.count(), 200);
        assert_eq!(merged.quantile_ms(0.5), histogram.quantile_ms(0.5));
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
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
