//! The coordinator: keeps each running job's progress view current, records shards that
//! workers could not record as failed, and marks jobs complete. It holds no state of its own:
//! after a restart it rebuilds everything from the job's progress log and a listing of its
//! commit markers (the truth), so it can be stopped and replaced at any time.
//!
//! Its work grows with what changes, not with the size of the job (see [`super::tracker`]):
//! worker events name each commit with its marker's summary, and between full reconciles the
//! coordinator neither lists `commits/` nor walks the plan. A full reconcile (a paged listing
//! of `commits/` and `spend/`, reading only the markers it has not counted, then adding what it
//! counted to the progress log) runs when a job is first tracked, before the idle sweep acts,
//! before a job is marked complete, and every `full_reconcile_every`; it finds markers whose
//! events were lost.
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
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use rubricmill_cluster::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, NatsWorkQueue, QueueStats, RunningOn,
    WorkerBeat,
};
use rubricmill_core::{ShardId, ShardSpec};
use rubricmill_queue::{ShardEvent, ShardTask};
use rubricmill_store::JobStore;
use rubricmill_telemetry::{Health, Registry};
use tokio::sync::mpsc;

use super::metrics::CoordinatorMetrics;
use super::tracker::{PlanIndex, Tracker};
use crate::RuntimeError;

/// The least time between two reconciles brought forward by worker events.
const EVENT_DEBOUNCE: Duration = Duration::from_millis(250);

/// How long after a job completes its spend is still followed: an attempt that lost the race
/// to the last marker writes its final spend after the job is complete.
const SETTLE_AFTER_COMPLETE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// How often every running job's progress is brought up to date (events bring it sooner).
    pub reconcile_every: Duration,
    /// Idle reconciles in a row before outstanding shards are swept.
    pub sweep_after_idle_rounds: u32,
    /// How often each running job's markers are listed in full, besides when it is first
    /// tracked, before a sweep and before it is marked complete.
    pub full_reconcile_every: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            reconcile_every: Duration::from_secs(10),
            sweep_after_idle_rounds: 2,
            full_reconcile_every: Duration::from_secs(600),
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
    let subscription = client
        .subscribe(cluster.names().all_events())
        .await
        .map_err(|e| RuntimeError::Config(format!("subscribing to worker events: {e}")))?;
    // Events are taken off the connection at once, also while a reconcile runs, so a long
    // listing cannot make the client drop them.
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let forward = tokio::spawn(forward_events(
        subscription.map(|message| message.payload),
        event_tx,
    ));
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
        full_every_s = options.full_reconcile_every.as_secs_f64(),
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
            Some(event) = events.recv() => {
                coordinator.on_event(event);
                if !dirty {
                    dirty = true;
                    debounce.as_mut().reset(tokio::time::Instant::now() + EVENT_DEBOUNCE);
                }
            }
            Some(message) = advisories.next() => coordinator.on_max_deliveries(&message.payload).await,
        }
    }
    forward.abort();
    coordinator.save_progress_logs().await;
    connection.abort();
    cluster.flush().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Decodes worker events off the subscription into `sink`.
async fn forward_events<P: AsRef<[u8]>>(
    mut payloads: impl futures::Stream<Item = P> + Unpin,
    sink: mpsc::UnboundedSender<ShardEvent>,
) {
    while let Some(payload) = payloads.next().await {
        match serde_json::from_slice::<ShardEvent>(payload.as_ref()) {
            Ok(event) => {
                if sink.send(event).is_err() {
                    return;
                }
            }
            Err(error) => tracing::debug!(error = %error, "undecodable shard event"),
        }
    }
}

/// Whether a reconcile lists the job's markers in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// Events and the failure records only.
    Light,
    /// Also a listing of `commits/` and `spend/`.
    Full,
}

impl Depth {
    fn label(self) -> &'static str {
        match self {
            Depth::Light => "light",
            Depth::Full => "full",
        }
    }
}

struct Coordinator {
    cluster: Cluster,
    options: CoordinatorOptions,
    metrics: CoordinatorMetrics,
    trackers: HashMap<String, Tracker>,
}

