//! The embedded mode: coordinator and N workers in one process over the in-process queue. The
//! workers are the same [`Worker`] the distributed mode runs; only the queue and the event
//! channel differ. Re-running the same job resumes: committed shards are skipped.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rubricmill_core::{JobSpec, MarkerSummary, StageCounts, Usage};
use rubricmill_queue::{InProcessEvents, InProcessQueue, ShardEvent, ShardTask, WorkQueue};
use rubricmill_store::UncommittedSpend;
use tokio::sync::watch;

use crate::RuntimeError;
use crate::coordinator::{pending_shards, plan_or_resume};
use crate::job::JobContext;
use crate::worker::{SingleJob, Worker, WorkerOptions};

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub workers: usize,
    pub shard_concurrency: usize,
    pub record_concurrency: usize,
    /// Deliveries of a shard before it is given up.
    pub max_deliver: u32,
    pub base_backoff: Duration,
    pub context: crate::job::ContextOptions,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            shard_concurrency: 2,
            record_concurrency: 16,
            max_deliver: 4,
            base_backoff: Duration::from_millis(500),
            context: crate::job::ContextOptions::default(),
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// Every shard is committed.
    Complete,
    /// Some shards failed for good; the rest are committed.
    ShardsFailed,
    /// The LLM budget is spent; uncommitted shards wait for a re-run with a larger budget.
    Budget(String),
    /// The job cannot go on until the user fixes something.
    Fatal(String),
    /// Stopped by the user; re-run to resume.
    Interrupted,
}

/// Totals over a set of shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub shards: u64,
    pub records: u64,
    pub rows: u64,
    pub rejects: u64,
    /// Of `rows`, those with `kept = false` (crg rubrics the consistency filter dropped,
    /// reference rubrics the self-check dropped). Known for the shards this run committed only:
    /// commit markers do not record it, so the tally of earlier runs leaves it 0.
    pub dropped_rows: u64,
    pub usage: Usage,
    /// Score jobs: the `agreement` stage of the shards (labelled records in, records whose
    /// scores prefer the labelled response out), from their marker summaries.
    pub agreement: Option<StageCounts>,
}

