//! The commands that change or read jobs in the cluster: submit (plan, store the spec, queue
//! the uncommitted shards), cancel, retry (queue the failed shards again) and status.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures::StreamExt;
pub use rubricmill_cluster::RunningOn;
use rubricmill_cluster::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, NatsWorkQueue, PublishOutcome,
    QueueStats,
};
use rubricmill_core::JobSpec;
use rubricmill_queue::ShardTask;
use rubricmill_store::JobStore;
use serde::Serialize;

use crate::RuntimeError;
use crate::coordinator::plan_or_resume;

/// What `submit` did.
#[derive(Debug, Clone, Serialize)]
pub struct SubmitSummary {
    pub job: String,
    pub output_url: String,
    pub resumed: bool,
    pub planned: u64,
    pub committed_before: u64,
    /// Shards published now.
    pub queued: u64,
    /// Shards that were still queued or running from an earlier submit.
    pub already_queued: u64,
    pub generation: u64,
}

/// Plans the job (or loads its plan), stores its spec in the cluster and queues every shard
/// that has no commit marker. Submitting again resumes: committed shards are skipped, failed
/// ones are queued again, queued ones are left alone.
pub async fn submit(cluster: &Cluster, spec: &JobSpec) -> Result<SubmitSummary, RuntimeError> {
    let (manifest, resumed) = plan_or_resume(spec).await?;
    let store = JobStore::open(&manifest.spec.output.url, &manifest.name)?;
    let committed: HashSet<String> = store
        .committed_shards()
        .await?
        .into_iter()
        .map(|shard| shard.0)
        .collect();
    let previous = cluster.job(&manifest.name).await?;
    let generation = previous.as_ref().map_or(1, |r| r.generation + 1);
    let state = if committed.len() as u64 >= manifest.shard_count {
        JobState::Complete
    } else {
        JobState::Running
    };
    let record = JobRecord::new(&manifest, generation, state);
    // The record first: a worker that gets a shard must find its job.
    cluster.put_job(&record).await?;
    for failed in cluster.failures(&manifest.name).await? {
        if !committed.contains(failed.shard.as_str()) {
            cluster.clear_failure(&failed.job, &failed.shard).await?;
        }
    }
    let queue = NatsWorkQueue::open(cluster)
        .await?
        .with_generation(generation);
    // A chunk of the plan at a time: memory holds one chunk's tasks, not the plan.
    let (mut queued, mut already_queued, mut committed_before) = (0, 0, 0);
    let mut chunks = std::pin::pin!(store.planned_shards(&manifest));
    while let Some(chunk) = chunks.next().await {
        let shards = chunk?;
        let planned = shards.len() as u64;
        let tasks: Vec<ShardTask> = shards
            .into_iter()
            .filter(|shard| !committed.contains(shard.id.as_str()))
            .map(|shard| ShardTask {
                job: manifest.name.clone(),
                shard,
            })
            .collect();
        committed_before += planned - tasks.len() as u64;
        for outcome in queue.publish_all(tasks).await? {
            match outcome {
                PublishOutcome::Queued => queued += 1,
                _ => already_queued += 1,
            }
        }
    }
    let summary = SubmitSummary {
        job: manifest.name.clone(),
        output_url: store.url(),
        resumed,
        planned: manifest.shard_count,
        committed_before,
        queued,
        already_queued,
        generation,
    };
    tracing::info!(job = %summary.job, planned = summary.planned, committed = summary.committed_before, queued = summary.queued, already_queued = summary.already_queued, "job submitted");
    Ok(summary)
}

/// Stops a job: no new shard of it starts (shards finishing now still commit); `submit`
/// resumes it.
pub async fn cancel(cluster: &Cluster, job: &str) -> Result<u64, RuntimeError> {
    cluster
        .update_job(job, |record| {
            (record.state == JobState::Running).then(|| JobRecord {
                state: JobState::Cancelled,
                ..record.clone()
            })
        })
        .await?;
    let purged = cluster.purge_job(job).await?;
    tracing::info!(job = %job, purged, "job cancelled");
    Ok(purged)
}

/// Queues the failed shards of a job again (only those) and returns how many.
pub async fn retry(cluster: &Cluster, job: &str) -> Result<u64, RuntimeError> {
    let Some(record) = cluster.job(job).await? else {
        return Err(RuntimeError::UnknownJob(job.to_owned()));
    };
    let failed = cluster.failures(job).await?;
    if failed.is_empty() {
        return Ok(0);
    }
    let store = JobStore::open(&record.spec().output.url, job)?;
    let Some(manifest) = store.load_manifest().await? else {
        return Err(RuntimeError::Config(format!(
            "job {job:?} has no plan at {}; submit it again",
            store.url()
        )));
    };
    let updated = cluster
        .update_job(job, |record| {
            Some(JobRecord {
                generation: record.generation + 1,
                state: JobState::Running,
                ..record.clone()
            })
        })
        .await?
        .unwrap_or(record);
    let failed_ids: HashSet<&str> = failed.iter().map(|f| f.shard.as_str()).collect();
    let mut tasks: Vec<ShardTask> = Vec::with_capacity(failed.len());
    let mut chunks = std::pin::pin!(store.planned_shards(&manifest));
    while let Some(chunk) = chunks.next().await {
        tasks.extend(
            chunk?
                .into_iter()
                .filter(|shard| failed_ids.contains(shard.id.as_str()))
                .map(|shard| ShardTask {
                    job: job.to_owned(),
                    shard,
                }),
        );
    }
    let queue = NatsWorkQueue::open(cluster)
        .await?
        .with_generation(updated.generation);
    for failed in &failed {
        cluster.clear_failure(job, &failed.shard).await?;
    }
    let count = tasks.len() as u64;
    queue.publish_all(tasks).await?;
    tracing::info!(job = %job, shards = count, "failed shards queued again");
    Ok(count)
}