impl Coordinator {
    /// Files a worker event with its job (events of jobs not tracked yet are covered by the
    /// full listing that starts tracking them).
    fn on_event(&mut self, event: ShardEvent) {
        self.metrics.events.inc();
        if let Some(tracker) = self.trackers.get_mut(event.job()) {
            tracker.inbox.note(event);
        }
    }

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
        let ttl = self.cluster.settings().heartbeat_ttl;
        let now = Utc::now();
        let live: Vec<WorkerBeat> = match self.cluster.workers().await {
            Ok(workers) => workers
                .into_iter()
                .filter(|beat| beat.is_live(ttl, now))
                .collect(),
            Err(error) => {
                tracing::warn!(error = %error, "cannot read worker heartbeats");
                Vec::new()
            }
        };
        self.metrics.live_workers.set(live.len() as f64);
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
            if let Err(error) = self.reconcile(&record, queue, &live).await {
                tracing::warn!(job = %record.name, error = %error, "reconcile failed");
            }
        }
        for tracker in self.trackers.values_mut() {
            self.metrics.count_requests(tracker);
        }
    }

    /// The job's tracker, created from the progress log and a full listing of its markers
    /// (reading only the markers the log does not summarise) when the job is new to us.
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
            let plan = PlanIndex::load(&store, manifest).await?;
            let mut tracker = Tracker::new(store.clone(), plan);
            // Summaries stream into the sums (none is held beyond its line): a listing, the
            // log, then the listed markers no summary covers, which go into the log.
            let listed = listed_shards(&store).await?;
            let log = store
                .read_progress(|summary| {
                    if listed.contains(&summary.shard_id) {
                        tracker.add(summary, false);
                    }
                })
                .await?;
            if log.wants_compaction()
                && let Err(error) = store.compact_progress_files(&log).await
            {
                tracing::warn!(job = %record.name, error = %error, "cannot compact the progress log");
            }
            tracker.read_new_markers(listed).await?;
            let unsaved = std::mem::take(&mut tracker.unsaved);
            if let Err(error) = store.write_progress(&unsaved).await {
                tracing::warn!(job = %record.name, error = %error, "cannot write the progress log");
                tracker.unsaved = unsaved;
            }
            tracker.refresh_spends().await?;
            tracker.listed_at = Some(tokio::time::Instant::now());
            self.metrics.full_reconciles.inc();
            self.metrics.count_requests(&mut tracker);
            tracing::info!(job = %record.name, shards = tracker.plan.len(), committed = tracker.committed.len(), "tracking job");
            self.trackers.insert(record.name.clone(), tracker);
        }
        Ok(self.trackers.get_mut(&record.name).expect("inserted above"))
    }

    async fn reconcile(
        &mut self,
        record: &JobRecord,
        queue: Option<QueueStats>,
        live: &[WorkerBeat],
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let full_every = self.options.full_reconcile_every;
        // A job tracked just now was listed in full as it was.
        let new = !self.trackers.contains_key(&record.name);
        let tracker = self.tracker(record).await?;
        tracker.apply_inbox().await?;
        let due = tracker
            .listed_at
            .is_none_or(|at| at.elapsed() >= full_every);
        let mut depth = if new || due {
            Depth::Full
        } else {
            Depth::Light
        };
        if due && !new && !self.list_in_full(record).await? {
            return Ok(());
        }
        let mut failed = self.failed_shards(record).await?;
        let tracker = self.trackers.get_mut(&record.name).expect("tracked above");
        let mut outstanding = outstanding_count(tracker, &failed);
        let idle = queue.is_some_and(|q| q.pending == 0 && q.ack_pending == 0);
        tracker.idle_rounds = if idle && outstanding > 0 {
            tracker.idle_rounds + 1
        } else {
            0
        };
        let sweep = tracker.idle_rounds >= self.options.sweep_after_idle_rounds;
        // Before the sweep acts or the job is marked complete, the markers are listed: a
        // commit whose event was lost is found here rather than swept or missed.
        if (sweep || outstanding == 0) && depth == Depth::Light {
            depth = Depth::Full;
            if !self.list_in_full(record).await? {
                return Ok(());
            }
            failed = self.failed_shards(record).await?;
            let tracker = self.trackers.get(&record.name).expect("tracked above");
            outstanding = outstanding_count(tracker, &failed);
        }
        let tracker = self.trackers.get_mut(&record.name).expect("tracked above");
        let mut progress = tracker.progress(failed.len() as u64, outstanding);
        progress.running = running_on(&record.name, live, &tracker.committed, &failed);
        tracker.published = Some(progress.clone());
        self.publish_progress(record, &progress, failed.len() as u64, outstanding);
        self.cluster.put_progress(&record.name, &progress).await?;
        if sweep && outstanding > 0 {
            let tracker = self.trackers.get(&record.name).expect("tracked above");
            let shards = tracker
                .plan
                .outstanding(&tracker.store, &tracker.committed, &failed)
                .await?;
            self.sweep(record, shards).await?;
        }
        self.metrics
            .reconcile_seconds
            .with(&[depth.label()])
            .inc_by(started.elapsed().as_secs_f64());
        if outstanding > 0 {
            return Ok(());
        }
        let completed = self
            .cluster
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
                tracker.settle_until = Some(tokio::time::Instant::now() + SETTLE_AFTER_COMPLETE);
            }
        }
        Ok(())
    }

    /// The full reconcile of one job: lists `commits/` (paged), counts the markers it had not
    /// counted (reading them with a bounded window), lists `spend/`, and adds the summaries the
    /// listing confirms to the progress log. A counted shard the listing lacks means the count
    /// was wrong (an event named a marker that is not there): the tracker is dropped and
    /// rebuilt from the store on the next reconcile. Returns false in that case.
    async fn list_in_full(&mut self, record: &JobRecord) -> Result<bool, RuntimeError> {
        let tracker = self
            .trackers
            .get_mut(&record.name)
            .expect("tracked before listing");
        let listed = listed_shards(&tracker.store).await?;
        let vanished = tracker
            .committed
            .keys()
            .filter(|shard| !listed.contains(&ShardId((*shard).clone())))
            .count();
        if vanished > 0 {
            tracing::warn!(job = %record.name, shards = vanished, "counted commits have no marker; rebuilding the job's progress from storage");
            if let Some(mut dropped) = self.trackers.remove(&record.name) {
                self.metrics.count_requests(&mut dropped);
            }
            return Ok(false);
        }
        let found = tracker.read_new_markers(listed).await?;
        if found > 0 {
            tracing::info!(job = %record.name, shards = found, "full listing found commits no event reported");
        }
        tracker.refresh_spends().await?;
        let unsaved = std::mem::take(&mut tracker.unsaved);
        if let Err(error) = tracker.store.write_progress(&unsaved).await {
            tracing::warn!(job = %record.name, error = %error, "cannot write the progress log");
            tracker.unsaved = unsaved;
        }
        tracker.listed_at = Some(tokio::time::Instant::now());
        self.metrics.full_reconciles.inc();
        Ok(true)
    }

    /// On the way out: each job's summaries not yet in its progress log are written, those a
    /// listing of `commits/` confirms, so the next coordinator reads none of those markers.
    async fn save_progress_logs(&mut self) {
        for (job, tracker) in &mut self.trackers {
            if tracker.unsaved.is_empty() {
                continue;
            }
            let saved = async {
                let listed = listed_shards(&tracker.store).await?;
                let confirmed = tracker
                    .unsaved
                    .iter()
                    .filter(|summary| listed.contains(&summary.shard_id));
                tracker.store.write_progress(confirmed).await?;
                Ok::<(), RuntimeError>(())
            };
            if let Err(error) = saved.await {
                tracing::warn!(job = %job, error = %error, "cannot write the progress log on the way out");
            }
        }
    }

    /// The job's failed shards from their records; records of shards committed after all (a
    /// retry, or a race with the sweep) are removed.
    async fn failed_shards(&self, record: &JobRecord) -> Result<HashSet<String>, RuntimeError> {
        let tracker = self.trackers.get(&record.name).expect("tracked above");
        let mut failed = HashSet::new();
        for failure in self.cluster.failures(&record.name).await? {
            if tracker.committed.contains_key(&failure.shard) {
                self.cluster
                    .clear_failure(&record.name, &failure.shard)
                    .await?;
            } else {
                failed.insert(failure.shard);
            }
        }
        Ok(failed)
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
            if let Some(mut dropped) = self.trackers.remove(&record.name) {
                self.metrics.count_requests(&mut dropped);
            }
            return Ok(());
        }
        let Some(mut progress) = tracker.published.clone() else {
            return Ok(());
        };
        // Spend files of attempts that ended after the last listing, as their events tell.
        if tracker.inbox.is_empty() {
            return Ok(());
        }
        tracker.apply_inbox().await?;
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
        let paid = progress.paid();
        self.metrics
            .batches_pending
            .with(&[job])
            .set(progress.batches_pending as f64);
        self.metrics
            .batch_items_pending
            .with(&[job])
            .set(progress.batch_items_pending as f64);
        self.metrics
            .batch_calls
            .with(&[job])
            .set(paid.batch_calls as f64);
        self.metrics
            .batch_saved
            .with(&[job])
            .set(paid.batch_saved_usd);
        if let Some(limit) = record.plan.spec.llm.max_cost_usd {
            self.metrics.budget.with(&[job]).set(limit);
        }
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

