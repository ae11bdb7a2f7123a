//! The jobs page's figures: one [`JobView`] per job, built from a cluster job status (the
//! coordinator's UI, the very figures `rubricmill status --json` prints) or from a job's commit
//! marker summaries (`rubricmill view`).

use chrono::{DateTime, Utc};
use rubricmill_core::{JobSpec, MarkerSummary, Usage};
use rubricmill_runtime::distributed::JobStatus;
use serde::Serialize;

use crate::series::{PauseCount, SamplePoint, recent_rates};

/// LLM usage as the jobs page shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageView {
    pub calls: u64,
    pub cache_hits: u64,
    pub retries: u64,
    /// Answers that were 429 or 503.
    pub throttled: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Calls answered through provider batches, and what that saved against online prices.
    pub batch_calls: u64,
    pub batch_saved_usd: f64,
}

impl From<&Usage> for UsageView {
    fn from(usage: &Usage) -> Self {
        Self {
            calls: usage.calls,
            cache_hits: usage.cache_hits,
            retries: usage.retries,
            throttled: usage.throttled,
            tokens_in: usage.tokens_in,
            tokens_out: usage.tokens_out,
            cost_usd: usage.cost_usd,
            latency_p50_ms: usage.latency.quantile_ms(0.5),
            latency_p95_ms: usage.latency.quantile_ms(0.95),
            batch_calls: usage.batch_calls,
            batch_saved_usd: usage.batch_saved_usd,
        }
    }
}

/// The job's limits from its spec, beside which the page shows the current rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub max_cost_usd: Option<f64>,
}

impl From<&JobSpec> for Limits {
    fn from(spec: &JobSpec) -> Self {
        Self {
            requests_per_minute: spec.llm.requests_per_minute,
            tokens_per_minute: spec.llm.tokens_per_minute,
            max_cost_usd: spec.llm.max_cost_usd,
        }
    }
}

/// One job on the jobs page.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub job: String,
    pub pipeline: String,
    pub model: String,
    /// Where the job's output folder is (secrets redacted).
    pub output: String,
    pub state: String,
    pub reason: Option<String>,
    pub planned: u64,
    pub pending: u64,
    pub running: u64,
    pub committed: u64,
    pub failed: u64,
    pub records: u64,
    pub rows: u64,
    pub rejects: u64,
    /// What the provider served the job, committed attempts or not (as `status` prints it).
    pub usage: UsageView,
    /// The committed shards' cost per shard times the planned shards.
    pub projected_cost_usd: Option<f64>,
    pub records_per_s: Option<f64>,
    pub eta_s: Option<f64>,
    /// Calls and tokens per minute over the last minute of samples.
    pub calls_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub limits: Limits,
    /// Rate-limit pauses the fleet announced since the UI started (the coordinator's UI only).
    pub pauses: Option<PauseCount>,
    /// Live workers (the coordinator's UI only).
    pub workers: Option<u64>,
    /// Provider batches the job's waiting shards have open (the coordinator's UI only).
    pub batches_pending: Option<u64>,
    pub updated_at: Option<DateTime<Utc>>,
}

fn projected(committed_cost: f64, committed: u64, planned: u64) -> Option<f64> {
    (committed > 0).then(|| committed_cost / committed as f64 * planned as f64)
}

fn output_of(spec: &JobSpec) -> String {
    let url = rubricmill_store::location::display_location(&spec.output.url);
    rubricmill_core::secret::redact_secrets(&url).into_owned()
}

fn pipeline_name(spec: &JobSpec) -> String {
    serde_json::to_value(spec.pipeline)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl JobView {
    /// The figures of a cluster job, from its status (the one `rubricmill status` prints).
    pub fn from_status(
        status: &JobStatus,
        spec: &JobSpec,
        series: &[SamplePoint],
        pauses: PauseCount,
    ) -> Self {
        let progress = status.progress.as_ref();
        let paid = progress.map(|p| p.paid()).unwrap_or_default();
        let committed_cost = progress.map_or(0.0, |p| p.usage.cost_usd);
        let (calls_per_minute, tokens_per_minute) = recent_rates(series);
        Self {
            job: status.job.clone(),
            pipeline: pipeline_name(spec),
            model: spec.llm.model.clone(),
            output: output_of(spec),
            state: status.state.clone(),
            reason: status.reason.clone(),
            planned: status.planned,
            pending: status.pending,
            running: status.running.len() as u64,
            committed: status.committed,
            failed: status.failed.len() as u64,
            records: progress.map_or(0, |p| p.records),
            rows: progress.map_or(0, |p| p.rows),
            rejects: progress.map_or(0, |p| p.rejects),
            usage: UsageView::from(&paid),
            projected_cost_usd: projected(committed_cost, status.committed, status.planned),
            records_per_s: progress.map(|p| p.records_per_s),
            eta_s: progress.and_then(|p| p.eta_s),
            calls_per_minute,
            tokens_per_minute,
            limits: Limits::from(spec),
            pauses: Some(pauses),
            workers: Some(status.workers),
            batches_pending: progress.map(|p| p.batches_pending),
            updated_at: progress.and_then(|p| p.updated_at),
        }
    }

    /// The figures of a job's output folder, from its commit marker summaries.
    pub fn from_summaries(
        spec: &JobSpec,
        planned: u64,
        summaries: &[MarkerSummary],
        series: &[SamplePoint],
    ) -> Self {
        let mut usage = Usage::default();
        for summary in summaries {
            usage.add(&summary.usage);
        }
        let committed = summaries.len() as u64;
        let records: u64 = summaries.iter().map(|s| s.records).sum();
        let first = summaries.iter().map(|s| s.committed_at).min();
        let last = summaries.iter().map(|s| s.committed_at).max();
        let records_per_s = match (first, last) {
            (Some(first), Some(last)) if last > first => {
                Some(records as f64 / (last - first).as_seconds_f64())
            }
            _ => None,
        };
        let state = if planned > 0 && committed >= planned {
            "complete"
        } else {
            "incomplete"
        };
        let (calls_per_minute, tokens_per_minute) = recent_rates(series);
        Self {
            job: spec.name.clone(),
            pipeline: pipeline_name(spec),
            model: spec.llm.model.clone(),
            output: output_of(spec),
            state: state.to_owned(),
            reason: None,
            planned,
            pending: planned.saturating_sub(committed),
            running: 0,
            committed,
            failed: 0,
            records,
            rows: summaries.iter().map(|s| s.rows).sum(),
            rejects: summaries.iter().map(|s| s.rejects).sum(),
            usage: UsageView::from(&usage),
            projected_cost_usd: projected(usage.cost_usd, committed, planned),
            records_per_s,
            eta_s: None,
            calls_per_minute,
            tokens_per_minute,
            limits: Limits::from(spec),
            pauses: None,
            workers: None,
            batches_pending: None,
            updated_at: last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projection_scales_the_committed_cost_per_shard_to_the_plan() {
        assert_eq!(projected(0.5, 2, 10), Some(2.5));
        assert_eq!(projected(0.0, 0, 10), None);
    }
}
