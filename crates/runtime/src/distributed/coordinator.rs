//! The coordinator: keeps each running job's progress view current from the commit markers
//! (the truth) and the spend files of attempts that did not commit (what else the provider
//! billed; read again only when they change), records shards that workers could not record as failed, and marks jobs
//! complete. It holds no state of its own: after a restart it rebuilds everything by listing
//! the markers again, so it can be stopped and replaced at any time.
//!
//! Two things go wrong without it and are mended here:
//! - a worker killed during a shard's last delivery never records the failure; the server's
//!   MAX_DELIVERIES advisory names the message, and a sweep catches advisories nobody heard
//!   (when the queue is idle, a shard still in the stream is one nobody will deliver again);
//! - a shard that is in no state at all (not committed, not failed, not in the stream) is
//!   queued again, so a job can never hang.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rubricmill_cluster::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, NatsWorkQueue, QueueStats,
};
use rubricmill_core::{ShardSpec, Usage};
use rubricmill_queue::ShardTask;
use rubricmill_store::{AttemptSpend, CommitMarker, JobStore, UncommittedSpend};
use rubricmill_telemetry::{Health, Registry};

use super::metrics::CoordinatorMetrics;
use crate::RuntimeError;

/// The least time between two reconciles brought forward by worker events.
const EVENT_DEBOUNCE: Duration = Duration::from_millis(250);

/// How long after a job completes its spend is still followed: an attempt that lost the race
/// to the last marker writes its final spend after the job is complete.
const SETTLE_AFTER_COMPLETE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// How often every running job is reconciled with its markers (events trigger it sooner).
    pub reconcile_every: Duration,
    /// Idle reconciles in a row before outstanding shards are swept.
    pub sweep_after_idle_rounds: u32,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            reconcile_every: Duration::from_secs(10),
            sweep_after_idle_rounds: 2,
        }
    }
}

/// Runs the coordinator until `shutdown` resolves.
pub async fn run_coordinator(
    cluster: Cluster,
    options: CoordinatorOptions,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RuntimeError> {
    let metrics = CoordinatorMetrics::register(&registry);
    let connection =
        super::follow_connection(cluster.clone(), health, Arc::new(AtomicBool::new(false)));
    let client = cluster.client().clone();
    let mut events = client
        .subscribe(cluster.names().all_events())
        .await
        .map_err(|e| RuntimeError::Config(format!("subscribing to worker events: {e}")))?;
    let mut advisories = client
        .subscribe(cluster.names().max_deliveries_advisory())
        .await
        .map_err(|e| RuntimeError::Config(format!("subscribing to advisories: {e}")))?;
    let mut coordinator = Coordinator {
        cluster: cluster.clone(),
        options: options.clone(),
        metrics,
        trackers: HashMap::new(),
    };
    tracing::info!(
        every_s = options.reconcile_every.as_secs_f64(),
        "coordinator running"
    );
    let mut tick = tokio::time::interval(options.reconcile_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Worker events bring a reconcile forward, at most one per `EVENT_DEBOUNCE`: the first
    // event after a reconcile starts the wait, the ones during it only ride along.
    let mut dirty = false;
    let debounce = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(debounce);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                // This reconcile covers the events so far.
                dirty = false;
                coordinator.reconcile_all().await;
            }
            () = &mut debounce, if dirty => {
                dirty = false;
                coordinator.reconcile_all().await;
            }
            Some(_) = events.next() => {
                if !dirty {
                    dirty = true;
                    debounce.as_mut().reset(tokio::time::Instant::now() + EVENT_DEBOUNCE);
                }
            }
            Some(message) = advisories.next() => coordinator.on_max_deliveries(&message.payload).await,
        }
    }
    connection.abort();
    cluster.flush().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// What the coordinator knows about one job between reconciles.
struct Tracker {
    store: JobStore,
    shards: Vec<ShardSpec>,
    markers: HashMap<String, MarkerSummary>,
    /// Spend files by path, with the version (size, modification time, e-tag) last read.
    spends: HashMap<String, (String, AttemptSpend)>,
    idle_rounds: u32,
    /// Set when the job completed: its spend is followed until then.
    settle_until: Option<tokio::time::Instant>,
    /// The progress last published.
    published: Option<JobProgress>,
}

struct MarkerSummary {
    attempt_id: String,
    worker_id: String,
    records: u64,
    rows: u64,
    rejects: u64,
    usage: Usage,
    committed_at: DateTime<Utc>,
}

impl From<CommitMarker> for MarkerSummary {
    fn from(marker: CommitMarker) -> Self {
        Self {
            attempt_id: marker.attempt_id,
            worker_id: marker.worker_id,
            records: marker.records,
            rows: marker.rows,
            rejects: marker.rejects,
            usage: marker.usage,
            committed_at: marker.committed_at,
        }
    }
}

