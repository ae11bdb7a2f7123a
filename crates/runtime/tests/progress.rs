//! Progress at a cost that grows with changes: the coordinator counts commits from worker
//! events and its rare full listings, rebuilds its view from the progress log after a restart,
//! resume reads only the markers the log does not summarise, and `status` counts a shard
//! running only on a live worker and only while it is neither committed nor failed. Over a real
//! nats-server; storage requests are counted by the store's own counter.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rubricmill_cluster::{
    Cluster, FailedShard, JobProgress, JobRecord, JobState, Membership, Names, NatsOptions,
    QueueSettings, RunningShard, WorkerBeat, connect,
};
use rubricmill_core::{JobManifest, JobSpec, ShardId, Usage};
use rubricmill_queue::ShardEvent;
use rubricmill_runtime::coordinator::{pending_shards, plan_or_resume};
use rubricmill_runtime::distributed::{self, CoordinatorOptions};
use rubricmill_store::{CommitMarker, CommitOutcome, JobStore};
use rubricmill_telemetry::{Health, Registry};
use rubricmill_testkit::NatsServer;
use tokio::sync::oneshot;

/// Plans a job of `shards` shards of one record each in `dir`.
async fn plan_job(dir: &std::path::Path, name: &str, shards: usize) -> (JobSpec, JobManifest) {
    let input = dir.join(format!("{name}.jsonl"));
    let lines: String = (0..shards)
        .map(|i| {
            format!(
                "{{\"id\":\"p{i}\",\"prompt\":\"How do I store flour {i}?\",\"chosen\":\"Airtight.\",\"rejected\":\"Open.\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let spec_path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &spec_path,
        format!(
            "name = \"{name}\"\npipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 1\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"sim\"\n",
            input.display(),
            dir.join("out").display()
        ),
    )
    .unwrap();
    let spec = JobSpec::load(&spec_path).unwrap();
    let (manifest, _) = plan_or_resume(&spec).await.unwrap();
    assert_eq!(manifest.shards.len(), shards);
    (manifest.spec.clone(), manifest)
}

/// Writes the marker of shard `index` as a worker would (figures derived from the index).
async fn commit(store: &JobStore, manifest: &JobManifest, index: usize) -> CommitMarker {
    let marker = CommitMarker {
        shard_id: manifest.shards[index].id.clone(),
        attempt_id: format!("attempt-{index}"),
        worker_id: format!("worker-{}", index % 2),
        committed_at: Utc::now(),
        part: None,
        rejects_part: None,
        rows: 3 + index as u64,
        rejects: (index % 3) as u64,
        bytes: 0,
        checksum: None,
        records: 1,
        stages: Default::default(),
        usage: Usage {
            calls: 2 + index as u64,
            cost_usd: 0.5,
            ..Usage::default()
        },
    };
    assert_eq!(store.commit(&marker).await.unwrap(), CommitOutcome::Won);
    marker
}

/// The commit event a worker sends after `marker` won.
fn committed_event(job: &str, marker: &CommitMarker) -> ShardEvent {
    ShardEvent::Committed {
        job: job.to_owned(),
        shard: marker.shard_id.to_string(),
        worker: marker.worker_id.clone(),
        records: marker.records,
        rows: marker.rows,
        rejects: marker.rejects,
        usage: Box::new(marker.usage),
        summary: Some(Box::new(marker.summary())),
    }
}

async fn publish(cluster: &Cluster, event: &ShardEvent) {
    let subject = cluster.names().events(event.job());
    cluster
        .client()
        .publish(subject, serde_json::to_vec(event).unwrap().into())
        .await
        .unwrap();
    cluster.client().flush().await.unwrap();
}

async fn open_cluster(server: &NatsServer) -> Cluster {
    let client = connect(&NatsOptions::for_servers(&server.url()))
        .await
        .unwrap();
    Cluster::open(client, Names::default(), QueueSettings::default(), true)
        .await
        .unwrap()
}

/// A coordinator running in this process (on its own thread and runtime, with its own
/// connection) until stopped.
struct RunningCoordinator {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    registry: Arc<Registry>,
}

impl RunningCoordinator {
    fn start(server: &NatsServer, options: CoordinatorOptions) -> Self {
        let registry = Registry::new("rubricmill");
        let (stop, stopped) = oneshot::channel::<()>();
        let url = server.url();
        let thread = std::thread::spawn({
            let registry = registry.clone();
            move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let client = connect(&NatsOptions::for_servers(&url)).await.unwrap();
                    let cluster =
                        Cluster::open(client, Names::default(), QueueSettings::default(), true)
                            .await
                            .unwrap();
                    distributed::run_coordinator(
                        cluster,
                        options,
                        registry,
                        Health::new(),
                        async {
                            let _ = stopped.await;
                        },
                    )
                    .await
                    .unwrap();
                });
            }
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
            registry,
        }
    }

    /// The value of a metric line `name{labels}` or `name` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        self.registry
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Storage requests of every kind so far.
    fn storage_requests(&self) -> f64 {
        ["get", "head", "put", "list", "delete", "copy"]
            .iter()
            .map(|op| self.metric(&format!("rubricmill_storage_requests_total{{op=\"{op}\"}}")))
            .sum()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
    }
}

