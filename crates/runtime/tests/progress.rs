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
    QueueSettings, RunningShard, WorkerBeat,
};
use rubricmill_core::{JobManifest, JobSpec, ShardId, Usage};
use rubricmill_queue::ShardEvent;
use rubricmill_runtime::coordinator::{pending_shards, plan_or_resume};
use rubricmill_runtime::distributed::{self, CoordinatorOptions};
use rubricmill_runtime::{ContextOptions, WorkerOptions, WorkerPolicy};
use rubricmill_store::{CommitMarker, CommitOutcome, JobStore};
use rubricmill_telemetry::{Health, Registry};
use rubricmill_testkit::NatsServer;
use tokio::sync::oneshot;

/// Plans a job of `shards` shards of one record each in `dir`.
async fn plan_job(
    dir: &std::path::Path,
    name: &str,
    shards: usize,
) -> (JobSpec, JobManifest, Vec<ShardId>) {
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
    let store = JobStore::open(&manifest.spec.output.url, name).unwrap();
    let ids: Vec<ShardId> = store
        .all_planned_shards(&manifest)
        .await
        .unwrap()
        .into_iter()
        .map(|shard| shard.id)
        .collect();
    assert_eq!(ids.len(), shards);
    (manifest.spec.clone(), manifest, ids)
}