impl Tracker {
    /// Brings the spend files up to date: one listing, then a read of each file that is new
    /// or changed since the last time.
    async fn refresh_spends(&mut self) -> Result<(), RuntimeError> {
        let files = self.store.spend_files().await?;
        let present: HashSet<String> = files.iter().map(|f| f.location.to_string()).collect();
        self.spends.retain(|path, _| present.contains(path));
        for meta in files {
            let path = meta.location.to_string();
            let version = format!(
                "{}|{}|{}",
                meta.size,
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                meta.e_tag.as_deref().unwrap_or("")
            );
            if self
                .spends
                .get(&path)
                .is_some_and(|(seen, _)| *seen == version)
            {
                continue;
            }
            match self.store.read_spend(&meta).await? {
                Some(spend) => {
                    self.spends.insert(path, (version, spend));
                }
                None => {
                    self.spends.remove(&path);
                }
            }
        }
        Ok(())
    }

    /// The attempt each committed shard's marker names.
    fn committed_attempts(&self) -> HashMap<String, String> {
        self.markers
            .iter()
            .map(|(shard, marker)| (shard.clone(), marker.attempt_id.clone()))
            .collect()
    }

    /// Fills the spend of attempts that did not commit into `progress`, and the cost by worker.
    fn add_spend(&self, progress: &mut JobProgress) {
        let committed = self.committed_attempts();
        let spends = self.spends.values().map(|(_, spend)| spend);
        let uncommitted = UncommittedSpend::of(spends, &committed);
        progress.uncommitted = uncommitted.usage;
        progress.uncommitted_attempts = uncommitted.attempts;
        progress.cut_off = uncommitted.cut_off;
        let mut by_worker = uncommitted.cost_by_worker;
        for marker in self.markers.values() {
            *by_worker.entry(marker.worker_id.clone()).or_insert(0.0) += marker.usage.cost_usd;
        }
        progress.cost_by_worker = by_worker;
    }
}

struct Coordinator {
    cluster: Cluster,
    options: CoordinatorOptions,
    metrics: CoordinatorMetrics,
    trackers: HashMap<String, Tracker>,
}

