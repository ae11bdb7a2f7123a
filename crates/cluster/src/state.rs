//! What the cluster shares through JetStream: the shard stream and its consumer, and the KV
//! buckets for jobs (spec and state; written by submit, cancel, retry and on a fatal error),
//! progress (the coordinator's view; written by the coordinator only), failed shards (written by
//! the worker that gives a shard up, before it terms the message) and worker heartbeats.
//! Every key has one kind of writer, so no update is lost to a race; the job state, which several
//! commands change, goes through compare-and-set.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use rubricmill_core::{JobManifest, JobSpec, Usage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::membership::WorkerBeat;
use crate::{ClusterError, Names};

/// Settings of the shard stream and the fleet's consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// How long a delivered shard may go without an ack or progress heartbeat before it is
    /// delivered again. Workers heartbeat every third of it.
    pub ack_wait: Duration,
    /// Deliveries of a shard before it is given up.
    pub max_deliver: u32,
    /// Shards in flight across the whole fleet.
    pub max_ack_pending: u32,
    /// JetStream replicas of the stream and buckets (1 for a single server, 3 in a cluster).
    pub replicas: usize,
    /// How long a worker heartbeat stays in the membership bucket.
    pub heartbeat_ttl: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(60),
            max_deliver: 4,
            max_ack_pending: 1024,
            replicas: 1,
            heartbeat_ttl: Duration::from_secs(15),
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Shards are queued or running.
    Running,
    /// Every shard is committed or failed for good.
    Complete,
    /// Stopped by `cancel`; `submit` resumes it.
    Cancelled,
    /// Stopped because it cannot go on (bad key, spent budget); `submit` after the fix resumes.
    Halted { reason: String },
}

impl JobState {
    pub fn label(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Complete => "complete",
            JobState::Cancelled => "cancelled",
            JobState::Halted { .. } => "halted",
        }
    }
}

/// A submitted job as the cluster knows it: its plan without the shard list (which stays in
/// `job.json` beside the output; deliveries carry their shard) and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub name: String,
    pub plan: JobManifest,
    pub shards_planned: u64,
    pub submitted_at: DateTime<Utc>,
    /// Bumped by every submit and retry; part of the message ids they publish, so a shard
    /// published again after it failed is not taken for a duplicate.
    pub generation: u64,
    #[serde(flatten)]
    pub state: JobState,
}

impl JobRecord {
    /// The record of a planned job, in `state`.
    pub fn new(manifest: &JobManifest, generation: u64, state: JobState) -> Self {
        Self {
            name: manifest.name.clone(),
            plan: manifest.without_inline_shards(),
            shards_planned: manifest.shard_count,
            submitted_at: Utc::now(),
            generation,
            state,
        }
    }

    pub fn spec(&self) -> &JobSpec {
        &self.plan.spec
    }
}

/// The coordinator's view of a job, rebuilt from the commit markers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub planned: u64,
    pub committed: u64,
    pub failed: u64,
    pub records: u64,
    pub rows: u64,
    pub rejects: u64,
    /// Usage of the committed attempts, from their markers.
    pub usage: Usage,
    /// Paid by attempts that did not commit (killed, failed, handed back, beaten to the
    /// marker) or have not yet, from their spend files.
    #[serde(default)]
    pub uncommitted: Usage,
    /// Attempts behind `uncommitted`.
    #[serde(default)]
    pub uncommitted_attempts: u64,
    /// Requests on the wire when their attempt ended, at their estimated cost: not in
    /// `uncommitted` (a provider may or may not bill a request whose client went away), but
    /// counted by budgets.
    #[serde(default)]
    pub cut_off: Usage,
    /// Cost by worker, committed and not, cut-off requests included: each worker counts the
    /// rest against the budget.
    #[serde(default)]
    pub cost_by_worker: std::collections::BTreeMap<String, f64>,
    /// Shards in flight on workers whose heartbeat is younger than the heartbeat TTL, less
    /// those committed or failed, at `updated_at`: one snapshot with `committed` and `failed`,
    /// so no shard is in two of them. As long as the fleet's cap on shards in flight.
    #[serde(default)]
    pub running: Vec<RunningOn>,
    /// Batch mode: provider batches the job's waiting shards have open, and their items, as
    /// the shards last reported (each waiting shard reports again at every look).
    #[serde(default)]
    pub batches_pending: u64,
    #[serde(default)]
    pub batch_items_pending: u64,
    /// Score jobs: the committed `agreement` stage, labelled records in and records whose
    /// scores prefer the labelled response out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<rubricmill_core::StageCounts>,
    /// Input records committed per second over the last minute.
    pub records_per_s: f64,
    /// Seconds until every shard is done at the current rate.
    pub eta_s: Option<f64>,
    pub updated_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl JobProgress {
    /// What the provider billed the job: committed and uncommitted attempts together.
    pub fn spent_usd(&self) -> f64 {
        self.usage.cost_usd + self.uncommitted.cost_usd
    }

    /// What counts against the budget: [`JobProgress::spent_usd`] and the cut-off requests.
    pub fn budgeted_usd(&self) -> f64 {
        self.spent_usd() + self.cut_off.cost_usd
    }

    /// Calls, tokens and cost the provider served the job, committed or not.
    pub fn paid(&self) -> Usage {
        let mut total = self.usage;
        total.add(&self.uncommitted);
        total
    }
}