/// A job's status as `rubricmill status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub job: String,
    pub state: String,
    pub reason: Option<String>,
    pub submitted_at: DateTime<Utc>,
    pub planned: u64,
    pub pending: u64,
    pub running: Vec<RunningOn>,
    pub committed: u64,
    pub failed: Vec<FailedShard>,
    /// The coordinator's view (rows, usage, rate); `None` until a coordinator has seen the job.
    pub progress: Option<JobProgress>,
    pub queue: QueueStats,
    pub workers: u64,
    /// Endpoint key → the rate limits its provider announced, from the live workers'
    /// heartbeats (the newest beat's figures per endpoint).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub provider_limits: std::collections::BTreeMap<String, rubricmill_core::DiscoveredLimits>,
}

/// The status of one job.
pub async fn job_status(cluster: &Cluster, job: &str) -> Result<JobStatus, RuntimeError> {
    let Some(record) = cluster.job(job).await? else {
        return Err(RuntimeError::UnknownJob(job.to_owned()));
    };
    let workers = cluster.workers().await?;
    let queue = cluster.queue_stats().await?;
    status_of(cluster, record, &workers, queue).await
}

/// The status of every job the cluster knows.
pub async fn jobs_status(cluster: &Cluster) -> Result<Vec<JobStatus>, RuntimeError> {
    let workers = cluster.workers().await?;
    let queue = cluster.queue_stats().await?;
    let mut statuses = Vec::new();
    for record in cluster.jobs().await? {
        statuses.push(status_of(cluster, record, &workers, queue).await?);
    }
    Ok(statuses)
}

async fn status_of(
    cluster: &Cluster,
    record: JobRecord,
    workers: &[rubricmill_cluster::WorkerBeat],
    queue: QueueStats,
) -> Result<JobStatus, RuntimeError> {
    let progress = cluster.progress(&record.name).await?;
    let failed = cluster.failures(&record.name).await?;
    let running = running_now(cluster, &record.name, workers, progress.as_ref(), &failed);
    let committed = progress.as_ref().map_or(0, |p| p.committed);
    let pending = record
        .shards_planned
        .saturating_sub(committed + failed.len() as u64 + running.len() as u64);
    let reason = match &record.state {
        JobState::Halted { reason } => Some(reason.clone()),
        _ => None,
    };
    let provider_limits = announced_limits(cluster, &record.name, workers);
    Ok(JobStatus {
        job: record.name,
        state: record.state.label().to_owned(),
        reason,
        submitted_at: record.submitted_at,
        planned: record.shards_planned,
        pending,
        running,
        committed,
        failed,
        progress,
        queue,
        workers: live_workers(cluster, workers),
        provider_limits,
    })
}

/// The limits providers announced to the job's gateways, as the live workers last reported.
fn announced_limits(
    cluster: &Cluster,
    job: &str,
    workers: &[rubricmill_cluster::WorkerBeat],
) -> std::collections::BTreeMap<String, rubricmill_core::DiscoveredLimits> {
    let ttl = cluster.settings().heartbeat_ttl;
    let now = Utc::now();
    let mut live: Vec<&rubricmill_cluster::WorkerBeat> =
        workers.iter().filter(|b| b.is_live(ttl, now)).collect();
    live.sort_by_key(|beat| beat.beat_at);
    live.into_iter()
        .filter_map(|beat| beat.provider_limits.get(job))
        .flat_map(|limits| limits.clone())
        .collect()
}

/// Workers whose heartbeat is younger than the heartbeat TTL.
fn live_workers(cluster: &Cluster, workers: &[rubricmill_cluster::WorkerBeat]) -> u64 {
    let ttl = cluster.settings().heartbeat_ttl;
    let now = Utc::now();
    workers.iter().filter(|beat| beat.is_live(ttl, now)).count() as u64
}

/// The job's running shards: the coordinator's snapshot (taken with its committed count, so no
/// shard is both), less shards failed since and shards of workers no longer live. Before a
/// coordinator has seen the job, the live workers' heartbeats less the failed shards.
fn running_now(
    cluster: &Cluster,
    job: &str,
    workers: &[rubricmill_cluster::WorkerBeat],
    progress: Option<&JobProgress>,
    failed: &[FailedShard],
) -> Vec<RunningOn> {
    let ttl = cluster.settings().heartbeat_ttl;
    let now = Utc::now();
    let live: HashSet<&str> = workers
        .iter()
        .filter(|beat| beat.is_live(ttl, now))
        .map(|beat| beat.id.as_str())
        .collect();
    let failed: HashSet<&str> = failed.iter().map(|f| f.shard.as_str()).collect();
    let candidates: Vec<RunningOn> = match progress {
        Some(progress) => progress.running.clone(),
        None => workers
            .iter()
            .flat_map(|beat| {
                beat.in_flight
                    .iter()
                    .filter(|shard| shard.job == job)
                    .map(|shard| RunningOn {
                        shard: shard.shard.clone(),
                        worker: beat.id.clone(),
                        attempt: shard.attempt,
                        since: shard.since,
                    })
            })
            .collect(),
    };
    candidates
        .into_iter()
        .filter(|r| live.contains(r.worker.as_str()) && !failed.contains(r.shard.as_str()))
        .collect()
}
