//! The work queue that carries shards from the coordinator to workers, and the events workers
//! send back. The [`WorkQueue`] trait has the semantics of a JetStream work queue (explicit
//! ack, delayed nak, term, delivery counting, publish de-duplicated by shard id), so the worker
//! code that runs in the embedded mode is the code the distributed mode runs. [`memory`] holds
//! the in-process implementation.

pub mod memory;

use std::time::Duration;

use rubricmill_core::ShardSpec;
use serde::{Deserialize, Serialize};

pub use memory::{InProcessEvents, InProcessQueue};

/// One unit of work: a shard of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardTask {
    pub job: String,
    pub shard: ShardSpec,
}

impl ShardEvent {
    /// The job the event is about.
    pub fn job(&self) -> &str {
        match self {
            ShardEvent::Started { job, .. }
            | ShardEvent::Committed { job, .. }
            | ShardEvent::AlreadyCommitted { job, .. }
            | ShardEvent::Retrying { job, .. }
            | ShardEvent::Failed { job, .. }
            | ShardEvent::BudgetExhausted { job, .. }
            | ShardEvent::Fatal { job, .. }
            | ShardEvent::Waiting { job, .. }
            | ShardEvent::HandedBack { job, .. } => job,
        }
    }

    /// The shard the event is about.
    pub fn shard(&self) -> &str {
        match self {
            ShardEvent::Started { shard, .. }
            | ShardEvent::Committed { shard, .. }
            | ShardEvent::AlreadyCommitted { shard, .. }
            | ShardEvent::Retrying { shard, .. }
            | ShardEvent::Failed { shard, .. }
            | ShardEvent::BudgetExhausted { shard, .. }
            | ShardEvent::Fatal { shard, .. }
            | ShardEvent::Waiting { shard, .. }
            | ShardEvent::HandedBack { shard, .. } => shard,
        }
    }
}

impl ShardTask {
    /// De-duplication key: the same shard of the same job is enqueued once.
    pub fn message_id(&self) -> String {
        format!("{}:{}", self.job, self.shard.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue closed")]
    Closed,
    #[error("queue backend: {0}")]
    Backend(String),
}

/// A message handed to one worker. Exactly one of ack, nak or term ends it.
#[async_trait::async_trait]
pub trait Delivery: Send + Sync {
    fn task(&self) -> &ShardTask;
    /// One-based count of deliveries of this message, this one included.
    fn attempt(&self) -> u32;
    /// Deliveries after which the message is given up.
    fn max_deliver(&self) -> u32;
    /// When the message was put in the queue, if the queue tells (a redelivered message keeps
    /// the time it was first queued).
    fn queued_at(&self) -> Option<std::time::SystemTime> {
        None
    }
    /// Done: remove the message.
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    /// Not done: deliver again after `delay`.
    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), QueueError>;
    /// Not done, and not failed either: the shard waits for something outside (a provider
    /// batch). Deliver again after `delay`, without counting this delivery as an attempt.
    async fn release(self: Box<Self>, delay: Duration) -> Result<(), QueueError>;
    /// Give up on the message for good.
    async fn term(self: Box<Self>) -> Result<(), QueueError>;
    /// Still working: extend the ack deadline.
    async fn progress(&self) -> Result<(), QueueError>;
}

#[async_trait::async_trait]
pub trait WorkQueue: Send + Sync {
    /// Enqueues a task unless a task with the same message id was enqueued before.
    async fn publish(&self, task: ShardTask) -> Result<(), QueueError>;
    /// Waits for up to `max` deliveries; `Ok(None)` once the queue is closed and drained.
    async fn pull(&self, max: usize) -> Result<Option<Vec<Box<dyn Delivery>>>, QueueError>;
    /// Stops handing out deliveries: a pull in progress ends with `Ok(None)`, and anything
    /// that reaches it meanwhile goes back to the queue.
    fn close(&self);
}

/// What a worker reports about a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ShardEvent {
    Started {
        job: String,
        shard: String,
        worker: String,
        attempt: u32,
        /// Milliseconds from the shard's message being queued to this delivery, when the queue
        /// tells. Absent from older workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued_ms: Option<u64>,
    },
    /// Rows and rejects committed by this worker.
    Committed {
        job: String,
        shard: String,
        worker: String,
        records: u64,
        rows: u64,
        rejects: u64,
        usage: Box<rubricmill_core::Usage>,
        /// The marker this worker wrote, less its per-stage counts: whoever follows the
        /// events knows the commit without reading the marker. Absent from older workers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<Box<rubricmill_core::MarkerSummary>>,
        /// Of `rows`, those with `kept = false` (crg rubrics the consistency filter dropped,
        /// reference rubrics the self-check dropped); 0 for pipelines without that column and
        /// from older workers.
        #[serde(default)]
        dropped_rows: u64,
    },
    /// The shard was committed before (earlier run, or another worker won the race).
    AlreadyCommitted { job: String, shard: String },
    /// This attempt failed and the shard will be delivered again.
    Retrying {
        job: String,
        shard: String,
        attempt: u32,
        reason: String,
    },
    /// The shard is given up after its last delivery.
    Failed {
        job: String,
        shard: String,
        reason: String,
    },
    /// The job's LLM budget is spent: the shard was handed back uncommitted.
    BudgetExhausted {
        job: String,
        shard: String,
        reason: String,
    },
    /// The job cannot go on (bad key, unknown model, …); the shard was handed back.
    Fatal {
        job: String,
        shard: String,
        reason: String,
    },
    /// Batch mode: the shard's calls are with the provider in `batches` open batches of
    /// `items` calls in all; the shard was released until they are answered. `collected` is
    /// what its collected batches cost so far (its batch record holds that until the shard
    /// commits).
    Waiting {
        job: String,
        shard: String,
        worker: String,
        batches: u32,
        items: u64,
        #[serde(default)]
        collected: Box<rubricmill_core::Usage>,
    },
    /// The worker stopped before the shard finished and handed it back uncommitted.
    HandedBack {
        job: String,
        shard: String,
        worker: String,
    },
}

/// Where workers send their events.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    async fn send(&self, event: ShardEvent);
}
