//! A stateless worker of the distributed mode: pulls shards of any submitted job from the
//! fleet's consumer, processes them with the shared worker loop, and keeps its part of the
//! cluster state current: a heartbeat listing its shards in flight, its share of each job's
//! rate limits (1 / live workers), fleet-wide pauses after a 429, and durable failure records.
//!
//! Shutdown (SIGTERM): stop pulling, let shards in flight finish until the drain deadline, hand
//! the rest back with a nak, leave the fleet, exit.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rubricmill_cluster::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, Membership, NatsWorkQueue,
    RateLimitNotice, RunningShard, WorkerBeat, publish_pause, subscribe_pauses,
};
use rubricmill_queue::{EventSink, ShardEvent};
use rubricmill_telemetry::{CounterExt, Health, Registry};
use tokio::sync::watch;

use super::metrics::WorkerMetrics;
use crate::RuntimeError;
use crate::job::{ContextOptions, JobContext};
use crate::policy::{Refusal, WorkerPolicy};
use crate::worker::{JobResolver, Worker, WorkerOptions};

#[derive(Debug, Clone)]
pub struct ClusterWorkerOptions {
    pub worker: WorkerOptions,
    /// How long shards in flight may run after SIGTERM before they are handed back.
    pub drain_timeout: Duration,
    pub context: ContextOptions,
    /// What jobs may use of this worker: key variables, endpoints, buckets.
    pub policy: WorkerPolicy,
}

/// Runs a worker until `shutdown` resolves, then drains.
pub async fn run_worker(
    cluster: Cluster,
    mut options: ClusterWorkerOptions,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    let worker_id = options.worker.worker_id.clone();
    // Heartbeats keep a running shard's ack deadline (the server's, see `Cluster::open`) ahead
    // of it.
    options.worker.heartbeat = (cluster.settings().ack_wait / 3).max(Duration::from_millis(100));
    let metrics = WorkerMetrics::register(&registry);
    let running: Arc<Mutex<BTreeMap<(String, String), RunningShard>>> = Arc::default();
    let draining = Arc::new(AtomicBool::new(false));
    // The jobs' contexts, once they exist: heartbeats report the limits their providers announced.
    let jobs_for_beat: Arc<std::sync::OnceLock<Arc<ClusterJobs>>> = Arc::default();
    let beat = {
        let jobs_for_beat = jobs_for_beat.clone();
        let running = running.clone();
        let draining = draining.clone();
        let started_at = Utc::now();
        let capacity = options.worker.shard_concurrency as u32;
        let worker_id = worker_id.clone();
        let host = super::hostname();
        move || WorkerBeat {
            id: worker_id.clone(),
            host: host.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            beat_at: Utc::now(),
            capacity,
            in_flight: running
                .lock()
                .expect("running lock")
                .values()
                .cloned()
                .collect(),
            draining: draining.load(Ordering::SeqCst),
            provider_limits: jobs_for_beat
                .get()
                .map(|jobs| jobs.provider_limits())
                .unwrap_or_default(),
        }
    };
    let unrestricted = options.policy.unrestricted();
    if !unrestricted.is_empty() {
        tracing::warn!(fields = ?unrestricted, "the worker policy leaves these locations unrestricted: jobs may read and write any bucket this worker's credentials reach");
    }
    let membership = Membership::join(&cluster, &beat()).await?;
    let jobs = Arc::new(ClusterJobs {
        cluster: cluster.clone(),
        worker_id: worker_id.clone(),
        options: options.context.clone(),
        policy: options.policy.clone(),
        contexts: Mutex::default(),
        building: tokio::sync::Mutex::new(()),
        live: membership.live_workers(),
        metrics: metrics.clone(),
    });
    let _ = jobs_for_beat.set(jobs.clone());
    let mut background = tokio::task::JoinSet::new();
    background.spawn(follow_share(
        jobs.clone(),
        membership.live_workers(),
        metrics.clone(),
    ));
    let pauses = {
        let jobs = jobs.clone();
        subscribe_pauses(&cluster, move |endpoint, pause| {
            jobs.pause_endpoint(endpoint, pause)
        })
        .await?
    };
    {
        let jobs = jobs.clone();
        let metrics = metrics.clone();
        let running = running.clone();
        registry.on_scrape(Box::new(move || {
            metrics
                .rate_limit_waits
                .set_total(jobs.rate_limit_waits() as f64);
            metrics
                .in_flight
                .set(running.lock().expect("running lock").len() as f64);
        }));
    }
    let connection = super::follow_connection(cluster.clone(), health, draining.clone());
    let queue = Arc::new(NatsWorkQueue::open(&cluster).await?);
    let events = Arc::new(ClusterEvents {
        cluster: cluster.clone(),
        worker_id: worker_id.clone(),
        running: running.clone(),
        metrics: metrics.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (hand_back_tx, hand_back_rx) = watch::channel(false);
    let worker = Arc::new(
        Worker::new(options.worker.clone(), queue.clone(), jobs.clone(), events)
            .with_hand_back(hand_back_rx),
    );
    tracing::info!(worker = %worker_id, shards = options.worker.shard_concurrency, ack_wait_s = cluster.settings().ack_wait.as_secs_f64(), "worker joined");
    let mut run = tokio::spawn(worker.run(stop_rx));
    let mut heartbeat = tokio::time::interval(cluster.settings().heartbeat_ttl / 3);
    tokio::pin!(shutdown);
    let finished_early = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            joined = &mut run => break Some(joined),
            _ = heartbeat.tick() => {
                if let Err(error) = membership.beat(&beat()).await {
                    tracing::warn!(error = %error, "heartbeat failed");
                }
                if let Ok(stats) = cluster.queue_stats().await {
                    metrics.queue_pending.set(stats.pending as f64);
                }
                jobs.refresh_budgets().await;
            }
        }
    };
    let result = match finished_early {
        Some(joined) => flatten(joined),
        None => {
            draining.store(true, Ordering::SeqCst);
            let _ = membership.beat(&beat()).await;
            let handles = DrainHandles {
                stop: stop_tx,
                hand_back: hand_back_tx,
            };
            drain(&worker_id, options.drain_timeout, &mut run, handles).await
        }
    };
    pauses.abort();
    connection.abort();
    background.abort_all();
    if let Err(error) = membership.leave().await {
        tracing::warn!(error = %error, "leaving the fleet failed; the heartbeat expires instead");
    }
    cluster.flush().await;
    tracing::info!(worker = %worker_id, "worker stopped");
    result
}

