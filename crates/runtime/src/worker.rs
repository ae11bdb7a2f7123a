//! The worker: pulls shard deliveries from a [`WorkQueue`] as it has capacity, processes each
//! shard through its job's pipeline, writes the attempt's files, commits, and only then acks.
//! The same loop serves the embedded and the distributed mode.
//!
//! Per delivery: a committed marker means ack and stop (redelivery after a crash). Otherwise a
//! fresh attempt id, read → pipeline → encode → write → commit. Retryable failures nak with a
//! backoff until the last delivery, which records the failure and terms. A fatal LLM error or a
//! spent budget is reported and the shard is handed back uncommitted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use rubricmill_core::{
    CrgRow, NuggetRow, OutputRow, PipelineKind, ReferenceRow, RejectRow, ResearchQaRow, ScoreRow,
    ShardId, StageCounts, Usage,
};
use rubricmill_llm::{AttemptScope, RecordScope, full_jitter};
use rubricmill_mine::{PipelineError, RecordContext, RecordOutcome};
use rubricmill_queue::{Delivery, EventSink, ShardEvent, WorkQueue};
use rubricmill_store::output::{
    crg_batch, nuggets_batch, reference_batch, rejects_batch, researchqa_batch, score_batch,
};
use rubricmill_store::part::{FinishedPart, PartWriter};
use rubricmill_store::{CommitMarker, CommitOutcome, ReadItem, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::RuntimeError;
use crate::batch::{BatchStop, ShardBatchRun};
use crate::job::JobContext;
use crate::spend::{AttemptEnd, AttemptLedger};

/// Resolves once the flag turns true; never when its sender is gone without doing so.
async fn turned_true(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|now| *now).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Finds the context of the job a delivery belongs to.
#[async_trait::async_trait]
pub trait JobResolver: Send + Sync {
    async fn resolve(&self, job: &str) -> Result<Arc<JobContext>, RuntimeError>;

    /// Checks that a delivered shard may be processed (the distributed worker's policy
    /// judges the files it names); an error drops the delivery like [`Self::resolve`]'s.
    async fn check_shard(
        &self,
        _job: &str,
        _shard: &rubricmill_core::ShardSpec,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }
}

/// Resolves exactly one job (the embedded mode).
pub struct SingleJob(pub Arc<JobContext>);

#[async_trait::async_trait]
impl JobResolver for SingleJob {
    async fn resolve(&self, job: &str) -> Result<Arc<JobContext>, RuntimeError> {
        if job == self.0.manifest.name {
            return Ok(self.0.clone());
        }
        Err(RuntimeError::UnknownJob(job.to_owned()))
    }
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// Shards processed at once.
    pub shard_concurrency: usize,
    /// Records of one shard in the pipeline at once.
    pub record_concurrency: usize,
    /// Interval of progress heartbeats while a shard runs.
    pub heartbeat: Duration,
    /// First retry delay; doubled per delivery, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl WorkerOptions {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            shard_concurrency: 2,
            record_concurrency: 16,
            heartbeat: Duration::from_secs(10),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

pub struct Worker {
    options: WorkerOptions,
    queue: Arc<dyn WorkQueue>,
    jobs: Arc<dyn JobResolver>,
    events: Arc<dyn EventSink>,
    /// Turns true when shards in flight must be handed back now (the drain deadline passed).
    hand_back: watch::Receiver<bool>,
}

impl Worker {
    pub fn new(
        options: WorkerOptions,
        queue: Arc<dyn WorkQueue>,
        jobs: Arc<dyn JobResolver>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            options,
            queue,
            jobs,
            events,
            hand_back: watch::channel(false).1,
        }
    }

    /// Shards in flight are handed back (nak, no delay) as soon as `hand_back` turns true.
    pub fn with_hand_back(mut self, hand_back: watch::Receiver<bool>) -> Self {
        self.hand_back = hand_back;
        self
    }

    /// Runs until the queue closes or `stop` turns true (which closes the queue); then waits for
    /// the shards in flight.
    ///
    /// A pull is never abandoned halfway: a JetStream pull dropped while it waits would strand
    /// the message the server was about to deliver until its ack deadline. So finished shards
    /// only free their slots for the next pull, and stopping goes through `WorkQueue::close`,
    /// which ends a pull in progress cleanly.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Result<(), RuntimeError> {
        let closer = {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                // A dropped sender means stop too.
                let _ = stop.wait_for(|stopped| *stopped).await;
                queue.close();
            })
        };
        let mut in_flight = JoinSet::new();
        loop {
            while in_flight.try_join_next().is_some() {}
            let free = self
                .options
                .shard_concurrency
                .saturating_sub(in_flight.len());
            if free == 0 {
                in_flight.join_next().await;
                continue;
            }
            let pulled = match self.queue.pull(free).await {
                Ok(pulled) => pulled,
                Err(error) => {
                    closer.abort();
                    return Err(error.into());
                }
            };
            let Some(deliveries) = pulled else { break };
            for delivery in deliveries {
                let worker = self.clone();
                in_flight.spawn(async move { worker.handle(delivery).await });
            }
        }
        closer.abort();
        while in_flight.join_next().await.is_some() {}
        tracing::debug!(worker = %self.options.worker_id, "worker stopped");
        Ok(())
    }

    async fn handle(&self, delivery: Box<dyn Delivery>) {
        let task = delivery.task().clone();
        let (job, shard) = (task.job.clone(), task.shard.id.to_string());
        let resolved = match self.jobs.resolve(&job).await {
            Ok(context) => self
                .jobs
                .check_shard(&job, &task.shard)
                .await
                .map(|()| context),
            Err(error) => Err(error),
        };
        let context = match resolved {
            Ok(context) => context,
            Err(RuntimeError::JobInactive { state, .. }) => {
                tracing::debug!(job = %job, shard = %shard, state = %state, "dropping a shard of an inactive job");
                let _ = delivery.term().await;
                return;
            }
            Err(error) => {
                self.retry_or_fail(delivery, error.to_string()).await;
                return;
            }
        };
        match context.store.marker(&task.shard.id).await {
            Ok(Some(_)) => {
                tracing::debug!(job = %job, shard = %shard, "shard already committed");
                let _ = delivery.ack().await;
                self.events
                    .send(ShardEvent::AlreadyCommitted { job, shard })
                    .await;
                return;
            }
            Ok(None) => {}
            Err(error) => {
                self.retry_or_fail(delivery, error.to_string()).await;
                return;
            }
        }
        let attempt = delivery.attempt();
        let queued_ms = delivery
            .queued_at()
            .and_then(|queued| queued.elapsed().ok())
            .map(|waited| u64::try_from(waited.as_millis()).unwrap_or(u64::MAX));
        let attempt_id = uuid::Uuid::now_v7().to_string();
        // What this attempt pays is on storage as its calls finish, however the attempt ends.
        let ledger = context.bills().then(|| {
            AttemptLedger::start(
                context.store.clone(),
                &task.shard.id,
                &attempt_id,
                &self.options.worker_id,
            )
        });
        let scope = AttemptScope {
            origin: format!("{job}/{shard}/{attempt_id}"),
            ledger: ledger.as_ref().map(AttemptLedger::handle),
        };
        self.events
            .send(ShardEvent::Started {
                job: job.clone(),
                shard: shard.clone(),
                worker: self.options.worker_id.clone(),
                attempt,
                queued_ms,
            })
            .await;
        let processed = {
            let mut work = Box::pin(scope.run(self.process(&context, &task.shard, attempt_id)));
            let mut heartbeat = tokio::time::interval(self.options.heartbeat);
            heartbeat.tick().await;
            let mut hand_back = self.hand_back.clone();
            loop {
                tokio::select! {
                    result = &mut work => break result,
                    () = turned_true(&mut hand_back) => {
                        // Dropping `work` abandons the attempt: its part uploads are aborted
                        // as they drop, and files already written are unreferenced, for the
                        // janitor.
                        tracing::info!(job = %job, shard = %shard, "handing the shard back");
                        // Calls still in flight are cut off here; those that finished are in
                        // the ledger.
                        drop(work);
                        settle(ledger, AttemptEnd::NotCommitted).await;
                        let _ = delivery.nak(Duration::ZERO).await;
                        self.events
                            .send(ShardEvent::HandedBack {
                                job,
                                shard,
                                worker: self.options.worker_id.clone(),
                            })
                            .await;
                        return;
                    }
                    _ = heartbeat.tick() => {
                        if let Err(error) = delivery.progress().await {
                            tracing::warn!(shard = %shard, error = %error, "progress heartbeat failed");
                        }
                    }
                }
            }
        };
        let end = match &processed {
            Ok(Committed::Ours { .. }) => AttemptEnd::Committed,
            _ => AttemptEnd::NotCommitted,
        };
        settle(ledger, end).await;
        match processed {
            Ok(Committed::Ours {
                marker,
                dropped_rows,
            }) => {
                if let Err(error) = delivery.ack().await {
                    // The marker is written: a redelivery will find it and ack.
                    tracing::warn!(shard = %shard, error = %error, "ack after commit failed");
                }
                tracing::debug!(job = %job, shard = %shard, rows = marker.rows, rejects = marker.rejects, "shard committed");
                self.events
                    .send(ShardEvent::Committed {
                        job,
                        shard,
                        worker: self.options.worker_id.clone(),
                        records: marker.records,
                        rows: marker.rows,
                        rejects: marker.rejects,
                        usage: Box::new(marker.usage),
                        summary: Some(Box::new(marker.summary())),
                        dropped_rows,
                    })
                    .await;
            }
            Ok(Committed::Theirs) => {
                let _ = delivery.ack().await;
                self.events
                    .send(ShardEvent::AlreadyCommitted { job, shard })
                    .await;
            }
            Err(ShardFailure::Fatal(reason)) => {
                let _ = delivery.nak(Duration::ZERO).await;
                self.events
                    .send(ShardEvent::Fatal { job, shard, reason })
                    .await;
            }
            Err(ShardFailure::Budget(reason)) => {
                let _ = delivery.nak(self.options.max_backoff).await;
                self.events
                    .send(ShardEvent::BudgetExhausted { job, shard, reason })
                    .await;
            }
            Err(ShardFailure::Retryable(reason)) => self.retry_or_fail(delivery, reason).await,
            Err(ShardFailure::Waiting {
                batches,
                items,
                delay,
                collected,
            }) => {
                if let Err(error) = delivery.release(delay).await {
                    tracing::warn!(job = %job, shard = %shard, error = %error, "cannot release a shard waiting for its batch");
                }
                self.events
                    .send(ShardEvent::Waiting {
                        job,
                        shard,
                        worker: self.options.worker_id.clone(),
                        batches,
                        items,
                        collected,
                    })
                    .await;
            }
        }
    }

    /// Naks with backoff, or, on the last delivery, records the failure and terms.
    async fn retry_or_fail(&self, delivery: Box<dyn Delivery>, reason: String) {
        let task = delivery.task().clone();
        let (job, shard) = (task.job, task.shard.id.to_string());
        let attempt = delivery.attempt();
        if attempt >= delivery.max_deliver() {
            tracing::warn!(job = %job, shard = %shard, attempt, reason = %reason, "shard failed for good");
            self.events
                .send(ShardEvent::Failed { job, shard, reason })
                .await;
            let _ = delivery.term().await;
            return;
        }
        let delay = full_jitter(self.options.base_backoff, self.options.max_backoff, attempt);
        tracing::info!(job = %job, shard = %shard, attempt, delay_ms = delay.as_millis() as u64, reason = %reason, "shard attempt failed, retrying");
        let _ = delivery.nak(delay).await;
        self.events
            .send(ShardEvent::Retrying {
                job,
                shard,
                attempt,
                reason,
            })
            .await;
    }

    async fn process(
        &self,
        context: &JobContext,
        shard: &rubricmill_core::ShardSpec,
        attempt_id: String,
    ) -> Result<Committed, ShardFailure> {
        let batches = match context.batch {
            Some(settings) => Some(
                ShardBatchRun::begin(context, shard, settings)
                    .await
                    .map_err(ShardFailure::from_batch)?,
            ),
            None => None,
        };
        let batch_scope = batches.as_ref().map(|run| run.scope.clone());
        let ctx = RecordContext {
            shard_id: shard.id.to_string(),
            attempt_id: attempt_id.clone(),
        };
        let mut output = ShardOutput::new(context, &shard.id, &attempt_id);
        if let Some(run) = &batches {
            // The shard's batches were paid once, each recorded with its collection: the marker
            // carries them all.
            output.usage.add(&run.collected());
        }
        let mut read_items = context.read_shard(shard);
        let pipeline = context.pipeline.clone();
        // Records flow through the pipeline in order, `record_concurrency` at a time.
        let mut outcomes = Box::pin(
            futures::stream::poll_fn(move |cx| read_items.poll_next_unpin(cx))
                .map(|item| {
                    let pipeline = pipeline.clone();
                    let ctx = ctx.clone();
                    let batch_scope = batch_scope.clone();
                    async move {
                        match item {
                            Ok(ReadItem::Record(record)) => {
                                let scope = RecordScope::default();
                                let work = scope.run(pipeline.process(record, &ctx));
                                let outcome = match &batch_scope {
                                    Some(batch) => batch.run(work).await,
                                    None => work.await,
                                };
                                Ok(Some(
                                    outcome.map(|outcome| with_cache_origins(outcome, &scope)),
                                ))
                            }
                            Ok(ReadItem::Reject {
                                source,
                                reason,
                                excerpt,
                            }) => {
                                let mut outcome = RecordOutcome::default();
                                outcome.enter("read");
                                outcome.reject(&ctx, &source, "read", reason, &excerpt);
                                Ok(Some(Ok(outcome)))
                            }
                            Err(error) => Err(error),
                        }
                    }
                })
                .buffered(self.options.record_concurrency.max(1)),
        );
        let mut failure = None;
        // Records with a call deferred to a batch: the pass goes on to collect every deferral,
        // but writes nothing, since this attempt will not commit.
        let mut deferred = 0u64;
        while let Some(result) = outcomes.next().await {
            let outcome = match result {
                Ok(Some(Ok(outcome))) if deferred == 0 => outcome,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(error))) if error.is_deferred() => {
                    deferred += 1;
                    continue;
                }
                Ok(Some(Err(error))) => {
                    failure = Some(ShardFailure::from_pipeline(error));
                    break;
                }
                Ok(None) => continue,
                Err(error) => {
                    failure = Some(ShardFailure::Retryable(error.to_string()));
                    break;
                }
            };
            if let Err(error) = output.absorb(outcome).await {
                failure = Some(ShardFailure::Retryable(error.to_string()));
                break;
            }
        }
        drop(outcomes);
        if let Some(failure) = failure {
            output.abort().await;
            return Err(failure);
        }
        if let Some(run) = batches
            && deferred > 0
        {
            output.abort().await;
            tracing::debug!(shard = %shard.id, records = deferred, "records wait for a provider batch");
            let waiting = run.submit().await.map_err(ShardFailure::from_batch)?;
            return Err(ShardFailure::from_batch(waiting));
        }
        self.commit(context, shard, attempt_id.clone(), output)
            .await
    }

    async fn commit(
        &self,
        context: &JobContext,
        shard: &rubricmill_core::ShardSpec,
        attempt_id: String,
        output: ShardOutput<'_>,
    ) -> Result<Committed, ShardFailure> {
        let finished = output
            .finish()
            .await
            .map_err(|e| ShardFailure::Retryable(e.to_string()))?;
        let Finished {
            rows_part,
            rejects_part,
            rows: row_count,
            rejects: reject_count,
            dropped_rows,
            stages,
            usage,
            records,
        } = finished;
        let (part, bytes, checksum) = match rows_part {
            Some(part) => (Some(part.relative), part.bytes, Some(part.checksum)),
            None => (None, 0, None),
        };
        let marker = CommitMarker {
            shard_id: shard.id.clone(),
            attempt_id,
            worker_id: self.options.worker_id.clone(),
            committed_at: Utc::now(),
            part,
            rejects_part: rejects_part.map(|p| p.relative),
            rows: row_count,
            rejects: reject_count,
            bytes,
            checksum,
            records,
            stages,
            usage,
        };
        match context.store.commit(&marker).await {
            Ok(CommitOutcome::Won) => Ok(Committed::Ours {
                marker: Box::new(marker),
                dropped_rows,
            }),
            Ok(CommitOutcome::Lost(_)) => Ok(Committed::Theirs),
            Err(error) => Err(ShardFailure::Retryable(error.to_string())),
        }
    }
}

