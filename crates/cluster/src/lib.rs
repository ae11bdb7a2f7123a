//! rubricmill's distributed mode on NATS JetStream. One stream carries the shards of every job
//! (one subject per shard, at most one message per subject, work-queue retention), one durable
//! pull consumer serves the whole worker fleet, and four KV buckets hold what the cluster shares:
//! job specs and their state, the coordinator's progress view, failed shards, and worker
//! heartbeats. Core-NATS subjects carry worker events to the coordinator and rate-limit pauses
//! between workers. The commit markers in the object store stay the truth; everything here is a
//! fast view that the coordinator can rebuild from them.

mod broadcast;
mod connect;
mod error;
mod membership;
mod names;
mod permissions;
mod queue;
mod state;

pub use broadcast::{RateLimitNotice, publish_pause, subscribe_pauses};
pub use connect::{NatsOptions, connect};
pub use error::ClusterError;
pub use membership::{Membership, WorkerBeat};
pub use names::Names;
pub use permissions::{Permissions, Role, permissions, server_authorization};
pub use queue::{NatsDelivery, NatsWorkQueue, PublishOutcome};
pub use state::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, QueueSettings, QueueStats, RunningOn,
    RunningShard,
};
