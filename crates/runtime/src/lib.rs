//! rubricmill's wiring: the worker loop that turns shard deliveries into committed output, the
//! coordinator's planning, and the embedded runner that drives both in one process.

pub mod batch;
mod cache;
pub mod coordinator;
pub mod distributed;
pub mod embedded;
pub mod job;
pub mod policy;
pub mod spend;
pub mod worker;

pub use embedded::{
    EmbeddedOptions, LIVE_USAGE_EVERY, LiveUsage, NoProgress, ProgressObserver, RunSummary,
    StopReason, Tally, run_embedded,
};
pub use job::{ContextOptions, JobContext, preflight};
pub use policy::{PolicyError, PolicyFile, Refusal, WorkerPolicy};
pub use worker::{JobResolver, SingleJob, Worker, WorkerOptions};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] rubricmill_store::StoreError),
    #[error(transparent)]
    Queue(#[from] rubricmill_queue::QueueError),
    #[error(
        "output folder {folder} holds job {job:?} planned from a different spec (fingerprint {planned}, now {now}); \
         use a new job name, or remove the folder to start over"
    )]
    SpecChanged {
        job: String,
        folder: String,
        planned: String,
        now: String,
    },
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    /// The job is cancelled, halted or complete: its shards are dropped, not processed.
    #[error("job {job:?} is {state}")]
    JobInactive { job: String, state: String },
    #[error(transparent)]
    Cluster(#[from] rubricmill_cluster::ClusterError),
    #[error("{0}")]
    Config(String),
}