/// Settles an attempt's spend file, when the job keeps one.
async fn settle(ledger: Option<AttemptLedger>, end: AttemptEnd) {
    if let Some(ledger) = ledger {
        ledger.finish(end).await;
    }
}

/// Labels a record's rows with the attempts that paid for the cached answers they were made
/// from.
fn with_cache_origins(mut outcome: RecordOutcome, scope: &RecordScope) -> RecordOutcome {
    let origins = scope.cached_from();
    if origins.is_empty() {
        return outcome;
    }
    for row in &mut outcome.rows {
        row.provenance_mut().cached_from = origins.clone();
    }
    outcome
}

/// The part in `slot`, started by `start` at the first batch: a shard without rows (or
/// rejects) writes no such file.
fn started(
    slot: &mut Option<PartWriter>,
    start: impl FnOnce() -> Result<PartWriter, StoreError>,
) -> Result<&mut PartWriter, StoreError> {
    if slot.is_none() {
        *slot = Some(start()?);
    }
    Ok(slot.as_mut().expect("started above"))
}

/// Rows buffered before they are encoded and sent as one batch.
const FLUSH_ROWS: usize = 2048;

/// Rows of one shard waiting to be written, by pipeline.
#[derive(Default)]
struct ShardRows {
    researchqa: Vec<ResearchQaRow>,
    crg: Vec<CrgRow>,
    reference: Vec<ReferenceRow>,
    nuggets: Vec<NuggetRow>,
    score: Vec<ScoreRow>,
}

