//! Worker membership: every worker puts a heartbeat into a KV bucket whose entries expire after
//! the heartbeat TTL, and follows the bucket to know how many workers are alive. The count sets
//! each worker's share of a job's rate limits, so it is kept current both ways: a watch sees
//! joins, heartbeats and clean leaves at once, and a worker whose last heartbeat the watch saw
//! more than a TTL ago (it died silently; an expired entry sends no event) is dropped. The
//! bucket is listed once, at join.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use rubricmill_core::DiscoveredLimits;

use crate::state::{RunningShard, put_json};
use crate::{Cluster, ClusterError};

/// What a worker says about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerBeat {
    pub id: String,
    pub host: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub beat_at: DateTime<Utc>,
    /// Shards it processes at once.
    pub capacity: u32,
    pub in_flight: Vec<RunningShard>,
    /// Stopped pulling; finishing what it has.
    #[serde(default)]
    pub draining: bool,
    /// Rate limits the providers announced to this worker's gateways: job → endpoint key →
    /// limits. Absent in beats of older workers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_limits: BTreeMap<String, BTreeMap<String, DiscoveredLimits>>,
}

impl WorkerBeat {
    /// Whether the beat is younger than `ttl` at `now` (by the clocks of the worker and the
    /// reader). An entry outlives its worker by up to the bucket's TTL, and a stale one can be
    /// read in between: only a live beat says what runs.
    pub fn is_live(&self, ttl: Duration, now: DateTime<Utc>) -> bool {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        now - self.beat_at < ttl
    }
}

/// This worker's view of the fleet.
pub struct Membership {
    cluster: Cluster,
    id: String,
    live: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Announces the worker with its first heartbeat and starts following the fleet. Returns
    /// once the current members are known.
    pub async fn join(cluster: &Cluster, first: &WorkerBeat) -> Result<Self, ClusterError> {
        // The watch starts before the listing: a worker that joins in between is in one or
        // the other.
        let watch = cluster
            .workers
            .watch_all()
            .await
            .map_err(|e| ClusterError::js("watching worker heartbeats", e))?;
        // Right after a cluster forms, the bucket's stream may not yet be known to the server
        // this client talks to ("no stream found"): try the first heartbeat a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match put_json(&cluster.workers, &first.id, first).await {
                Ok(()) => break,
                Err(error) if attempt < 5 => {
                    tracing::warn!(attempt, error = %error, "cannot write the first heartbeat yet, retrying");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
        let mut seen: HashMap<String, Instant> = HashMap::new();
        for beat in cluster.workers().await? {
            seen.insert(beat.id, Instant::now());
        }
        seen.insert(first.id.clone(), Instant::now());
        let (sender, live) = watch::channel(seen.len());
        let task = tokio::spawn(follow(cluster.clone(), watch, seen, sender));
        Ok(Self {
            cluster: cluster.clone(),
            id: first.id.clone(),
            live,
            task,
        })
    }

    /// Workers alive now, this one included; changes as workers join and leave.
    pub fn live_workers(&self) -> watch::Receiver<usize> {
        self.live.clone()
    }

    pub async fn beat(&self, beat: &WorkerBeat) -> Result<(), ClusterError> {
        put_json(&self.cluster.workers, &self.id, beat).await
    }

    /// Leaves the fleet at once (the others see it in their watch).
    pub async fn leave(self) -> Result<(), ClusterError> {
        self.task.abort();
        self.cluster
            .workers
            .purge(&self.id)
            .await
            .map_err(|e| ClusterError::js("leaving the fleet", e))
    }
}

/// Keeps the live count: watch events move it at once; every third of the TTL, members the
/// watch has not seen beat for a TTL are dropped.
async fn follow(
    cluster: Cluster,
    watch: kv::Watch,
    mut seen: HashMap<String, Instant>,
    live: watch::Sender<usize>,
) {
    let ttl = cluster.settings.heartbeat_ttl;
    let mut refresh = tokio::time::interval((ttl / 3).max(Duration::from_millis(200)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = Some(watch);
    loop {
        // After a lost watch, members are kept until their TTL: their next heartbeats reach
        // the new watch well before.
        let mut watch = match next.take() {
            Some(watch) => watch,
            None => match cluster.workers.watch_all().await {
                Ok(watch) => watch,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot watch worker heartbeats, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        loop {
            tokio::select! {
                entry = watch.next() => {
                    let Some(Ok(entry)) = entry else { break };
                    match entry.operation {
                        kv::Operation::Put => seen.insert(entry.key, Instant::now()),
                        kv::Operation::Delete | kv::Operation::Purge => seen.remove(&entry.key),
                    };
                }
                _ = refresh.tick() => seen.retain(|_, at| at.elapsed() < ttl),
            }
            let count = seen.len().max(1);
            live.send_if_modified(|current| std::mem::replace(current, count) != count);
        }
        tracing::debug!("worker heartbeat watch ended, watching again");
    }
}
