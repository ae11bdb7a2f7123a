//! The Prometheus metrics of workers and the coordinator. A worker counts each LLM call as its
//! gateway reports it (by job, stage, model and outcome) and each shard as its events pass;
//! totals kept elsewhere (rate-limit waits) are raised to at scrape time.

use std::sync::Arc;

use rubricmill_llm::{CallObserver, CallReport};
use rubricmill_telemetry::{Counter, Family, Gauge, Histogram, Registry};

/// Upper bounds of the LLM call latency buckets, in seconds.
const LLM_LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Upper bounds of the shard duration buckets, in seconds.
const SHARD_DURATION_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Upper bounds of the queue wait buckets, in seconds.
const QUEUE_WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A worker's metrics.
#[derive(Clone)]
pub struct WorkerMetrics {
    /// Shard attempts finished by this worker, by job and outcome.
    pub shards: Family<Counter>,
    /// Seconds from a shard attempt's start to its outcome, by job and outcome.
    pub shard_duration: Family<Histogram>,
    /// Seconds from a shard's message being queued to this worker picking it up, by job.
    pub queue_wait: Family<Histogram>,
    pub records: Family<Counter>,
    pub rows: Family<Counter>,
    pub rejects: Family<Counter>,
    pub llm_calls: Family<Counter>,
    pub llm_call_duration: Family<Histogram>,
    pub llm_retries: Family<Counter>,
    pub llm_tokens: Family<Counter>,
    pub llm_cost: Family<Counter>,
    pub rate_limit_waits: Counter,
    pub in_flight: Gauge,
    pub queue_pending: Gauge,
    pub live_workers: Gauge,
    pub rate_share: Gauge,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> Self {
        Self {
            shards: registry.counter(
                "shards_total",
                "Shard attempts this worker finished, by job and outcome",
                &["job", "outcome"],
            ),
            shard_duration: registry.histogram(
                "shard_duration_seconds",
                "Seconds from a shard attempt's start to its outcome, by job and outcome",
                &["job", "outcome"],
                SHARD_DURATION_BUCKETS,
            ),
            queue_wait: registry.histogram(
                "queue_wait_seconds",
                "Seconds from a shard being queued to a worker picking it up (a redelivery counts from the first queueing)",
                &["job"],
                QUEUE_WAIT_BUCKETS,
            ),
            records: registry.counter(
                "records_total",
                "Input records in committed shards",
                &["job"],
            ),
            rows: registry.counter("rows_total", "Output rows committed", &["job"]),
            rejects: registry.counter("rejects_total", "Reject rows committed", &["job"]),
            llm_calls: registry.counter(
                "llm_calls_total",
                "LLM call attempts by outcome: ok (answered), cached, throttled (429/503), error",
                &["job", "stage", "model", "outcome"],
            ),
            llm_call_duration: registry.histogram(
                "llm_call_duration_seconds",
                "Latency of LLM call attempts sent to the provider",
                &["job", "stage", "model", "outcome"],
                LLM_LATENCY_BUCKETS,
            ),
            llm_retries: registry.counter(
                "llm_retries_total",
                "LLM call attempts that failed and were sent again",
                &["job", "stage", "model"],
            ),
            llm_tokens: registry.counter(
                "llm_tokens_total",
                "LLM tokens by direction (input, output)",
                &["job", "stage", "model", "direction"],
            ),
            llm_cost: registry.counter(
                "llm_cost_usd_total",
                "Estimated LLM cost in US dollars",
                &["job", "stage", "model"],
            ),
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

    /// The observer of one job's gateway calls.
    pub fn calls_of(&self, job: &str) -> Arc<dyn CallObserver> {
        Arc::new(JobCalls {
            job: job.to_owned(),
            metrics: self.clone(),
        })
    }
}

/// Counts one job's LLM calls into the worker's metrics.
struct JobCalls {
    job: String,
    metrics: WorkerMetrics,
}

impl CallObserver for JobCalls {
    fn observe(&self, report: &CallReport<'_>) {
        let (job, stage, model) = (self.job.as_str(), report.stage, report.model);
        let outcome = report.outcome.as_str();
        self.metrics
            .llm_calls
            .with(&[job, stage, model, outcome])
            .inc();
        if let Some(latency) = report.latency {
            self.metrics
                .llm_call_duration
                .with(&[job, stage, model, outcome])
                .observe(latency.as_secs_f64());
        }
        if report.retried {
            self.metrics.llm_retries.with(&[job, stage, model]).inc();
        }
        let usage = &report.usage;
        if usage.tokens_in > 0 {
            self.metrics
                .llm_tokens
                .with(&[job, stage, model, "input"])
                .inc_by(usage.tokens_in as f64);
        }
        if usage.tokens_out > 0 {
            self.metrics
                .llm_tokens
                .with(&[job, stage, model, "output"])
                .inc_by(usage.tokens_out as f64);
        }
        if usage.cost_usd > 0.0 {
            self.metrics
                .llm_cost
                .with(&[job, stage, model])
                .inc_by(usage.cost_usd);
        }
    }
}

/// The coordinator's metrics: the cluster-wide view.
#[derive(Clone)]
pub struct CoordinatorMetrics {
    pub jobs: Family<Gauge>,
    pub shards: Family<Gauge>,
    pub rows: Family<Gauge>,
    pub cost: Family<Gauge>,
    /// Each job's spending limit (`llm.max_cost_usd`), for jobs that have one.
    pub budget: Family<Gauge>,
    /// Batch mode: provider batches and their calls the job's waiting shards have open.
    pub batches_pending: Family<Gauge>,
    pub batch_items_pending: Family<Gauge>,
    /// Batch mode: calls answered through batches, and what that saved against online prices.
    pub batch_calls: Family<Gauge>,
    pub batch_saved: Family<Gauge>,
    pub queue_pending: Gauge,
    pub queue_ack_pending: Gauge,
    pub live_workers: Gauge,
    pub failures_recorded: Counter,
    pub shards_republished: Counter,
    /// Requests to the jobs' object stores, by kind (a listing counts one per page).
    pub storage_requests: Family<Counter>,
    pub full_reconciles: Counter,
    pub events: Counter,
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
            budget: registry.gauge(
                "job_budget_usd",
                "Spending limit of each job with one (llm.max_cost_usd)",
                &["job"],
            ),
            batches_pending: registry.gauge(
                "job_batches_pending",
                "Provider batches of each job still with the provider",
                &["job"],
            ),
            batch_items_pending: registry.gauge(
                "job_batch_items_pending",
                "Calls of each job in provider batches still with the provider",
                &["job"],
            ),
            batch_calls: registry.gauge(
                "job_batch_calls",
                "Calls of each job answered through provider batches",
                &["job"],
            ),
            batch_saved: registry.gauge(
                "job_batch_saved_usd",
                "What each job's batch answers saved against online prices",
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