impl ShardRows {
    fn len(&self) -> usize {
        self.researchqa.len()
            + self.crg.len()
            + self.reference.len()
            + self.nuggets.len()
            + self.score.len()
    }

    /// Adds a row; returns whether it is one with `kept = false` (a crg row the consistency
    /// filter dropped, a reference row the self-check dropped).
    fn push(&mut self, row: OutputRow) -> bool {
        match row {
            OutputRow::ResearchQa(row) => self.researchqa.push(row),
            OutputRow::Crg(row) => {
                let dropped = !row.kept;
                self.crg.push(row);
                return dropped;
            }
            OutputRow::Reference(row) => {
                let dropped = !row.kept;
                self.reference.push(row);
                return dropped;
            }
            OutputRow::Nuggets(row) => self.nuggets.push(row),
            OutputRow::Score(row) => self.score.push(row),
        }
        false
    }
}

/// What one attempt wrote and counted.
struct Finished {
    rows_part: Option<FinishedPart>,
    rejects_part: Option<FinishedPart>,
    rows: u64,
    rejects: u64,
    /// Rows with `kept = false`.
    dropped_rows: u64,
    stages: BTreeMap<String, StageCounts>,
    usage: Usage,
    records: u64,
}

/// The output of one attempt, streamed: rows and rejects are buffered up to [`FLUSH_ROWS`],
/// then encoded and uploaded, so a shard's memory does not grow with its size. Files are
/// opened at the first row, so a shard without rows (or rejects) writes no such file.
struct ShardOutput<'a> {
    context: &'a JobContext,
    shard: &'a ShardId,
    attempt: &'a str,
    rows: ShardRows,
    rejects: Vec<RejectRow>,
    rows_part: Option<PartWriter>,
    rejects_part: Option<PartWriter>,
    row_count: u64,
    reject_count: u64,
    dropped_rows: u64,
    stages: BTreeMap<String, StageCounts>,
    usage: Usage,
    records: u64,
}