/// A shard given up after its last delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedShard {
    pub job: String,
    pub shard: String,
    pub reason: String,
    pub attempts: u32,
    pub worker: Option<String>,
    pub at: DateTime<Utc>,
}

/// A shard a worker is processing now (reported in its heartbeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningShard {
    pub job: String,
    pub shard: String,
    pub attempt: u32,
    pub since: DateTime<Utc>,
}

/// A shard running on a live worker, as the coordinator last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningOn {
    pub shard: String,
    pub worker: String,
    pub attempt: u32,
    pub since: DateTime<Utc>,
}

/// Counters of the fleet's consumer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Shards waiting to be delivered.
    pub pending: u64,
    /// Shards delivered and not yet acked (running, or waiting out a retry delay).
    pub ack_pending: u64,
    pub redelivered: u64,
    /// Pull requests waiting for shards (idle worker capacity).
    pub waiting: u64,
}

/// A connection to the cluster's JetStream state.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) names: Names,
    pub(crate) stream: stream::Stream,
    jobs: kv::Store,
    progress: kv::Store,
    shards: kv::Store,
    pub(crate) workers: kv::Store,
    pub(crate) settings: QueueSettings,
}

impl Cluster {
    /// Connects to NATS with `options` and opens the cluster state on that connection
    /// ([`crate::connect`], then [`Cluster::open`]).
    pub async fn connect(
        options: &crate::NatsOptions,
        names: Names,
        settings: QueueSettings,
        configure: bool,
    ) -> Result<Self, ClusterError> {
        let client = crate::connect(options).await?;
        Self::open(client, names, settings, configure).await
    }