/// What draining needs to stop the worker loop.
struct DrainHandles {
    stop: watch::Sender<bool>,
    hand_back: watch::Sender<bool>,
}

/// Stops pulling, lets the shards in flight finish until `deadline`, then hands the rest back
/// (nak, no delay) and waits for the loop to end.
async fn drain(
    worker_id: &str,
    deadline: Duration,
    run: &mut tokio::task::JoinHandle<Result<(), RuntimeError>>,
    handles: DrainHandles,
) -> Result<(), RuntimeError> {
    tracing::info!(worker = %worker_id, deadline_s = deadline.as_secs_f64(), "draining: no new shards, finishing those in flight");
    // The worker loop closes the queue: no new shards.
    let _ = handles.stop.send(true);
    match tokio::time::timeout(deadline, &mut *run).await {
        Ok(joined) => flatten(joined),
        Err(_) => {
            tracing::warn!(worker = %worker_id, "drain deadline passed, handing shards back");
            let _ = handles.hand_back.send(true);
            flatten(run.await)
        }
    }
}

fn flatten(
    joined: Result<Result<(), RuntimeError>, tokio::task::JoinError>,
) -> Result<(), RuntimeError> {
    joined.map_err(|e| RuntimeError::Config(format!("worker loop panicked: {e}")))?
}