impl<'a> ShardOutput<'a> {
    fn new(context: &'a JobContext, shard: &'a ShardId, attempt: &'a str) -> Self {
        Self {
            context,
            shard,
            attempt,
            rows: ShardRows::default(),
            rejects: Vec::new(),
            rows_part: None,
            rejects_part: None,
            row_count: 0,
            reject_count: 0,
            dropped_rows: 0,
            stages: BTreeMap::new(),
            usage: Usage::default(),
            records: 0,
        }
    }

    async fn absorb(&mut self, outcome: RecordOutcome) -> Result<(), StoreError> {
        self.records += 1;
        for row in outcome.rows {
            self.dropped_rows += u64::from(self.rows.push(row));
        }
        self.rejects.extend(outcome.rejects);
        for (stage, counts) in outcome.stages {
            self.stages.entry(stage).or_default().add(&counts);
        }
        self.usage.add(&outcome.usage);
        if self.rows.len() >= FLUSH_ROWS {
            self.flush_rows().await?;
        }
        if self.rejects.len() >= FLUSH_ROWS {
            self.flush_rejects().await?;
        }
        Ok(())
    }

    async fn flush_rows(&mut self) -> Result<(), StoreError> {
        if self.rows.len() == 0 {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        self.row_count += rows.len() as u64;
        let kind = self.context.pipeline.kind();
        let batch = tokio::task::spawn_blocking(move || match kind {
            PipelineKind::Researchqa => researchqa_batch(&rows.researchqa),
            PipelineKind::Crg => crg_batch(&rows.crg),
            PipelineKind::Reference => reference_batch(&rows.reference),
            PipelineKind::Nuggets => nuggets_batch(&rows.nuggets),
            PipelineKind::Score => score_batch(&rows.score),
        })
        .await
        .map_err(|e| StoreError::Encode(format!("encoding task failed: {e}")))??;
        let part = started(&mut self.rows_part, || {
            self.context.store.begin_part(
                "parts",
                self.shard,
                self.attempt,
                batch.schema(),
                &self.context.file_metadata,
            )
        })?;
        part.write(batch).await
    }

    async fn flush_rejects(&mut self) -> Result<(), StoreError> {
        if self.rejects.is_empty() {
            return Ok(());
        }
        let rejects = std::mem::take(&mut self.rejects);
        self.reject_count += rejects.len() as u64;
        let batch = tokio::task::spawn_blocking(move || rejects_batch(&rejects))
            .await
            .map_err(|e| StoreError::Encode(format!("encoding task failed: {e}")))??;
        let part = started(&mut self.rejects_part, || {
            let mut metadata = self.context.file_metadata.clone();
            metadata.insert("rubricmill.table".into(), "rejects".into());
            self.context.store.begin_part(
                "rejects",
                self.shard,
                self.attempt,
                batch.schema(),
                &metadata,
            )
        })?;
        part.write(batch).await
    }

    async fn finish(mut self) -> Result<Finished, StoreError> {
        self.flush_rows().await?;
        self.flush_rejects().await?;
        let rows_part = match self.rows_part.take() {
            Some(part) => Some(part.finish().await?),
            None => None,
        };
        let rejects_part = match self.rejects_part.take() {
            Some(part) => Some(part.finish().await?),
            None => None,
        };
        Ok(Finished {
            rows_part,
            rejects_part,
            rows: self.row_count,
            rejects: self.reject_count,
            dropped_rows: self.dropped_rows,
            stages: self.stages,
            usage: self.usage,
            records: self.records,
        })
    }

    /// Abandons the attempt's uploads.
    async fn abort(mut self) {
        for part in [self.rows_part.take(), self.rejects_part.take()]
            .into_iter()
            .flatten()
        {
            part.abort().await;
        }
    }
}

enum Committed {
    Ours {
        marker: Box<CommitMarker>,
        /// Of the marker's rows, those with `kept = false`.
        dropped_rows: u64,
    },
    Theirs,
}

enum ShardFailure {
    Fatal(String),
    Budget(String),
    Retryable(String),
    /// Batch mode: the shard's calls are with the provider; release it for `delay`.
    Waiting {
        batches: u32,
        items: u64,
        delay: Duration,
        collected: Box<rubricmill_core::Usage>,
    },
}

impl ShardFailure {
    fn from_batch(stop: BatchStop) -> Self {
        match stop {
            BatchStop::Waiting {
                batches,
                items,
                delay,
                collected,
            } => ShardFailure::Waiting {
                batches,
                items,
                delay,
                collected,
            },
            BatchStop::Retryable(reason) => ShardFailure::Retryable(reason),
            BatchStop::Fatal(reason) => ShardFailure::Fatal(reason),
            BatchStop::Budget(reason) => ShardFailure::Budget(reason),
        }
    }