fn options() -> CoordinatorOptions {
    CoordinatorOptions {
        reconcile_every: Duration::from_millis(200),
        sweep_after_idle_rounds: 2,
        full_reconcile_every: Duration::from_secs(600),
    }
}

/// Polls the job's progress record until `done` holds.
async fn wait_progress(
    cluster: &Cluster,
    job: &str,
    done: impl Fn(&JobProgress) -> bool,
) -> JobProgress {
    for _ in 0..150 {
        if let Some(progress) = cluster.progress(job).await.unwrap()
            && done(&progress)
        {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "progress of {job} never got there: {:?}",
        cluster.progress(job).await.unwrap()
    );
}

fn beat(id: &str, job: &str, shards: &[&ShardId], beat_at: chrono::DateTime<Utc>) -> WorkerBeat {
    WorkerBeat {
        id: id.to_owned(),
        host: "test".into(),
        version: "test".into(),
        started_at: beat_at,
        beat_at,
        capacity: 4,
        in_flight: shards
            .iter()
            .map(|shard| RunningShard {
                job: job.to_owned(),
                shard: shard.to_string(),
                attempt: 1,
                since: beat_at,
            })
            .collect(),
        draining: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_a_shard_running_only_on_a_live_worker_and_while_it_is_neither_committed_nor_failed()
 {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest) = plan_job(dir.path(), "honest", 4).await;
    let store = JobStore::open(&spec.output.url, "honest").unwrap();
    let cluster = open_cluster(&server).await;
    cluster
        .put_job(&JobRecord::new(&manifest, 1, JobState::Running))
        .await
        .unwrap();
    let ids: Vec<&ShardId> = manifest.shards.iter().map(|s| &s.id).collect();
    // Shard 0 is committed, shard 1 failed; a live worker still lists both beside shard 2
    // (its next beat has not come yet), and a worker whose last beat is older than the TTL
    // lists shard 3.
    commit(&store, &manifest, 0).await;
    cluster
        .record_failure(&FailedShard {
            job: "honest".into(),
            shard: ids[1].to_string(),
            reason: "broken".into(),
            attempts: 4,
            worker: Some("live".into()),
            at: Utc::now(),
        })
        .await
        .unwrap();
    let ttl = cluster.settings().heartbeat_ttl;
    let live = Membership::join(&cluster, &beat("live", "honest", &ids[..3], Utc::now()))
        .await
        .unwrap();
    let stale_at = Utc::now() - chrono::Duration::from_std(ttl * 2).unwrap();
    let dead = Membership::join(&cluster, &beat("dead", "honest", &ids[3..], stale_at))
        .await
        .unwrap();
    let coordinator = RunningCoordinator::start(&server, options());
    wait_progress(&cluster, "honest", |p| p.committed == 1).await;
    // Two reconciles later the coordinator has seen the beats too.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let status = distributed::job_status(&cluster, "honest").await.unwrap();
    let running: Vec<&str> = status.running.iter().map(|r| r.shard.as_str()).collect();
    assert_eq!(running, vec![ids[2].as_str()], "{status:?}");
    assert_eq!(status.committed, 1);
    assert_eq!(status.failed.len(), 1);
    assert_eq!(status.pending, 1, "shard 3 waits for a worker: {status:?}");
    assert_eq!(
        status.planned,
        status.committed
            + status.failed.len() as u64
            + status.running.len() as u64
            + status.pending
    );
    coordinator.stop().await;
    drop((live, dead));
}