impl Tally {
    fn add_agreement(&mut self, summary: &MarkerSummary) {
        if let Some(agreement) = &summary.agreement {
            self.agreement.get_or_insert_default().add(agreement);
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub job: String,
    pub output_url: String,
    pub resumed: bool,
    pub shards_planned: u64,
    /// Shards committed before this run started.
    pub before: Tally,
    /// Shards this run committed.
    pub this_run: Tally,
    /// What attempts that did not commit paid the provider, in this run and earlier ones
    /// (killed runs, failed or retried attempts): their answers are in the response cache, so
    /// the committed attempts that replayed them show them as cache hits. Requests cut off on
    /// the wire are apart, at their estimate.
    pub uncommitted: UncommittedSpend,
    pub failed: Vec<(String, String)>,
    pub stop: StopReason,
    pub elapsed: Duration,
    /// Stage → the structured-output mode its endpoint settled on, for providers with modes.
    pub structured_output: BTreeMap<String, String>,
    /// Stage → the rate limits its provider announced (only stages whose provider did).
    pub provider_limits: BTreeMap<String, rubricmill_core::DiscoveredLimits>,
    /// Requests this run made to the job's output folder once its plan was loaded: resuming
    /// (the plan's chunks, the marker listing, the progress log) and the workers' (parts,
    /// rejects, markers, spend files).
    pub output_requests: rubricmill_store::RequestTally,
    /// Batch mode: shards still waiting for provider batches when the run ended (interrupted),
    /// with their open batches and items; while it runs, those waiting now.
    pub waiting: BTreeMap<String, (u32, u64)>,
    /// Batch mode: what the collected batches of shards this run did not commit cost (their
    /// batch records hold it; a shard's marker carries it once it commits).
    pub batch_paid: BTreeMap<String, Usage>,
}

/// What the job's LLM calls have done so far in this run, read from the gateways' live
/// counters: answers, tokens and cost as they arrive, retries and 429s as they are seen, also
/// of shards still in flight.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveUsage {
    /// Calls, cache hits, retries, throttled answers (429/503), tokens and cost so far.
    pub usage: Usage,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Batch mode: provider batches the run's waiting shards have open.
    pub batches_pending: u64,
}

impl LiveUsage {
    /// Answered calls per second since the run started.
    pub fn calls_per_second(&self) -> f64 {
        self.usage.calls as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }
}

/// How often a running job's live LLM counters go to the [`ProgressObserver`].
pub const LIVE_USAGE_EVERY: Duration = Duration::from_millis(500);

/// Receives progress while a run goes on (the CLI draws its progress bar from it).
pub trait ProgressObserver: Send {
    fn started(&mut self, _planned: u64, _already_committed: u64) {}
    fn shard_done(&mut self, _this_run: &Tally) {}
    /// The live LLM counters, every [`LIVE_USAGE_EVERY`] while shards run and once more when
    /// the workers have stopped (that last one equals the run's totals when every attempt
    /// committed).
    fn live_usage(&mut self, _live: &LiveUsage) {}
}

/// A progress observer that ignores everything.
pub struct NoProgress;
impl ProgressObserver for NoProgress {}

/// Runs a job to completion (or until `interrupt` resolves).
pub async fn run_embedded(
    spec: &JobSpec,
    options: &EmbeddedOptions,
    progress: &mut dyn ProgressObserver,
    interrupt: impl Future<Output = ()>,
) -> Result<RunSummary, RuntimeError> {
    let started = Instant::now();
    crate::job::preflight(spec)?;
    let (manifest, resumed) = plan_or_resume(spec).await?;
    let job = manifest.name.clone();
    let store = rubricmill_store::JobStore::open(&manifest.spec.output.url, &job)?;
    let (pending, markers) = pending_shards(&manifest, &store).await?;
    let uncommitted_before = store.uncommitted_spend().await?;
    let mut before = Tally {
        shards: markers.len() as u64,
        records: markers.iter().map(|m| m.records).sum(),
        rows: markers.iter().map(|m| m.rows).sum(),
        rejects: markers.iter().map(|m| m.rejects).sum(),
        dropped_rows: 0,
        usage: markers.iter().fold(Usage::default(), |mut total, m| {
            total.add(&m.usage);
            total
        }),
        agreement: None,
    };
    for marker in &markers {
        before.add_agreement(marker);
    }
    let mut summary = RunSummary {
        job: job.clone(),
        output_url: store.url(),
        resumed,
        shards_planned: manifest.shard_count,
        before: before.clone(),
        this_run: Tally::default(),
        uncommitted: uncommitted_before.clone(),
        failed: Vec::new(),
        stop: StopReason::Complete,
        elapsed: Duration::ZERO,
        structured_output: BTreeMap::new(),
        provider_limits: BTreeMap::new(),
        output_requests: Default::default(),
        waiting: BTreeMap::new(),
        batch_paid: BTreeMap::new(),
    };
    progress.started(summary.shards_planned, before.shards);
    if pending.is_empty() {
        tracing::info!(job = %job, shards = summary.shards_planned, "job already complete, nothing to do");
        summary.elapsed = started.elapsed();
        summary.output_requests = store.requests();
        return Ok(summary);
    }
    tracing::info!(job = %job, pending = pending.len(), committed = before.shards, resumed, "running job");
    let context = Arc::new(JobContext::new(
        manifest,
        before.usage.cost_usd + uncommitted_before.budgeted_usd(),
        &options.context,
    )?);
    let queue = InProcessQueue::new(options.max_deliver);
    for shard in &pending {
        queue
            .publish(ShardTask {
                job: job.clone(),
                shard: shard.clone(),
            })
            .await?;
    }
    let (events, mut event_rx) = InProcessEvents::channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..options.workers.max(1) {
        let mut worker_options = WorkerOptions::new(format!("embedded-{index}"));
        worker_options.shard_concurrency = options.shard_concurrency.max(1);
        worker_options.record_concurrency = options.record_concurrency.max(1);
        worker_options.base_backoff = options.base_backoff;
        let worker = Arc::new(Worker::new(
            worker_options,
            Arc::new(queue.clone()),
            Arc::new(SingleJob(context.clone())),
            Arc::new(events.clone()),
        ));
        workers.spawn(worker.run(stop_rx.clone()));
    }
    drop(events);
    let mut outstanding: HashSet<String> = pending.iter().map(|s| s.id.to_string()).collect();
    let mut log = ProgressRecorder::new(store.clone());
    tokio::pin!(interrupt);
    let mut stop = None;
    let live = |context: &JobContext, summary: &RunSummary| LiveUsage {
        usage: context.usage(),
        elapsed: started.elapsed(),
        batches_pending: summary.waiting.values().map(|(b, _)| u64::from(*b)).sum(),
    };
    let mut ticks = tokio::time::interval(LIVE_USAGE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while stop.is_none() && !outstanding.is_empty() {
        tokio::select! {
            _ = ticks.tick() => {
                progress.live_usage(&live(&context, &summary));
            }
            event = event_rx.recv() => {
                let Some(event) = event else { break };
                log.note(&event);
                stop = apply_event(event, &mut summary, &mut outstanding);
                progress.shard_done(&summary.this_run);
                log.save_if_due().await;
            }
            () = &mut interrupt => {
                tracing::warn!(job = %job, "interrupted: finishing shards in flight, then stopping");
                stop = Some(StopReason::Interrupted);
            }
        }
    }
    let _ = stop_tx.send(true);
    queue.close();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(error = %error, "worker ended with an error"),
            Err(error) => tracing::error!(error = %error, "worker task panicked"),
        }
    }
    // Shards that finished while the workers wound down.
    while let Ok(event) = event_rx.try_recv() {
        log.note(&event);
        let late_stop = apply_event(event, &mut summary, &mut outstanding);
        stop = stop.or(late_stop);
    }
    log.save().await;
    progress.shard_done(&summary.this_run);
    progress.live_usage(&live(&context, &summary));
    match store.uncommitted_spend().await {
        Ok(uncommitted) => summary.uncommitted = uncommitted,
        Err(error) => {
            tracing::warn!(job = %job, error = %error, "cannot read the spend of uncommitted attempts")
        }
    }
    summary.stop = match stop {
        Some(reason) => reason,
        None if outstanding.is_empty() && summary.failed.is_empty() => StopReason::Complete,
        None if outstanding.is_empty() => StopReason::ShardsFailed,
        None => StopReason::Interrupted,
    };
    summary.structured_output = context.structured_output_modes();
    summary.provider_limits = context.discovered_limits();
    summary.elapsed = started.elapsed();
    summary.output_requests = store.requests().plus(&context.store.requests());
    Ok(summary)
}

