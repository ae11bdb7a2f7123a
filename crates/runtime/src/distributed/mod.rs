//! The distributed mode: stateless workers and a coordinator around the JetStream state of
//! `rubricmill-cluster`, and the commands that submit, cancel, retry and inspect jobs. The
//! worker loop is the embedded mode's [`crate::Worker`]; only the queue, the job resolver and
//! the event sink differ.

mod admin;
mod coordinator;
mod metrics;
mod tracker;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use rubricmill_telemetry::Health;

pub use admin::{
    JobStatus, RunningOn, SubmitSummary, cancel, job_status, jobs_status, retry, submit,
};
pub use coordinator::{CoordinatorOptions, run_coordinator};
pub use metrics::{CoordinatorMetrics, WorkerMetrics};
pub use worker::{ClusterWorkerOptions, run_worker};

/// This machine's host name (the pod name on Kubernetes), or empty when unknown.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Keeps readiness in step with the NATS connection (and with draining) until the returned
/// task is aborted.
fn follow_connection(
    cluster: rubricmill_cluster::Cluster,
    health: Arc<Health>,
    draining: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if draining.load(std::sync::atomic::Ordering::SeqCst) {
                health.set_not_ready("draining");
                continue;
            }
            if cluster.is_connected() {
                health.set_ready();
            } else {
                health.set_not_ready("not connected to nats");
            }
        }
    })
}