impl Coordinator {
    async fn reconcile_all(&mut self) {
        let jobs = match self.cluster.jobs().await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(error = %error, "cannot list jobs");
                return;
            }
        };
        let queue = self.cluster.queue_stats().await.ok();
        if let Some(queue) = queue {
            self.metrics.queue_pending.set(queue.pending as f64);
            self.metrics.queue_ack_pending.set(queue.ack_pending as f64);
        }
        if let Ok(workers) = self.cluster.workers().await {
            self.metrics.live_workers.set(workers.len() as f64);
        }
        let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
        for record in &jobs {
            *by_state.entry(record.state.label()).or_default() += 1;
        }
        for state in ["running", "complete", "cancelled", "halted"] {
            let count = by_state.get(state).copied().unwrap_or(0);
            self.metrics.jobs.with(&[state]).set(count as f64);
        }
        for record in jobs {
            if record.state != JobState::Running {
                if let Err(error) = self.settle(&record).await {
                    tracing::warn!(job = %record.name, error = %error, "settling spend failed");
                }
                continue;
            }
            if let Err(error) = self.reconcile(&record, queue).await {
                tracing::warn!(job = %record.name, error = %error, "reconcile failed");
            }
        }
    }

    async fn tracker(&mut self, record: &JobRecord) -> Result<&mut Tracker, RuntimeError> {
        if !self.trackers.contains_key(&record.name) {
            let store = JobStore::open(&record.spec().output.url, &record.name)?;
            let manifest = store.load_manifest().await?.ok_or_else(|| {
                RuntimeError::Config(format!(
                    "job {:?} has no plan at {}",
                    record.name,
                    store.url()
                ))
            })?;
            let shards = store.all_planned_shards(&manifest).await?;
            tracing::info!(job = %record.name, shards = shards.len(), "tracking job");
            self.trackers.insert(
                record.name.clone(),
                Tracker {
                    store,
                    shards,
                    markers: HashMap::new(),
                    spends: HashMap::new(),
                    idle_rounds: 0,
                    settle_until: None,
                    published: None,
                },
            );
        }
        Ok(self.trackers.get_mut(&record.name).expect("inserted above"))
    }

    async fn reconcile(
        &mut self,
        record: &JobRecord,
        queue: Option<QueueStats>,
    ) -> Result<(), RuntimeError> {
        let cluster = self.cluster.clone();
        let sweep_after = self.options.sweep_after_idle_rounds;
        let tracker = self.tracker(record).await?;
        // New markers only: a listing, then one read per shard committed since last time.
        for shard in tracker.store.committed_shards().await? {
            if tracker.markers.contains_key(shard.as_str()) {
                continue;
            }
            if let Some(marker) = tracker.store.marker(&shard).await? {
                tracker.markers.insert(shard.0, MarkerSummary::from(marker));
            }
        }
        let planned: HashSet<&str> = tracker.shards.iter().map(|s| s.id.as_str()).collect();
        tracker
            .markers
            .retain(|shard, _| planned.contains(shard.as_str()));
        tracker.refresh_spends().await?;
        let mut failed: HashSet<String> = HashSet::new();
        for failure in cluster.failures(&record.name).await? {
            if tracker.markers.contains_key(&failure.shard) {
                // Committed after all (a retry, or a race with the sweep): not a failure.
                cluster.clear_failure(&record.name, &failure.shard).await?;
            } else {
                failed.insert(failure.shard);
            }
        }
        let outstanding: Vec<ShardSpec> = tracker
            .shards
            .iter()
            .filter(|s| {
                !tracker.markers.contains_key(s.id.as_str()) && !failed.contains(s.id.as_str())
            })
            .cloned()
            .collect();
        let idle = queue.is_some_and(|q| q.pending == 0 && q.ack_pending == 0);
        tracker.idle_rounds = if idle && !outstanding.is_empty() {
            tracker.idle_rounds + 1
        } else {
            0
        };
        let sweep = tracker.idle_rounds >= sweep_after;
        let mut progress = progress_of(tracker, failed.len() as u64, outstanding.len() as u64);
        tracker.add_spend(&mut progress);
        tracker.published = Some(progress.clone());
        let done = outstanding.is_empty();
        self.publish_progress(
            record,
            &progress,
            failed.len() as u64,
            outstanding.len() as u64,
        );
        cluster.put_progress(&record.name, &progress).await?;
        if sweep {
            self.sweep(record, outstanding).await?;
        }
        if done {
            let completed = cluster
                .update_job(&record.name, |current| {
                    (current.state == JobState::Running && current.generation == record.generation)
                        .then(|| JobRecord {
                            state: JobState::Complete,
                            ..current.clone()
                        })
                })
                .await?;
            if completed.is_some() {
                tracing::info!(job = %record.name, committed = progress.committed, failed = progress.failed, rows = progress.rows, spent_usd = progress.spent_usd(), "job complete");
                if let Some(tracker) = self.trackers.get_mut(&record.name) {
                    tracker.settle_until =
                        Some(tokio::time::Instant::now() + SETTLE_AFTER_COMPLETE);
                }
            }
        }
        Ok(())
    }

    /// A job that is not running: a complete one's spend is followed for a while (late spend
    /// files of attempts that lost to the last marker), then the job is forgotten.
    async fn settle(&mut self, record: &JobRecord) -> Result<(), RuntimeError> {
        let Some(tracker) = self.trackers.get_mut(&record.name) else {
            return Ok(());
        };
        let settling = record.state == JobState::Complete
            && tracker
                .settle_until
                .is_some_and(|until| tokio::time::Instant::now() < until);
        if !settling {
            self.trackers.remove(&record.name);
            return Ok(());
        }
        let Some(mut progress) = tracker.published.clone() else {
            return Ok(());
        };
        tracker.refresh_spends().await?;
        tracker.add_spend(&mut progress);
        if tracker.published.as_ref() == Some(&progress) {
            return Ok(());
        }
        tracing::debug!(job = %record.name, uncommitted_attempts = progress.uncommitted_attempts, "late spend after completion");
        self.cluster.put_progress(&record.name, &progress).await?;
        self.metrics
            .cost
            .with(&[record.name.as_str()])
            .set(progress.spent_usd());
        self.trackers
            .get_mut(&record.name)
            .expect("tracked above")
            .published = Some(progress);
        Ok(())
    }

    fn publish_progress(
        &self,
        record: &JobRecord,
        progress: &JobProgress,
        failed: u64,
        outstanding: u64,
    ) {
        let job = record.name.as_str();
        self.metrics
            .shards
            .with(&[job, "committed"])
            .set(progress.committed as f64);
        self.metrics
            .shards
            .with(&[job, "failed"])
            .set(failed as f64);
        self.metrics
            .shards
            .with(&[job, "outstanding"])
            .set(outstanding as f64);
        self.metrics.rows.with(&[job]).set(progress.rows as f64);
        self.metrics.cost.with(&[job]).set(progress.spent_usd());
    }

    /// The queue has been idle while shards are outstanding: each is either stuck in the
    /// stream past max_deliver (its worker died on the last delivery) or nowhere at all.
    async fn sweep(
        &mut self,
        record: &JobRecord,
        outstanding: Vec<ShardSpec>,
    ) -> Result<(), RuntimeError> {
        let queue = NatsWorkQueue::open(&self.cluster)
            .await?
            .with_generation(record.generation);
        for shard in outstanding {
            let id = shard.id.as_str();
            match self.cluster.queued_sequence(&record.name, id).await? {
                Some(sequence) => {
                    let reason =
                        "its worker was lost during the last delivery (found by the sweep)";
                    self.fail_lost(&record.name, id, reason).await?;
                    self.cluster.delete_message(sequence).await?;
                }
                None => {
                    tracing::warn!(job = %record.name, shard = %id, "shard in no state, queuing it again");
                    queue
                        .publish_shard(&ShardTask {
                            job: record.name.clone(),
                            shard,
                        })
                        .await?;
                    self.metrics.shards_republished.inc();
                }
            }
        }
        if let Some(tracker) = self.trackers.get_mut(&record.name) {
            tracker.idle_rounds = 0;
        }
        Ok(())
    }

    async fn fail_lost(&self, job: &str, shard: &str, reason: &str) -> Result<(), RuntimeError> {
        let store = match self.trackers.get(job) {
            Some(tracker) => tracker.store.clone(),
            None => {
                let Some(record) = self.cluster.job(job).await? else {
                    return Ok(());
                };
                JobStore::open(&record.spec().output.url, job)?
            }
        };
        let id = rubricmill_core::ShardId(shard.to_owned());
        if store.marker(&id).await?.is_some() {
            return Ok(());
        }
        tracing::warn!(job = %job, shard = %shard, reason = %reason, "recording a lost shard as failed");
        self.cluster
            .record_failure(&FailedShard {
                job: job.to_owned(),
                shard: shard.to_owned(),
                reason: format!(
                    "gave up after {} deliveries: {reason}",
                    self.cluster.settings().max_deliver
                ),
                attempts: self.cluster.settings().max_deliver,
                worker: None,
                at: Utc::now(),
            })
            .await?;
        self.metrics.failures_recorded.inc();
        Ok(())
    }

    /// The server gave up redelivering a message: its last worker died without recording
    /// the failure (a worker that fails a shard records it and terms the message, which
    /// raises no advisory).
    async fn on_max_deliveries(&mut self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Advisory {
            stream_seq: u64,
        }
        let Ok(advisory) = serde_json::from_slice::<Advisory>(payload) else {
            tracing::warn!("undecodable max-deliveries advisory");
            return;
        };
        let handled = async {
            let Some((job, shard)) = self.cluster.message_at(advisory.stream_seq).await? else {
                return Ok::<(), RuntimeError>(());
            };
            let reason = "its worker was lost during the last delivery (max-deliveries advisory)";
            self.fail_lost(&job, &shard, reason).await?;
            self.cluster.delete_message(advisory.stream_seq).await?;
            Ok(())
        };
        if let Err(error) = handled.await {
            tracing::warn!(sequence = advisory.stream_seq, error = %error, "cannot handle a max-deliveries advisory");
        }
    }
}