/// Folds one worker event into the summary; returns a reason to stop the run, if any.
fn apply_event(
    event: ShardEvent,
    summary: &mut RunSummary,
    outstanding: &mut HashSet<String>,
) -> Option<StopReason> {
    match event {
        ShardEvent::Committed {
            shard,
            records,
            rows,
            rejects,
            usage,
            dropped_rows,
            summary: marker,
            ..
        } => {
            outstanding.remove(&shard);
            summary.batch_paid.remove(&shard);
            let tally = &mut summary.this_run;
            if let Some(marker) = &marker {
                tally.add_agreement(marker);
            }
            tally.shards += 1;
            tally.records += records;
            tally.rows += rows;
            tally.rejects += rejects;
            tally.dropped_rows += dropped_rows;
            tally.usage.add(&usage);
            None
        }
        ShardEvent::AlreadyCommitted { shard, .. } => {
            outstanding.remove(&shard);
            summary.batch_paid.remove(&shard);
            None
        }
        ShardEvent::Failed { shard, reason, .. } => {
            outstanding.remove(&shard);
            summary.batch_paid.remove(&shard);
            summary.failed.push((shard, reason));
            None
        }
        ShardEvent::Waiting {
            shard,
            batches,
            items,
            collected,
            ..
        } => {
            summary.batch_paid.insert(shard.clone(), *collected);
            summary.waiting.insert(shard, (batches, items));
            None
        }
        ShardEvent::Started { shard, .. } => {
            summary.waiting.remove(&shard);
            None
        }
        ShardEvent::Retrying { .. } | ShardEvent::HandedBack { .. } => None,
        ShardEvent::BudgetExhausted { reason, .. } => Some(StopReason::Budget(reason)),
        ShardEvent::Fatal { reason, .. } => Some(StopReason::Fatal(reason)),
    }
}

/// Summaries of the markers this run's workers wrote, added to the job's progress log now and
/// then and at the end, so that resuming reads none of those markers again.
struct ProgressRecorder {
    store: rubricmill_store::JobStore,
    unsaved: Vec<MarkerSummary>,
    saved_at: Instant,
}

impl ProgressRecorder {
    /// Summaries held before they are written even if the time has not come.
    const MOST_UNSAVED: usize = 10_000;
    /// The longest a summary waits to be written.
    const SAVE_EVERY: Duration = Duration::from_secs(60);

    fn new(store: rubricmill_store::JobStore) -> Self {
        Self {
            store,
            unsaved: Vec::new(),
            saved_at: Instant::now(),
        }
    }

    fn note(&mut self, event: &ShardEvent) {
        if let ShardEvent::Committed {
            summary: Some(summary),
            ..
        } = event
        {
            self.unsaved.push(summary.as_ref().clone());
        }
    }

    async fn save_if_due(&mut self) {
        if self.unsaved.len() >= Self::MOST_UNSAVED || self.saved_at.elapsed() >= Self::SAVE_EVERY {
            self.save().await;
        }
    }

    /// Writes what is unsaved; a failure is only logged (resume then reads those markers).
    async fn save(&mut self) {
        self.saved_at = Instant::now();
        match self.store.write_progress(&self.unsaved).await {
            Ok(_) => self.unsaved.clear(),
            Err(error) => {
                tracing::warn!(job = %self.store.url(), error = %error, "cannot write the progress log")
            }
        }
    }
}
