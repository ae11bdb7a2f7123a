//! The JetStream facts the distributed mode relies on, checked against a real nats-server.

use std::time::Duration;

use chrono::Utc;
use rubricmill_cluster::{
    Cluster, FailedShard, Membership, Names, NatsOptions, NatsWorkQueue, PublishOutcome,
    QueueSettings, RateLimitNotice, WorkerBeat, connect, publish_pause, subscribe_pauses,
};
use rubricmill_core::{ShardSpec, shard::ShardUnit};
use rubricmill_queue::{ShardTask, WorkQueue};
use rubricmill_testkit::NatsServer;

fn task(job: &str, n: u32) -> ShardTask {
    let unit = ShardUnit::Files {
        files: vec![rubricmill_core::shard::FileRef {
            url: format!("file:///in/{n}.md"),
            size: 10,
            etag: None,
            last_modified: "2026-01-01T00:00:00Z".into(),
        }],
    };
    ShardTask {
        job: job.into(),
        shard: ShardSpec::new(unit, 1),
    }
}

async fn open(server: &NatsServer, settings: QueueSettings) -> Cluster {
    let client = connect(&NatsOptions::for_servers(&server.url()))
        .await
        .expect("connects");
    Cluster::open(client, Names::default(), settings, true)
        .await
        .expect("opens the cluster state")
}

fn quick() -> QueueSettings {
    QueueSettings {
        ack_wait: Duration::from_secs(2),
        max_deliver: 2,
        heartbeat_ttl: Duration::from_secs(3),
        ..QueueSettings::default()
    }
}

#[tokio::test]
async fn a_shard_is_queued_once_until_it_is_acked() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let cluster = open(&server, quick()).await;
    let queue = NatsWorkQueue::open(&cluster).await.unwrap();
    let shard = task("job.a", 1);
    assert_eq!(
        queue.publish_shard(&shard).await.unwrap(),
        PublishOutcome::Queued
    );
    // Same shard again, under another generation's message id: refused while queued.
    let again = queue.clone().with_generation(7);
    assert_eq!(
        again.publish_shard(&shard).await.unwrap(),
        PublishOutcome::AlreadyQueued
    );
    let pulled = queue.pull(4).await.unwrap().unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].task(), &shard);
    assert_eq!(pulled[0].attempt(), 1);
    assert_eq!(pulled[0].max_deliver(), 2);
    // Running is still "in the stream": refused.
    assert_eq!(
        again.publish_shard(&shard).await.unwrap(),
        PublishOutcome::AlreadyQueued
    );
    assert!(
        cluster
            .queued_sequence("job.a", shard.shard.id.as_str())
            .await
            .unwrap()
            .is_some()
    );
    pulled.into_iter().next().unwrap().ack().await.unwrap();
    assert!(
        cluster
            .queued_sequence("job.a", shard.shard.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    // Acked: a later submit may queue it again.
    assert_eq!(
        again.publish_shard(&shard).await.unwrap(),
        PublishOutcome::Queued
    );
}

#[tokio::test]
async fn a_pull_takes_only_the_free_capacity_and_nak_redelivers() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let cluster = open(&server, quick()).await;
    let queue = NatsWorkQueue::open(&cluster).await.unwrap();
    let tasks: Vec<ShardTask> = (0..5).map(|n| task("job-b", n)).collect();
    let outcomes = queue.publish_all(tasks).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == PublishOutcome::Queued));
    let first = queue.pull(2).await.unwrap().unwrap();
    assert_eq!(first.len(), 2);
    let stats = cluster.queue_stats().await.unwrap();
    assert_eq!((stats.pending, stats.ack_pending), (3, 2));
    let mut first = first.into_iter();
    let naked = first.next().unwrap();
    let naked_task = naked.task().clone();
    naked.nak(Duration::ZERO).await.unwrap();
    let mut seen_again = false;
    for _ in 0..4 {
        let batch = queue.pull(1).await.unwrap().unwrap();
        let delivery = batch.into_iter().next().unwrap();
        if delivery.task() == &naked_task {
            assert_eq!(delivery.attempt(), 2);
            seen_again = true;
        }
        delivery.ack().await.unwrap();
    }
    assert!(seen_again, "the nak'd shard came back");
}