fn progress_of(tracker: &Tracker, failed: u64, outstanding: u64) -> JobProgress {
    let mut progress = JobProgress {
        planned: tracker.shards.len() as u64,
        committed: tracker.markers.len() as u64,
        failed,
        updated_at: Some(Utc::now()),
        ..JobProgress::default()
    };
    let window_start = Utc::now() - chrono::Duration::seconds(60);
    let mut first_commit: Option<DateTime<Utc>> = None;
    let mut recent_records = 0;
    for marker in tracker.markers.values() {
        progress.records += marker.records;
        progress.rows += marker.rows;
        progress.rejects += marker.rejects;
        progress.usage.add(&marker.usage);
        if marker.committed_at >= window_start {
            recent_records += marker.records;
            first_commit =
                Some(first_commit.map_or(marker.committed_at, |f| f.min(marker.committed_at)));
        }
    }
    if let Some(first) = first_commit {
        let seconds = (Utc::now() - first).num_milliseconds().max(1000) as f64 / 1000.0;
        progress.records_per_s = recent_records as f64 / seconds.min(60.0);
    }
    let expected_remaining: u64 = tracker
        .shards
        .iter()
        .filter(|s| !tracker.markers.contains_key(s.id.as_str()))
        .map(|s| s.expected_records)
        .sum();
    if outstanding == 0 {
        progress.eta_s = Some(0.0);
        progress.completed_at = Some(Utc::now());
    } else if progress.records_per_s > 0.0 {
        progress.eta_s = Some(expected_remaining as f64 / progress.records_per_s);
    }
    progress
}
