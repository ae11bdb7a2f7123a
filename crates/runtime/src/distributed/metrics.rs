//! The Prometheus metrics of workers and the coordinator. Counters that mirror totals kept
//! elsewhere (gateway usage) are raised to those totals at scrape time.

use std::sync::Arc;

use rubricmill_core::Usage;
use rubricmill_telemetry::{Counter, Family, Gauge, Registry};

/// A worker's metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Shards finished by this worker, by outcome.
    pub shards: Family<Counter>,
    pub records: Arc<Counter>,
    pub rows: Arc<Counter>,
    pub rejects: Arc<Counter>,
    pub llm_calls: Family<Counter>,
    pub llm_tokens: Family<Counter>,
    pub llm_cost: Arc<Counter>,
    pub cache_hits: Arc<Counter>,
    pub rate_limit_waits: Arc<Counter>,
    pub in_flight: Arc<Gauge>,
    pub queue_pending: Arc<Gauge>,
    pub live_workers: Arc<Gauge>,
    pub rate_share: Arc<Gauge>,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            shards: registry.counter(
                "shards_total",
                "Shards this worker finished, by outcome",
                &["outcome"],
            ),
            records: registry
                .counter("records_total", "Input records in committed shards", &[])
                .with(&[]),
            rows: registry
                .counter("rows_total", "Output rows committed", &[])
                .with(&[]),
            rejects: registry
                .counter("rejects_total", "Reject rows committed", &[])
                .with(&[]),
            llm_calls: registry.counter(
                "llm_calls_total",
                "LLM calls: answered by the provider, retried, or answered 429/503",
                &["status"],
            ),
            llm_tokens: registry.counter("llm_tokens_total", "LLM tokens", &["direction"]),
            llm_cost: registry
                .counter(
                    "llm_cost_usd_total",
                    "Estimated LLM cost in US dollars",
                    &[],
                )
                .with(&[]),
            cache_hits: registry
                .counter(
                    "llm_cache_hits_total",
                    "LLM calls answered from the response cache",
                    &[],
                )
                .with(&[]),
            rate_limit_waits: registry
                .counter(
                    "rate_limit_waits_total",
                    "LLM calls that waited for a rate-limit permit or a fleet-wide pause",
                    &[],
                )
                .with(&[]),
            in_flight: registry
                .gauge("shards_in_flight", "Shards this worker processes now", &[])
                .with(&[]),
            queue_pending: registry
                .gauge(
                    "queue_pending",
                    "Shards waiting in the queue for any worker",
                    &[],
                )
                .with(&[]),
            live_workers: registry
                .gauge("workers_live", "Workers with a current heartbeat", &[])
                .with(&[]),
            rate_share: registry
                .gauge(
                    "rate_limit_share",
                    "This worker's share of each job's rate limits",
                    &[],
                )
                .with(&[]),
        }
    }

    /// Raises the usage counters to the totals of this worker's gateways.
    pub fn set_usage(&self, usage: &Usage, rate_limit_waits: u64) {
        self.llm_calls
            .with(&["answered"])
            .set_total(usage.calls as f64);
        self.llm_calls
            .with(&["retried"])
            .set_total(usage.retries as f64);
        self.llm_calls
            .with(&["throttled"])
            .set_total(usage.throttled as f64);
        self.llm_tokens
            .with(&["input"])
            .set_total(usage.tokens_in as f64);
        self.llm_tokens
            .with(&["output"])
            .set_total(usage.tokens_out as f64);
        self.llm_cost.set_total(usage.cost_usd);
        self.cache_hits.set_total(usage.cache_hits as f64);
        self.rate_limit_waits.set_total(rate_limit_waits as f64);
    }
}

/// The coordinator's metrics: the cluster-wide view.
#[derive(Clone)]
pub struct CoordinatorMetrics {
    pub jobs: Family<Gauge>,
    pub shards: Family<Gauge>,
    pub rows: Family<Gauge>,
    pub cost: Family<Gauge>,
    pub queue_pending: Arc<Gauge>,
    pub queue_ack_pending: Arc<Gauge>,
    pub live_workers: Arc<Gauge>,
    pub failures_recorded: Arc<Counter>,
    pub shards_republished: Arc<Counter>,
    /// Requests to the jobs' object stores, by kind (a listing counts one per page).
    pub storage_requests: Family<Counter>,
    pub full_reconciles: Arc<Counter>,
    pub events: Arc<Counter>,
    /// Time spent reconciling, by depth (`light`, `full`).
    pub reconcile_seconds: Family<Counter>,
}

impl CoordinatorMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            jobs: registry.gauge("jobs", "Jobs by state", &["state"]),
            shards: registry.gauge("job_shards", "Shards of each job by state", &["job", "state"]),
            rows: registry.gauge("job_rows", "Committed output rows of each job", &["job"]),
            cost: registry.gauge(
                "job_cost_usd",
                "LLM cost of each job: committed shards and attempts that did not commit",
                &["job"],
            ),
            queue_pending: registry
                .gauge("queue_pending", "Shards waiting in the queue", &[])
                .with(&[]),
            queue_ack_pending: registry
                .gauge(
                    "queue_ack_pending",
                    "Shards delivered and not yet acked (running or waiting to retry)",
                    &[],
                )
                .with(&[]),
            live_workers: registry
                .gauge("workers_live", "Workers with a current heartbeat", &[])
                .with(&[]),
            failures_recorded: registry
                .counter(
                    "coordinator_failures_recorded_total",
                    "Shards the coordinator recorded as failed after their worker was lost",
                    &[],
                )
                .with(&[]),
            shards_republished: registry
                .counter(
                    "coordinator_shards_republished_total",
                    "Shards the coordinator found neither queued, committed nor failed, and queued again",
                    &[],
                )
                .with(&[]),
            storage_requests: registry.counter(
                "storage_requests_total",
                "Requests the coordinator made to object storage, by kind (a listing counts one per page of 1,000)",
                &["op"],
            ),
            full_reconciles: registry
                .counter(
                    "coordinator_full_reconciles_total",
                    "Full reconciles: listings of a job's commit markers",
                    &[],
                )
                .with(&[]),
            events: registry
                .counter(
                    "coordinator_events_total",
                    "Shard events the coordinator received from workers",
                    &[],
                )
                .with(&[]),
            reconcile_seconds: registry.counter(
                "coordinator_reconcile_seconds_total",
                "Time the coordinator spent reconciling running jobs, by depth",
                &["depth"],
            ),
        }
    }

    /// Adds the requests a job's store made since the last report.
    pub(super) fn count_requests(&self, tracker: &mut super::tracker::Tracker) {
        let now = tracker.store.requests();
        let new = now.since(&tracker.requests_reported);
        tracker.requests_reported = now;
        for (op, count) in new.by_op() {
            if count > 0 {
                self.storage_requests.with(&[op]).inc_by(count as f64);
            }
        }
    }
}