    /// Opens the cluster state, creating the stream, consumer and buckets when missing. With
    /// `configure`, the stream and consumer are also brought to `settings` (submit and the
    /// coordinator do this); without, existing settings are kept (workers).
    pub async fn open(
        client: async_nats::Client,
        names: Names,
        settings: QueueSettings,
        configure: bool,
    ) -> Result<Self, ClusterError> {
        // Creating replicated assets right after a cluster forms (or while a peer is down)
        // can outlast one request: try a few times before giving up.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_open(client.clone(), names.clone(), settings.clone(), configure).await {
                Ok(cluster) => return Ok(cluster),
                // A worker's user may read the cluster state but not create it: a worker that
                // starts first waits for submit or the coordinator to create it.
                Err(_)
                    if !configure
                        && crate::connect::last_denial()
                            .is_some_and(|denial| denial.contains("$JS.API.STREAM.CREATE.")) =>
                {
                    tracing::info!(
                        stream = %names.stream(),
                        "waiting for the cluster state: this user may not create it (submit or the coordinator does)"
                    );
                    wait_for_state(&client, &names).await;
                }
                // A denied permission stays denied: no retry mends it.
                Err(error) if attempt < 5 && crate::connect::last_denial().is_none() => {
                    tracing::warn!(attempt, error = %error, "cannot open the cluster state yet, retrying");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn try_open(
        client: async_nats::Client,
        names: Names,
        settings: QueueSettings,
        configure: bool,
    ) -> Result<Self, ClusterError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(15))
            .build(client.clone());
        let stream_config = stream::Config {
            name: names.stream(),
            subjects: vec![names.shard_subjects()],
            retention: stream::RetentionPolicy::WorkQueue,
            // One message per shard subject: publishing a shard that is still queued or
            // running is refused by the server, whatever its message id.
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            discard_new_per_subject: true,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        if configure {
            js.create_or_update_stream(stream_config.clone())
                .await
                .map_err(|e| ClusterError::js(format!("creating stream {}", names.stream()), e))?;
        }
        let stream = js
            .get_or_create_stream(stream_config)
            .await
            .map_err(|e| ClusterError::js(format!("opening stream {}", names.stream()), e))?;
        let consumer_config = consumer::pull::Config {
            durable_name: Some(names.consumer()),
            description: Some("rubricmill worker fleet".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: i64::from(settings.max_deliver),
            max_ack_pending: i64::from(settings.max_ack_pending),
            filter_subject: names.shard_subjects(),
            ..Default::default()
        };
        // Without `configure`, the consumer the server has wins: its settings become ours.
        let mut settings = settings;
        let existing = stream.consumer_info(names.consumer()).await.ok();
        let configured = if let Some(info) = existing.as_ref().filter(|_| !configure) {
            settings.ack_wait = info.config.ack_wait;
            settings.max_deliver = u32::try_from(info.config.max_deliver).unwrap_or(u32::MAX);
            settings.max_ack_pending =
                u32::try_from(info.config.max_ack_pending).unwrap_or(u32::MAX);
            Ok(())
        } else if existing.is_some() {
            stream
                .update_consumer(consumer_config)
                .await
                .map(|_: consumer::PullConsumer| ())
                .map_err(|e| e.to_string())
        } else {
            stream
                .create_consumer(consumer_config)
                .await
                .map(|_: consumer::PullConsumer| ())
                .map_err(|e| e.to_string())
        };
        configured.map_err(|e| {
            ClusterError::js(format!("configuring consumer {}", names.consumer()), e)
        })?;
        let bucket = |name: String, max_age: Duration, history: i64| kv::Config {
            bucket: name,
            history,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        };
        let jobs = open_bucket(&js, bucket(names.jobs_bucket(), Duration::ZERO, 5)).await?;
        let progress = open_bucket(&js, bucket(names.progress_bucket(), Duration::ZERO, 1)).await?;
        let shards = open_bucket(&js, bucket(names.shards_bucket(), Duration::ZERO, 1)).await?;
        let workers = open_bucket(
            &js,
            bucket(names.workers_bucket(), settings.heartbeat_ttl, 1),
        )
        .await?;
        // The bucket's TTL is what counts (whoever created it set it): beat by it.
        if let Ok(status) = workers.status().await
            && !status.max_age().is_zero()
        {
            settings.heartbeat_ttl = status.max_age();
        }
        Ok(Self {
            client,
            js,
            names,
            stream,
            jobs,
            progress,
            shards,
            workers,
            settings,
        })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Sends whatever the client still buffers (events, acks); call before exiting.
    pub async fn flush(&self) {
        if let Err(error) = self.client.flush().await {
            tracing::warn!(error = %error, "cannot flush the nats connection");
        }
    }

    /// Whether the client is connected now (it reconnects by itself when not).
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The settings in force. Opened without `configure` (a worker), the consumer's and the
    /// heartbeat bucket's are the server's, whatever this process was given.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub async fn queue_stats(&self) -> Result<QueueStats, ClusterError> {
        let info = self
            .stream
            .consumer_info(self.names.consumer())
            .await
            .map_err(|e| ClusterError::js("reading consumer info", e))?;
        Ok(QueueStats {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            redelivered: info.num_redelivered as u64,
            waiting: info.num_waiting as u64,
        })
    }

    // --- jobs ---------------------------------------------------------------------------

    pub async fn put_job(&self, record: &JobRecord) -> Result<(), ClusterError> {
        put_json(&self.jobs, &self.names.job_key(&record.name), record).await
    }

    pub async fn job(&self, name: &str) -> Result<Option<JobRecord>, ClusterError> {
        Ok(self.job_entry(name).await?.map(|(record, _)| record))
    }

    async fn job_entry(&self, name: &str) -> Result<Option<(JobRecord, u64)>, ClusterError> {
        let key = self.names.job_key(name);
        let entry = self
            .jobs
            .entry(key.clone())
            .await
            .map_err(|e| ClusterError::js(format!("reading job {name}"), e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let record = decode(&format!("job {name}"), &entry.value)?;
        Ok(Some((record, entry.revision)))
    }

    /// Changes a job's record with compare-and-set, retrying when another writer got there
    /// first; `change` returns `None` to leave the record as it is.
    pub async fn update_job(
        &self,
        name: &str,
        mut change: impl FnMut(&JobRecord) -> Option<JobRecord>,
    ) -> Result<Option<JobRecord>, ClusterError> {
        loop {
            let Some((record, revision)) = self.job_entry(name).await? else {
                return Err(ClusterError::UnknownJob(name.to_owned()));
            };
            let Some(updated) = change(&record) else {
                return Ok(None);
            };
            let value = encode(&updated);
            match self
                .jobs
                .update(self.names.job_key(name), value, revision)
                .await
            {
                Ok(_) => return Ok(Some(updated)),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => return Err(ClusterError::js(format!("updating job {name}"), error)),
            }
        }
    }

    /// Every job the cluster knows, by name.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>, ClusterError> {
        let mut jobs: Vec<JobRecord> = load_all(&self.jobs, "jobs").await?;
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(jobs)
    }

    // --- progress -----------------------------------------------------------------------

    pub async fn put_progress(
        &self,
        job: &str,
        progress: &JobProgress,
    ) -> Result<(), ClusterError> {
        put_json(&self.progress, &self.names.job_key(job), progress).await
    }

    pub async fn progress(&self, job: &str) -> Result<Option<JobProgress>, ClusterError> {
        get_json(&self.progress, &self.names.job_key(job), "progress").await
    }

    // --- failed shards ------------------------------------------------------------------

    /// Records a shard as failed for good. Durable once this returns: the KV put is
    /// acknowledged by JetStream.
    pub async fn record_failure(&self, failed: &FailedShard) -> Result<(), ClusterError> {
        put_json(
            &self.shards,
            &self.names.shard_key(&failed.job, &failed.shard),
            failed,
        )
        .await
    }

    pub async fn failures(&self, job: &str) -> Result<Vec<FailedShard>, ClusterError> {
        let filter = self.names.job_shard_keys(job);
        let mut failed: Vec<FailedShard> =
            load_matching(&self.shards, "failed shards", &filter).await?;
        failed.sort_by(|a, b| a.shard.cmp(&b.shard));
        Ok(failed)
    }

    pub async fn clear_failure(&self, job: &str, shard: &str) -> Result<(), ClusterError> {
        self.shards
            .purge(self.names.shard_key(job, shard))
            .await
            .map_err(|e| ClusterError::js(format!("clearing failed shard {shard}"), e))
    }

    // --- workers ------------------------------------------------------------------------

    /// Heartbeats of the workers alive now (entries expire after the heartbeat TTL).
    pub async fn workers(&self) -> Result<Vec<WorkerBeat>, ClusterError> {
        let mut beats: Vec<WorkerBeat> = load_all(&self.workers, "worker heartbeats").await?;
        beats.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(beats)
    }

    // --- the shard stream ---------------------------------------------------------------

    /// Removes every queued message of a job (cancel, halt).
    pub async fn purge_job(&self, job: &str) -> Result<u64, ClusterError> {
        let response = self
            .stream
            .purge()
            .filter(self.names.job_shard_subjects(job))
            .await
            .map_err(|e| ClusterError::js(format!("purging job {job}"), e))?;
        Ok(response.purged)
    }

    /// The stream sequence of a shard's message, if one is in the stream.
    pub async fn queued_sequence(
        &self,
        job: &str,
        shard: &str,
    ) -> Result<Option<u64>, ClusterError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&self.names.shard_subject(job, shard))
            .await
        {
            Ok(message) => Ok(Some(message.sequence)),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(ClusterError::js(format!("looking up shard {shard}"), error)),
        }
    }

    /// Job and shard of the message at a stream sequence, if it is still there.
    pub async fn message_at(
        &self,
        sequence: u64,
    ) -> Result<Option<(String, String)>, ClusterError> {
        match self.stream.get_raw_message(sequence).await {
            Ok(message) => Ok(self.names.parse_shard_subject(message.subject.as_str())),
            Err(error) if error.kind() == stream::RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(error) => Err(ClusterError::js(
                format!("reading message {sequence}"),
                error,
            )),
        }
    }

    pub async fn delete_message(&self, sequence: u64) -> Result<(), ClusterError> {
        self.stream
            .delete_message(sequence)
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::js(format!("deleting message {sequence}"), e))
    }
}