/// Writes the marker of shard `index` as a worker would (figures derived from the index).
async fn commit(store: &JobStore, ids: &[ShardId], index: usize) -> CommitMarker {
    let marker = CommitMarker {
        shard_id: ids[index].clone(),
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
        dropped_rows: 0,
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
    let options = NatsOptions::for_servers(&server.url());
    Cluster::connect(&options, Names::default(), QueueSettings::default(), true)
        .await
        .unwrap()
}

/// A coordinator or worker running in this process (on its own thread and runtime, with its
/// own connection) until stopped.
struct Role {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    registry: Arc<Registry>,
}

type Stopped = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Role {
    fn start<F, Fut>(server: &NatsServer, run: F) -> Self
    where
        F: FnOnce(Cluster, Arc<Registry>, Stopped) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
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
                    let options = NatsOptions::for_servers(&url);
                    let cluster = Cluster::connect(
                        &options,
                        Names::default(),
                        QueueSettings::default(),
                        true,
                    )
                    .await
                    .unwrap();
                    let stopped: Stopped = Box::pin(async {
                        let _ = stopped.await;
                    });
                    run(cluster, registry, stopped).await;
                });
            }
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
            registry,
        }
    }

    fn coordinator(server: &NatsServer, options: CoordinatorOptions) -> Self {
        Self::start(server, move |cluster, registry, stopped| async move {
            distributed::run_coordinator(cluster, options, registry, Health::new(), stopped)
                .await
                .unwrap();
        })
    }

    fn worker(server: &NatsServer, id: &str) -> Self {
        let id = id.to_owned();
        Self::start(server, move |cluster, registry, stopped| async move {
            let options = distributed::ClusterWorkerOptions {
                worker: WorkerOptions::new(id),
                drain_timeout: Duration::from_secs(5),
                context: ContextOptions::default(),
                policy: WorkerPolicy::default(),
            };
            distributed::run_worker(cluster, options, registry, Health::new(), stopped)
                .await
                .unwrap();
        })
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
        provider_limits: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_a_shard_running_only_on_a_live_worker_and_while_it_is_neither_committed_nor_failed()
 {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest, ids) = plan_job(dir.path(), "honest", 4).await;
    let store = JobStore::open(&spec.output.url, "honest").unwrap();
    let cluster = open_cluster(&server).await;
    cluster
        .put_job(&JobRecord::new(&manifest, 1, JobState::Running))
        .await
        .unwrap();
    let refs: Vec<&ShardId> = ids.iter().collect();
    // Shard 0 is committed, shard 1 failed; a live worker still lists both beside shard 2
    // (its next beat has not come yet), and a worker whose last beat is older than the TTL
    // lists shard 3.
    commit(&store, &ids, 0).await;
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
    let live = Membership::join(&cluster, &beat("live", "honest", &refs[..3], Utc::now()))
        .await
        .unwrap();
    let stale_at = Utc::now() - chrono::Duration::from_std(ttl * 2).unwrap();
    let dead = Membership::join(&cluster, &beat("dead", "honest", &refs[3..], stale_at))
        .await
        .unwrap();
    let coordinator = Role::coordinator(&server, options());
    wait_progress(&cluster, "honest", |p| {
        p.committed == 1 && !p.running.is_empty()
    })
    .await;

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

/// Sums of the markers' figures: (committed, records, rows, rejects, calls).
fn sums(markers: &[CommitMarker]) -> (u64, u64, u64, u64, u64) {
    markers.iter().fold((0, 0, 0, 0, 0), |t, m| {
        (
            t.0 + 1,
            t.1 + m.records,
            t.2 + m.rows,
            t.3 + m.rejects,
            t.4 + m.usage.calls,
        )
    })
}

fn figures(p: &JobProgress) -> (u64, u64, u64, u64, u64) {
    (p.committed, p.records, p.rows, p.rejects, p.usage.calls)
}

fn progress_files(dir: &std::path::Path, job: &str) -> usize {
    std::fs::read_dir(dir.join("out").join(job).join("progress"))
        .map(|entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".jsonl.zst")
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_rebuilds_progress_from_the_log_and_reads_only_unsummarised_markers()
 {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest, ids) = plan_job(dir.path(), "restart", 6).await;
    let store = JobStore::open(&spec.output.url, "restart").unwrap();
    let cluster = open_cluster(&server).await;
    cluster
        .put_job(&JobRecord::new(&manifest, 1, JobState::Running))
        .await
        .unwrap();
    // No sweep: no worker is there to take a shard queued again.
    let no_sweep = CoordinatorOptions {
        sweep_after_idle_rounds: u32::MAX,
        ..options()
    };
    let first = Role::coordinator(&server, no_sweep.clone());
    wait_progress(&cluster, "restart", |p| p.planned == 6).await;
    let mut markers = Vec::new();
    for index in 0..4 {
        let marker = commit(&store, &ids, index).await;
        publish(&cluster, &committed_event("restart", &marker)).await;
        markers.push(marker);
    }
    let progress = wait_progress(&cluster, "restart", |p| p.committed == 4).await;
    assert_eq!(figures(&progress), sums(&markers), "figures from events");
    // On its way out, the coordinator adds what events told it to the log.
    first.stop().await;
    let files = progress_files(dir.path(), "restart");
    assert!(files >= 1, "the coordinator wrote no progress log");

    // A marker whose event nobody heard, then a new coordinator.
    markers.push(commit(&store, &ids, 4).await);
    cluster
        .put_progress("restart", &JobProgress::default())
        .await
        .unwrap();
    let second = Role::coordinator(&server, no_sweep);
    let progress = wait_progress(&cluster, "restart", |p| p.committed == 5).await;
    assert_eq!(
        figures(&progress),
        sums(&markers),
        "figures after the restart"
    );
    // Reads: the plan and its chunk, each progress file, and the one marker no summary had.
    let gets = second.metric("rubricmill_storage_requests_total{op=\"get\"}");
    let chunks = manifest.chunks.len();
    assert_eq!(chunks, 1);
    assert_eq!(
        gets,
        (2 + chunks + files) as f64,
        "{}",
        second.registry.render()
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_whose_event_was_lost_is_found_by_the_full_reconcile_and_the_job_completes() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest, ids) = plan_job(dir.path(), "lost-event", 4).await;
    let store = JobStore::open(&spec.output.url, "lost-event").unwrap();
    let cluster = open_cluster(&server).await;
    cluster
        .put_job(&JobRecord::new(&manifest, 1, JobState::Running))
        .await
        .unwrap();
    let coordinator = Role::coordinator(
        &server,
        CoordinatorOptions {
            full_reconcile_every: Duration::from_secs(2),
            sweep_after_idle_rounds: u32::MAX,
            ..options()
        },
    );
    wait_progress(&cluster, "lost-event", |p| p.planned == 4).await;
    let mut markers = Vec::new();
    for index in 0..3 {
        let marker = commit(&store, &ids, index).await;
        publish(&cluster, &committed_event("lost-event", &marker)).await;
        markers.push(marker);
    }
    wait_progress(&cluster, "lost-event", |p| p.committed == 3).await;
    let listings_before = coordinator.metric("rubricmill_coordinator_full_reconciles_total");
    markers.push(commit(&store, &ids, 3).await);
    let progress = wait_progress(&cluster, "lost-event", |p| p.committed == 4).await;
    assert_eq!(figures(&progress), sums(&markers));
    assert!(
        coordinator.metric("rubricmill_coordinator_full_reconciles_total") > listings_before,
        "found without a listing?"
    );
    for _ in 0..50 {
        if cluster.job("lost-event").await.unwrap().unwrap().state == JobState::Complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster.job("lost-event").await.unwrap().unwrap().state,
        JobState::Complete
    );
    assert_eq!(
        coordinator.metric("rubricmill_coordinator_shards_republished_total"),
        0.0
    );
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reads_only_the_markers_the_progress_log_does_not_summarise() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest, ids) = plan_job(dir.path(), "resume", 50).await;
    let writer = JobStore::open(&spec.output.url, "resume").unwrap();
    let mut markers = Vec::new();
    for index in 0..40 {
        markers.push(commit(&writer, &ids, index).await);
    }
    let expected: Vec<_> = {
        let mut all: Vec<_> = markers.iter().map(CommitMarker::summary).collect();
        all.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        all
    };

    // The plan's chunk is read once per resume.
    let chunks = manifest.chunks.len() as u64;
    assert_eq!(chunks, 1);
    // No log yet: every marker is read once, and the log records them.
    let first = JobStore::open(&spec.output.url, "resume").unwrap();
    let (pending, summaries) = pending_shards(&manifest, &first).await.unwrap();
    assert_eq!((pending.len(), summaries.clone()), (10, expected));
    let requests = first.requests();
    assert_eq!(
        (requests.get, requests.list, requests.put),
        (chunks + 40, 2, 1)
    );

    // Ten more commits: the next resume reads the log and those ten markers only.
    for index in 40..50 {
        markers.push(commit(&writer, &ids, index).await);
    }
    let second = JobStore::open(&spec.output.url, "resume").unwrap();
    let (pending, summaries) = pending_shards(&manifest, &second).await.unwrap();
    assert_eq!((pending.len(), summaries.len()), (0, 50));
    let requests = second.requests();
    assert_eq!(
        (requests.get, requests.list, requests.put),
        (chunks + 1 + 10, 2, 1)
    );

    // A finished job with its markers in the log: two listings and one read per log file.
    let third = JobStore::open(&spec.output.url, "resume").unwrap();
    let (pending, summaries) = pending_shards(&manifest, &third).await.unwrap();
    assert_eq!((pending.len(), summaries.len()), (0, 50));
    let requests = third.requests();
    assert_eq!(
        (requests.get, requests.list, requests.put),
        (chunks + 2, 2, 0)
    );
    let sum: u64 = summaries.iter().map(|s| s.rows).sum();
    assert_eq!(sum, markers.iter().map(|m| m.rows).sum::<u64>());

    // Many small files are compacted into one holding them all.
    for marker in &markers[..8] {
        writer.write_progress([&marker.summary()]).await.unwrap();
    }
    assert_eq!(progress_files(dir.path(), "resume"), 10);
    let (_, summaries) = pending_shards(&manifest, &writer).await.unwrap();
    assert_eq!(summaries.len(), 50);
    assert_eq!(progress_files(dir.path(), "resume"), 1);
    let fresh = JobStore::open(&spec.output.url, "resume").unwrap();
    let (_, again) = pending_shards(&manifest, &fresh).await.unwrap();
    assert_eq!(again, summaries);
    assert_eq!(
        fresh.requests().get,
        chunks + 1,
        "the chunk and the one log file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_costs_the_coordinator_at_most_two_storage_requests_per_committed_shard() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shards = 24;
    let (spec, _, _) = plan_job(dir.path(), "counted", shards).await;
    let cluster = open_cluster(&server).await;
    let coordinator = Role::coordinator(&server, options());
    let submitted = distributed::submit(&cluster, &spec).await.unwrap();
    assert_eq!(submitted.queued, shards as u64);
    let workers = [Role::worker(&server, "w1"), Role::worker(&server, "w2")];
    for _ in 0..300 {
        if cluster.job("counted").await.unwrap().unwrap().state == JobState::Complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster.job("counted").await.unwrap().unwrap().state,
        JobState::Complete
    );
    let store = JobStore::open(&spec.output.url, "counted").unwrap();
    let markers = store.markers().await.unwrap();
    let progress = cluster.progress("counted").await.unwrap().unwrap();
    assert_eq!(figures(&progress), sums(&markers));
    let requests = coordinator.storage_requests();
    eprintln!("the coordinator made {requests} storage requests for {shards} committed shards");
    assert!(requests > 0.0, "the counter counts nothing");
    assert!(
        requests <= 2.0 * shards as f64,
        "{requests} storage requests for {shards} shards:\n{}",
        coordinator.registry.render()
    );
    for worker in workers {
        worker.stop().await;
    }
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_records_its_commits_in_the_progress_log_so_resuming_it_reads_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, manifest, _) = plan_job(dir.path(), "recorded", 6).await;
    let summary = rubricmill_runtime::run_embedded(
        &spec,
        &rubricmill_runtime::EmbeddedOptions::default(),
        &mut rubricmill_runtime::NoProgress,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.this_run.shards, 6);
    let files = progress_files(dir.path(), "recorded");
    assert!(files >= 1, "the run wrote no progress log");
    let store = JobStore::open(&spec.output.url, "recorded").unwrap();
    let (pending, summaries) = pending_shards(&manifest, &store).await.unwrap();
    assert!(pending.is_empty());
    assert_eq!(summaries.len(), 6);
    assert_eq!(
        summaries.iter().map(|s| s.rows).sum::<u64>(),
        summary.this_run.rows
    );
    let requests = store.requests();
    assert_eq!(
        (requests.get, requests.list, requests.put),
        (files as u64 + manifest.chunks.len() as u64, 2, 0),
        "only the log and the plan's chunk are read"
    );
}