/// Sets every job's share of its rate limits whenever the number of live workers changes.
async fn follow_share(
    jobs: Arc<ClusterJobs>,
    mut live: watch::Receiver<usize>,
    metrics: WorkerMetrics,
) {
    loop {
        let workers = (*live.borrow_and_update()).max(1);
        let share = 1.0 / workers as f64;
        jobs.set_share(share);
        metrics.live_workers.set(workers as f64);
        metrics.rate_share.set(share);
        tracing::debug!(workers, share, "rate-limit share set");
        if live.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves jobs from the cluster's job records, keeping one context per job. Every delivery
/// re-reads the record, so a cancelled or halted job stops at once.
struct ClusterJobs {
    cluster: Cluster,
    worker_id: String,
    options: ContextOptions,
    policy: WorkerPolicy,
    contexts: Mutex<HashMap<String, (String, Arc<JobContext>)>>,
    /// One build at a time: two shards of a new job arriving together must share one context
    /// (one gateway, one rate-limit bucket), not build one each.
    building: tokio::sync::Mutex<()>,
    live: watch::Receiver<usize>,
    /// Where each job's gateways report their calls.
    metrics: WorkerMetrics,
}

impl ClusterJobs {
    fn cached(&self, job: &str, fingerprint: &str) -> Option<Arc<JobContext>> {
        let contexts = self.contexts.lock().expect("contexts lock");
        let (cached_fingerprint, context) = contexts.get(job)?;
        (cached_fingerprint == fingerprint).then(|| context.clone())
    }

    fn contexts(&self) -> Vec<Arc<JobContext>> {
        let contexts = self.contexts.lock().expect("contexts lock");
        contexts.values().map(|(_, c)| c.clone()).collect()
    }

    fn set_share(&self, share: f64) {
        for context in self.contexts() {
            for (_, gateway) in &context.endpoints {
                gateway.set_share(share);
            }
        }
    }

    fn pause_endpoint(&self, endpoint: &str, pause: Duration) {
        for context in self.contexts() {
            for (key, gateway) in &context.endpoints {
                if key == endpoint {
                    gateway.pause(pause);
                }
            }
        }
    }

    /// The rate limits providers announced to each job's gateways, by endpoint key.
    fn provider_limits(
        &self,
    ) -> BTreeMap<String, BTreeMap<String, rubricmill_core::DiscoveredLimits>> {
        let contexts = self.contexts.lock().expect("contexts lock");
        contexts
            .iter()
            .map(|(job, (_, context))| (job.clone(), context.endpoint_limits()))
            .filter(|(_, limits)| !limits.is_empty())
            .collect()
    }

    /// Calls of every job's gateways that waited for a rate-limit permit or a pause.
    fn rate_limit_waits(&self) -> u64 {
        self.contexts()
            .iter()
            .flat_map(|context| context.endpoints.iter())
            .map(|(_, gateway)| gateway.rate_limit_waits())
            .sum()
    }

    /// Brings each job's budget up to date with what the rest of the fleet has spent.
    async fn refresh_budgets(&self) {
        let contexts: Vec<(String, Arc<JobContext>)> = {
            let contexts = self.contexts.lock().expect("contexts lock");
            contexts
                .iter()
                .map(|(job, (_, context))| (job.clone(), context.clone()))
                .collect()
        };
        for (job, context) in contexts {
            let Ok(Some(progress)) = self.cluster.progress(&job).await else {
                continue;
            };
            self.sync_budget(&context, &progress);
        }
    }

    /// Counts what the rest of the fleet spent on the job (as the coordinator counted it,
    /// committed or not) against `context`'s budget; this worker's own spend is in the
    /// budget's own figure already.
    fn sync_budget(&self, context: &JobContext, progress: &JobProgress) {
        let seen_of_mine = progress
            .cost_by_worker
            .get(&self.worker_id)
            .copied()
            .unwrap_or(0.0);
        context.budget.set_spent_elsewhere(spent_elsewhere(
            progress.budgeted_usd(),
            seen_of_mine,
            context.budget.spent(),
        ));
    }

    async fn build(&self, record: JobRecord) -> Result<Arc<JobContext>, RuntimeError> {
        let progress = self
            .cluster
            .progress(&record.name)
            .await?
            .unwrap_or_default();
        // Deliveries carry their shard: the plan without its shard list is enough.
        let manifest = record.plan.clone();
        let options = self.options.clone();
        // The new budget's own spend starts at zero: everything spent so far, this worker's
        // share included, is counted as spent elsewhere.
        let context = tokio::task::spawn_blocking(move || JobContext::new(manifest, 0.0, &options))
            .await
            .map_err(|e| {
                RuntimeError::Config(format!("building the job context panicked: {e}"))
            })??;
        let context = Arc::new(context);
        self.sync_budget(&context, &progress);
        let share = 1.0 / (*self.live.borrow()).max(1) as f64;
        let calls = self.metrics.calls_of(&record.name);
        for (endpoint, gateway) in &context.endpoints {
            gateway.set_share(share);
            gateway.observe_calls(calls.clone());
            let cluster = self.cluster.clone();
            let endpoint = endpoint.clone();
            let from = self.worker_id.clone();
            gateway.observe_throttling(Box::new(move |pause| {
                let notice = RateLimitNotice {
                    endpoint: endpoint.clone(),
                    pause_ms: pause.as_millis() as u64,
                    from: from.clone(),
                };
                let cluster = cluster.clone();
                tokio::spawn(async move {
                    if let Err(error) = publish_pause(&cluster, &notice).await {
                        tracing::debug!(error = %error, "cannot share a rate-limit pause");
                    }
                });
            }));
        }
        tracing::info!(job = %record.name, fingerprint = %record.plan.fingerprint, fleet_spent_usd = progress.budgeted_usd(), "job context ready");
        Ok(context)
    }
}

#[async_trait::async_trait]
impl JobResolver for ClusterJobs {
    async fn resolve(&self, job: &str) -> Result<Arc<JobContext>, RuntimeError> {
        let Some(record) = self.cluster.job(job).await? else {
            return Err(RuntimeError::UnknownJob(job.to_owned()));
        };
        if record.state != JobState::Running {
            return Err(RuntimeError::JobInactive {
                job: job.to_owned(),
                state: record.state.label().to_owned(),
            });
        }
        // Before anything of the job is read or sent: no key variable, endpoint or bucket
        // outside the policy is touched.
        if let Err(refusal) = self.policy.check(&record.plan) {
            return Err(self.refuse(job, &refusal).await);
        }
        let fingerprint = record.plan.fingerprint.clone();
        if let Some(context) = self.cached(job, &fingerprint) {
            return Ok(context);
        }
        let _building = self.building.lock().await;
        if let Some(context) = self.cached(job, &fingerprint) {
            return Ok(context);
        }
        let context = self.build(record).await?;
        self.contexts
            .lock()
            .expect("contexts lock")
            .insert(job.to_owned(), (fingerprint, context.clone()));
        Ok(context)
    }

    async fn check_shard(
        &self,
        job: &str,
        shard: &rubricmill_core::ShardSpec,
    ) -> Result<(), RuntimeError> {
        match self.policy.check_shard(shard) {
            Ok(()) => Ok(()),
            Err(refusal) => Err(self.refuse(job, &refusal).await),
        }
    }
}

impl ClusterJobs {
    /// Halts a job the policy refuses (so `status` shows why and its queue is emptied) and
    /// returns the error that drops the delivery.
    async fn refuse(&self, job: &str, refusal: &Refusal) -> RuntimeError {
        tracing::warn!(job = %job, rule = refusal.rule, value = %refusal.value, "job refused by the worker policy");
        halt_job(&self.cluster, job, &refusal.to_string()).await;
        RuntimeError::JobInactive {
            job: job.to_owned(),
            state: "halted".into(),
        }
    }
}

/// Halts a running job with `reason` and purges its queued shards; a job no longer running is
/// left as it is.
async fn halt_job(cluster: &Cluster, job: &str, reason: &str) {
    let halted = cluster
        .update_job(job, |record| {
            (record.state == JobState::Running).then(|| JobRecord {
                state: JobState::Halted {
                    reason: reason.to_owned(),
                },
                ..record.clone()
            })
        })
        .await;
    match halted {
        Ok(Some(_)) => {
            tracing::error!(job = %job, reason = %reason, "job halted");
            if let Err(error) = cluster.purge_job(job).await {
                tracing::warn!(job = %job, error = %error, "cannot purge the halted job's queue");
            }
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(job = %job, error = %error, "cannot halt the job"),
    }
}

/// Turns worker events into cluster state: the running set for heartbeats, durable failure
/// records, halting a job that cannot go on, metrics, and a notice to the coordinator.
struct ClusterEvents {
    cluster: Cluster,
    worker_id: String,
    running: Arc<Mutex<BTreeMap<(String, String), RunningShard>>>,
    metrics: WorkerMetrics,
}

impl ClusterEvents {
    async fn halt(&self, job: &str, reason: &str) {
        halt_job(&self.cluster, job, reason).await;
    }

    /// Failure records must survive this worker: retried until stored (or the shard will be
    /// found by the coordinator's sweep).
    async fn record_failure(&self, failed: FailedShard) {
        for attempt in 1..=5u32 {
            match self.cluster.record_failure(&failed).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(shard = %failed.shard, attempt, error = %error, "cannot record the failed shard yet");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventSink for ClusterEvents {
    async fn send(&self, event: ShardEvent) {
        let key = (event.job().to_owned(), event.shard().to_owned());
        let outcome = match &event {
            ShardEvent::Started {
                attempt, queued_ms, ..
            } => {
                if let Some(waited) = queued_ms {
                    self.metrics
                        .queue_wait
                        .with(&[&key.0])
                        .observe(*waited as f64 / 1000.0);
                }
                let shard = RunningShard {
                    job: key.0.clone(),
                    shard: key.1.clone(),
                    attempt: *attempt,
                    since: Utc::now(),
                };
                self.running
                    .lock()
                    .expect("running lock")
                    .insert(key.clone(), shard);
                None
            }
            ShardEvent::Committed {
                records,
                rows,
                rejects,
                ..
            } => {
                let job = [key.0.as_str()];
                self.metrics.records.with(&job).inc_by(*records as f64);
                self.metrics.rows.with(&job).inc_by(*rows as f64);
                self.metrics.rejects.with(&job).inc_by(*rejects as f64);
                Some("committed")
            }
            ShardEvent::AlreadyCommitted { .. } => Some("already_committed"),
            ShardEvent::Retrying { .. } => Some("retried"),
            ShardEvent::Failed { job, shard, reason } => {
                let attempts = self
                    .running
                    .lock()
                    .expect("running lock")
                    .get(&key)
                    .map_or(0, |r| r.attempt);
                self.record_failure(FailedShard {
                    job: job.clone(),
                    shard: shard.clone(),
                    reason: reason.clone(),
                    attempts,
                    worker: Some(self.worker_id.clone()),
                    at: Utc::now(),
                })
                .await;
                Some("failed")
            }
            ShardEvent::BudgetExhausted { job, reason, .. } => {
                self.halt(job, &format!("budget reached: {reason}")).await;
                Some("handed_back")
            }
            ShardEvent::Fatal { job, reason, .. } => {
                self.halt(job, reason).await;
                Some("handed_back")
            }
            ShardEvent::HandedBack { .. } => Some("handed_back"),
            ShardEvent::Waiting { .. } => Some("waiting"),
        };
        if let Some(outcome) = outcome {
            let finished = self.running.lock().expect("running lock").remove(&key);
            let labels = [key.0.as_str(), outcome];
            self.metrics.shards.with(&labels).inc();
            if let Some(shard) = finished {
                let seconds = (Utc::now() - shard.since).as_seconds_f64().max(0.0);
                self.metrics.shard_duration.with(&labels).observe(seconds);
            }
        }
        let subject = self.cluster.names().events(&key.0);
        let payload = bytes::Bytes::from(serde_json::to_vec(&event).unwrap_or_default());
        if let Err(error) = self.cluster.client().publish(subject, payload).await {
            tracing::debug!(error = %error, "cannot publish a shard event");
        }
    }
}

/// What counts against a worker's budget as spent elsewhere: the fleet's total less what the
/// coordinator has seen of this worker's own spend, as far as the budget has it already
/// (`own`). Spend the coordinator has not seen yet is only in `own`; spend the coordinator saw
/// from this worker before the budget existed (an earlier context) is only in the total.
fn spent_elsewhere(fleet_total: f64, seen_of_mine: f64, own: f64) -> f64 {
    fleet_total - seen_of_mine.min(own)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rubricmill_cluster::{
        Cluster, JobProgress, JobRecord, JobState, Names, NatsOptions, QueueSettings, connect,
    };
    use rubricmill_core::JobSpec;
    use rubricmill_testkit::NatsServer;
    use tokio::sync::watch;

    use super::{ClusterJobs, WorkerMetrics};
    use crate::ContextOptions;
    use crate::coordinator::plan_or_resume;

    async fn set_fleet_cost(cluster: &Cluster, job: &str, cost_usd: f64, by_w1: f64) {
        let mut progress = JobProgress::default();
        progress.usage.cost_usd = cost_usd * 0.75;
        progress.uncommitted.cost_usd = cost_usd * 0.25;
        progress.cost_by_worker.insert("w1".into(), by_w1);
        progress
            .cost_by_worker
            .insert("w2".into(), cost_usd - by_w1);
        cluster.put_progress(job, &progress).await.unwrap();
    }

    #[test]
    fn a_workers_own_spend_is_left_out_of_elsewhere_once() {
        // The coordinator has seen $0.20 of this worker's $0.30: the other $0.10 is not in
        // the fleet's total yet, and the rest of the total is the other workers'.
        assert!((super::spent_elsewhere(1.0, 0.2, 0.3) - 0.8).abs() < 1e-9);
        // A rebuilt context has spent nothing itself: what the fleet saw of this worker
        // before is spent elsewhere as far as the new budget knows.
        assert!((super::spent_elsewhere(1.0, 0.2, 0.0) - 1.0).abs() < 1e-9);
        assert!((super::spent_elsewhere(0.0, 0.0, 0.5)).abs() < 1e-9);
    }

    #[tokio::test]
    async fn the_fleets_spend_is_counted_once_against_a_budget() {
        let Some(server) = NatsServer::start() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("pairs.jsonl");
        std::fs::write(
            &input,
            "{\"prompt\":\"Hi?\",\"chosen\":\"Hello.\",\"rejected\":\"Go away.\"}\n",
        )
        .unwrap();
        let spec_path = dir.path().join("spent.toml");
        std::fs::write(
            &spec_path,
            format!(
                "name = \"spent\"\npipeline = \"crg\"\n[input]\nurl = \"{}\"\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"sim\"\n",
                input.display(),
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        let (manifest, _) = plan_or_resume(&JobSpec::load(&spec_path).unwrap())
            .await
            .unwrap();
        let client = connect(&NatsOptions::for_servers(&server.url()))
            .await
            .unwrap();
        let cluster = Cluster::open(client, Names::default(), QueueSettings::default(), true)
            .await
            .unwrap();
        let (_live, live_workers) = watch::channel(1);
        let jobs = ClusterJobs {
            cluster: cluster.clone(),
            worker_id: "w1".into(),
            options: ContextOptions::default(),
            policy: crate::WorkerPolicy::default(),
            contexts: Mutex::default(),
            building: tokio::sync::Mutex::new(()),
            live: live_workers,
            metrics: WorkerMetrics::register(&rubricmill_telemetry::Registry::new("test")),
        };

        // A worker joining a job the fleet has spent $0.60 on counts $0.60, not twice that.
        set_fleet_cost(&cluster, "spent", 0.6, 0.0).await;
        let record = JobRecord::new(&manifest, 1, JobState::Running);
        let context = jobs.build(record.clone()).await.unwrap();
        jobs.contexts.lock().unwrap().insert(
            "spent".into(),
            (manifest.fingerprint.clone(), context.clone()),
        );
        assert!(
            (context.budget.counted() - 0.6).abs() < 1e-9,
            "{}",
            context.budget.counted()
        );

        // The fleet spends more, $0.20 of it by this worker in an earlier context.
        set_fleet_cost(&cluster, "spent", 1.0, 0.2).await;
        jobs.refresh_budgets().await;
        assert!(
            (context.budget.counted() - 1.0).abs() < 1e-9,
            "{}",
            context.budget.counted()
        );

        // A rebuilt context starts its own spend at zero: all $1.00 is elsewhere again.
        let rebuilt = jobs.build(record).await.unwrap();
        assert!(
            (rebuilt.budget.counted() - 1.0).abs() < 1e-9,
            "{}",
            rebuilt.budget.counted()
        );
    }
}