    fn from_pipeline(error: PipelineError) -> Self {
        if error.is_fatal() {
            ShardFailure::Fatal(error.to_string())
        } else if error.is_budget() {
            ShardFailure::Budget(error.to_string())
        } else {
            ShardFailure::Retryable(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use rubricmill_core::Provenance;

    use super::*;

    fn reference(kept: bool) -> OutputRow {
        OutputRow::Reference(ReferenceRow {
            id: "r".into(),
            source: "in.jsonl".into(),
            prompt: Vec::new(),
            reference_answer: None,
            example_tags: Vec::new(),
            domain: None,
            rubric: Vec::new(),
            dropped_criteria: Vec::new(),
            degraded_answer: None,
            degraded_origin: None,
            reference_score: None,
            degraded_score: None,
            reference_verdicts: Vec::new(),
            degraded_verdicts: Vec::new(),
            attempts: 1,
            kept,
            drop_reason: (!kept).then(|| "degraded answer scored as high".to_owned()),
            judge_model: String::new(),
            judge_prompt_hash: String::new(),
            provenance: Provenance::default(),
        })
    }

    fn nuggets() -> OutputRow {
        OutputRow::Nuggets(NuggetRow {
            id: "q".into(),
            source: "in.jsonl".into(),
            question: "why?".into(),
            passages: Vec::new(),
            nuggets: Vec::new(),
            dropped_nuggets: Vec::new(),
            judge_model: String::new(),
            judge_prompt_hash: String::new(),
            provenance: Provenance::default(),
        })
    }

    fn score() -> OutputRow {
        OutputRow::Score(ScoreRow {
            id: "s".into(),
            source: "in.jsonl".into(),
            rubric_layout: "plain".into(),
            prompt: Vec::new(),
            rubric: Vec::new(),
            responses: Vec::new(),
            label: None,
            predicted: None,
            agrees: None,
            judge_model: "judge".into(),
            judge_prompt_hash: "h".into(),
            provenance: Provenance::default(),
        })
    }

    #[test]
    fn rows_of_every_pipeline_are_kept_apart_and_dropped_reference_rows_count() {
        let mut rows = ShardRows::default();
        let dropped: u64 = [
            reference(true),
            reference(false),
            nuggets(),
            score(),
            score(),
        ]
        .into_iter()
        .map(|row| u64::from(rows.push(row)))
        .sum();
        assert_eq!(dropped, 1);
        assert_eq!(rows.reference.len(), 2);
        assert_eq!(rows.nuggets.len(), 1);
        assert_eq!(rows.score.len(), 2);
        assert_eq!(rows.len(), 5);
        let batch = nuggets_batch(&rows.nuggets).unwrap();
        assert_eq!(batch.num_rows(), 1);
        let batch = score_batch(&rows.score).unwrap();
        assert_eq!(batch.num_rows(), 2);
    }
}