/// Polls until the shard stream and every bucket exist (each poll is one info request).
async fn wait_for_state(client: &async_nats::Client, names: &Names) {
    let js = jetstream::new(client.clone());
    loop {
        let mut missing = js.get_stream(names.stream()).await.is_err();
        for bucket in names.buckets() {
            missing |= js.get_key_value(&bucket).await.is_err();
        }
        if !missing {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, ClusterError> {
    let name = config.bucket.clone();
    if let Ok(store) = js.get_key_value(&name).await {
        return Ok(store);
    }
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another process created it between our get and create.
        Err(_) => js
            .get_key_value(&name)
            .await
            .map_err(|e| ClusterError::js(format!("opening bucket {name}"), e)),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("state types serialize"))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(bytes).map_err(|e| ClusterError::decode(what, e))
}

pub(crate) async fn put_json<T: Serialize>(
    store: &kv::Store,
    key: &str,
    value: &T,
) -> Result<(), ClusterError> {
    store
        .put(key, encode(value))
        .await
        .map(|_| ())
        .map_err(|e| ClusterError::js(format!("writing {key}"), e))
}

async fn get_json<T: DeserializeOwned>(
    store: &kv::Store,
    key: &str,
    what: &str,
) -> Result<Option<T>, ClusterError> {
    let value = store
        .get(key)
        .await
        .map_err(|e| ClusterError::js(format!("reading {what} {key}"), e))?;
    value.map(|bytes| decode(what, &bytes)).transpose()
}

async fn load_all<T: DeserializeOwned>(
    store: &kv::Store,
    what: &str,
) -> Result<Vec<T>, ClusterError> {
    load_matching(store, what, ">").await
}

/// Values of every live key matching `key_filter` (a subject pattern over keys: `>` for all). Entries that vanish between listing and
/// reading (expired heartbeats) are skipped.
///
/// Keys come from one stream-info request listing the bucket's subjects. `Store::keys()`
/// cannot serve here: it replays the bucket through a consumer and finishes only when the
/// bucket falls idle, which a bucket of heartbeats never does while workers run.
async fn load_matching<T: DeserializeOwned>(
    store: &kv::Store,
    what: &str,
    key_filter: &str,
) -> Result<Vec<T>, ClusterError> {
    let subjects: Vec<(String, usize)> = store
        .stream
        .info_with_subjects(format!("{}{key_filter}", store.prefix))
        .await
        .map_err(|e| ClusterError::js(format!("listing {what}"), e))?
        .try_collect()
        .await
        .map_err(|e| ClusterError::js(format!("listing {what}"), e))?;
    let mut keys: Vec<String> = subjects
        .into_iter()
        .filter_map(|(subject, _)| subject.strip_prefix(&store.prefix).map(str::to_owned))
        .collect();
    keys.sort();
    let mut values = Vec::new();
    for key in keys {
        // Deleted and purged keys keep a marker subject; `get` skips them.
        if let Some(value) = get_json(store, &key, what).await? {
            values.push(value);
        }
    }
    Ok(values)
}
