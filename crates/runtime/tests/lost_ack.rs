//! A worker that dies after its commit marker is written but before its ack reaches the
//! server: the message comes back after ack_wait, the next worker finds the marker, acks, and
//! nothing is written twice. The loss is made exact by a queue wrapper that swallows acks,
//! over a real nats-server.

use std::sync::Arc;
use std::time::Duration;

use rubricmill_cluster::{Cluster, Names, NatsOptions, NatsWorkQueue, QueueSettings, connect};
use rubricmill_core::JobSpec;
use rubricmill_queue::{Delivery, InProcessEvents, QueueError, ShardEvent, ShardTask, WorkQueue};
use rubricmill_runtime::coordinator::plan_or_resume;
use rubricmill_runtime::{ContextOptions, JobContext, SingleJob, Worker, WorkerOptions};
use rubricmill_store::JobStore;
use rubricmill_testkit::NatsServer;
use tokio::sync::watch;

/// Passes deliveries through, except that their acks never leave the process.
struct LoseAcks(NatsWorkQueue);

struct AckLost(Box<dyn Delivery>);

#[async_trait::async_trait]
impl Delivery for AckLost {
    fn task(&self) -> &ShardTask {
        self.0.task()
    }
    fn attempt(&self) -> u32 {
        self.0.attempt()
    }
    fn max_deliver(&self) -> u32 {
        self.0.max_deliver()
    }
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        Ok(())
    }
    async fn nak(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        self.0.nak(delay).await
    }
    async fn release(self: Box<Self>, delay: Duration) -> Result<(), QueueError> {
        self.0.release(delay).await
    }
    async fn term(self: Box<Self>) -> Result<(), QueueError> {
        self.0.term().await
    }
    async fn progress(&self) -> Result<(), QueueError> {
        self.0.progress().await
    }
}

#[async_trait::async_trait]
impl WorkQueue for LoseAcks {
    async fn publish(&self, task: ShardTask) -> Result<(), QueueError> {
        self.0.publish(task).await
    }
    fn close(&self) {
        self.0.close();
    }
    async fn pull(&self, max: usize) -> Result<Option<Vec<Box<dyn Delivery>>>, QueueError> {
        let pulled = self.0.pull(max).await?;
        Ok(pulled.map(|deliveries| {
            deliveries
                .into_iter()
                .map(|d| Box::new(AckLost(d)) as Box<dyn Delivery>)
                .collect()
        }))
    }
}

/// Runs one worker over `queue` until each of `shards` distinct shards has had an event
/// `counts`; returns every event it sent.
async fn run_until(
    context: Arc<JobContext>,
    queue: Arc<dyn WorkQueue>,
    id: &str,
    shards: usize,
    counts: impl Fn(&ShardEvent) -> bool,
) -> Vec<ShardEvent> {
    let (events, mut received) = InProcessEvents::channel();
    let mut options = WorkerOptions::new(id);
    options.heartbeat = Duration::from_millis(300);
    let worker = Arc::new(Worker::new(
        options,
        queue,
        Arc::new(SingleJob(context)),
        Arc::new(events),
    ));
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(worker.run(stopped));
    let mut seen = Vec::new();
    let mut finished = std::collections::HashSet::new();
    while finished.len() < shards {
        let event = tokio::time::timeout(Duration::from_secs(60), received.recv())
            .await
            .expect("the worker keeps reporting")
            .expect("events flow");
        if counts(&event) {
            finished.insert(event.shard().to_owned());
        }
        seen.push(event);
    }
    stop.send(true).unwrap();
    running.abort();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ack_after_the_commit_writes_nothing_twice() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    let lines: String = (0..30)
        .map(|i| {
            format!(
                "{{\"id\":\"p{i}\",\"prompt\":\"How do I keep bread {i} fresh?\",\"chosen\":\"Freeze it in slices.\",\"rejected\":\"Leave it out.\"}}\n"
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let spec_path = dir.path().join("lost.toml");
    std::fs::write(
        &spec_path,
        format!(
            "name = \"lost\"\npipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"sim\"\n",
            input.display(),
            dir.path().join("out").display()
        ),
    )
    .unwrap();
    let spec = JobSpec::load(&spec_path).unwrap();
    let (manifest, _) = plan_or_resume(&spec).await.unwrap();
    let store =
        rubricmill_store::JobStore::open(&manifest.spec.output.url, &manifest.name).unwrap();
    let planned = store.all_planned_shards(&manifest).await.unwrap();
    let shards = planned.len();
    assert_eq!(shards, 3);
    let context =
        Arc::new(JobContext::new(manifest.clone(), 0.0, &ContextOptions::default()).unwrap());

    let client = connect(&NatsOptions::for_servers(&server.url()))
        .await
        .unwrap();
    let settings = QueueSettings {
        ack_wait: Duration::from_secs(1),
        ..QueueSettings::default()
    };
    let cluster = Cluster::open(client, Names::default(), settings, true)
        .await
        .unwrap();
    let queue = NatsWorkQueue::open(&cluster)
        .await
        .unwrap()
        .with_pull_wait(Duration::from_millis(500));
    for shard in &planned {
        queue
            .publish_shard(&ShardTask {
                job: "lost".into(),
                shard: shard.clone(),
            })
            .await
            .unwrap();
    }

    // The first worker commits every shard, and every ack is lost.
    let first = run_until(
        context.clone(),
        Arc::new(LoseAcks(queue.clone())),
        "first",
        shards,
        |e| matches!(e, ShardEvent::Committed { .. }),
    )
    .await;
    let committed = first
        .iter()
        .filter(|e| matches!(e, ShardEvent::Committed { .. }))
        .count();
    assert_eq!(committed, shards);
    let store = JobStore::open(&spec.output.url, "lost").unwrap();
    let markers_before = store.markers().await.unwrap();
    assert_eq!(markers_before.len(), shards);
    for shard in &planned {
        let queued = cluster
            .queued_sequence("lost", shard.id.as_str())
            .await
            .unwrap();
        assert!(
            queued.is_some(),
            "nothing was acked, so every message is still in the stream"
        );
    }

    // The messages come back; the second worker finds the markers and only acks.
    // Another worker, with its own connection to the queue (the first one closed its own).
    let queue = NatsWorkQueue::open(&cluster)
        .await
        .unwrap()
        .with_pull_wait(Duration::from_millis(500));
    let second = run_until(context, Arc::new(queue), "second", shards, |e| {
        matches!(e, ShardEvent::AlreadyCommitted { .. })
    })
    .await;
    assert!(
        second
            .iter()
            .all(|e| matches!(e, ShardEvent::AlreadyCommitted { .. })),
        "{second:?}"
    );
    let markers_after = store.markers().await.unwrap();
    assert_eq!(markers_before, markers_after, "a marker changed");
    let parts: usize = std::fs::read_dir(dir.path().join("out/lost/parts"))
        .unwrap()
        .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(parts, shards, "one part file per shard");
    let stats = cluster.queue_stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.ack_pending),
        (0, 0),
        "every message is gone"
    );
}