/// The job's shards in flight on live workers, neither committed nor failed; a shard listed
/// by two workers (delivered again) counts once, on the worker that started it last.
fn running_on(
    job: &str,
    live: &[WorkerBeat],
    committed: &HashMap<String, String>,
    failed: &HashSet<String>,
) -> Vec<RunningOn> {
    let mut running: BTreeMap<&str, RunningOn> = BTreeMap::new();
    for beat in live {
        for shard in beat.in_flight.iter().filter(|s| s.job == job) {
            let id = shard.shard.as_str();
            if committed.contains_key(id) || failed.contains(id) {
                continue;
            }
            if running.get(id).is_some_and(|r| r.since >= shard.since) {
                continue;
            }
            running.insert(
                id,
                RunningOn {
                    shard: shard.shard.clone(),
                    worker: beat.id.clone(),
                    attempt: shard.attempt,
                    since: shard.since,
                },
            );
        }
    }
    running.into_values().collect()
}

/// Planned shards neither committed nor failed: a count from the running sums.
fn outstanding_count(tracker: &Tracker, failed: &HashSet<String>) -> u64 {
    // A failure record of a committed shard is cleared before this is counted.
    tracker
        .plan
        .len()
        .saturating_sub(tracker.committed.len() as u64 + failed.len() as u64)
}

/// The shards with a commit marker, as a set.
async fn listed_shards(store: &JobStore) -> Result<HashSet<ShardId>, RuntimeError> {
    Ok(store.committed_shards().await?.into_iter().collect())
}