#[tokio::test]
async fn an_unacked_shard_returns_after_ack_wait_until_max_deliver() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let cluster = open(&server, quick()).await;
    let queue = NatsWorkQueue::open(&cluster).await.unwrap();
    let shard = task("job-c", 1);
    queue.publish_shard(&shard).await.unwrap();
    let first = queue.pull(1).await.unwrap().unwrap().pop().unwrap();
    assert_eq!(first.attempt(), 1);
    drop(first); // as if the worker died: no ack, no heartbeat
    let second = queue.pull(1).await.unwrap().unwrap().pop().unwrap();
    assert_eq!(second.attempt(), 2);
    drop(second);
    // Past max_deliver the message stays in the stream but is not delivered again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet = tokio::time::timeout(Duration::from_secs(3), queue.pull(1)).await;
    assert!(quiet.is_err(), "no third delivery");
    assert!(
        cluster
            .queued_sequence("job-c", shard.shard.id.as_str())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn failures_and_membership_live_in_kv() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let cluster = open(&server, quick()).await;
    let failed = FailedShard {
        job: "job.d".into(),
        shard: "s1".into(),
        reason: "boom".into(),
        attempts: 2,
        worker: Some("w1".into()),
        at: Utc::now(),
    };
    cluster.record_failure(&failed).await.unwrap();
    assert_eq!(cluster.failures("job.d").await.unwrap(), vec![failed]);
    assert!(
        cluster.failures("job").await.unwrap().is_empty(),
        "prefix of another job"
    );
    cluster.clear_failure("job.d", "s1").await.unwrap();
    assert!(cluster.failures("job.d").await.unwrap().is_empty());

    let beat = |id: &str| WorkerBeat {
        id: id.into(),
        host: "h".into(),
        version: "v".into(),
        started_at: Utc::now(),
        beat_at: Utc::now(),
        capacity: 2,
        in_flight: Vec::new(),
        draining: false,
        provider_limits: Default::default(),
    };
    let one = Membership::join(&cluster, &beat("w1")).await.unwrap();
    let mut live = one.live_workers();
    assert_eq!(*live.borrow(), 1);
    let two = Membership::join(&cluster, &beat("w2")).await.unwrap();
    assert_eq!(*two.live_workers().borrow(), 2);
    tokio::time::timeout(Duration::from_secs(5), live.wait_for(|n| *n == 2))
        .await
        .expect("w1 sees w2 join")
        .unwrap();
    two.leave().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), live.wait_for(|n| *n == 1))
        .await
        .expect("w1 sees w2 leave")
        .unwrap();
    // A worker that stops beating expires after the TTL.
    let three = Membership::join(&cluster, &beat("w3")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), live.wait_for(|n| *n == 2))
        .await
        .expect("w1 sees w3 join")
        .unwrap();
    std::mem::forget(three);
    let keep_beating = async {
        loop {
            one.beat(&beat("w1")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        _ = keep_beating => {}
        seen = tokio::time::timeout(Duration::from_secs(15), live.wait_for(|n| *n == 1)) => {
            seen.expect("w3 expires").unwrap();
        }
    }
}

#[tokio::test]
async fn a_worker_takes_the_queue_settings_the_server_has() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let configured = open(&server, quick()).await;
    assert_eq!(configured.settings().ack_wait, Duration::from_secs(2));
    // A worker started with other settings opens without configuring: the server's win.
    let client = connect(&NatsOptions::for_servers(&server.url()))
        .await
        .unwrap();
    let worker = Cluster::open(client, Names::default(), QueueSettings::default(), false)
        .await
        .unwrap();
    let settings = worker.settings();
    assert_eq!(settings.ack_wait, Duration::from_secs(2));
    assert_eq!(settings.max_deliver, 2);
    assert_eq!(
        settings.max_ack_pending,
        QueueSettings::default().max_ack_pending
    );
    assert_eq!(settings.heartbeat_ttl, Duration::from_secs(3));
}

#[tokio::test]
async fn a_rate_limit_pause_reaches_every_subscriber_its_publisher_included() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let cluster = open(&server, quick()).await;
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let _subscription = subscribe_pauses(&cluster, move |endpoint, pause| {
        let _ = sender.send((endpoint.to_owned(), pause));
    })
    .await
    .unwrap();
    cluster.flush().await;
    let notice = RateLimitNotice {
        endpoint: "e1".into(),
        pause_ms: 1500,
        from: "w1".into(),
    };
    publish_pause(&cluster, &notice).await.unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .expect("the notice arrives")
        .unwrap();
    assert_eq!(applied, ("e1".to_owned(), Duration::from_millis(1500)));
}
