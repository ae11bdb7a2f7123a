//! The commit protocol on a real file system: racing attempts leave exactly one marker and the
//! losers' files are gone; an attempt that wrote data but never committed leaves no rows behind
//! for readers (nor does a marker whose write was cut off), and a later attempt commits cleanly.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::Utc;
use rubricmill_core::{ShardId, Usage};
use rubricmill_store::{CommitMarker, CommitOutcome, JobStore};

fn marker(shard: &ShardId, attempt: &str, part: Option<String>) -> CommitMarker {
    CommitMarker {
        shard_id: shard.clone(),
        attempt_id: attempt.to_owned(),
        worker_id: format!("worker-{attempt}"),
        committed_at: Utc::now(),
        part,
        rejects_part: None,
        rows: 1,
        rejects: 0,
        bytes: 4,
        checksum: None,
        records: 1,
        stages: BTreeMap::new(),
        usage: Usage::default(),
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    files.sort();
    files
}

#[tokio::test]
async fn racing_attempts_leave_one_marker_and_no_loser_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "race").unwrap();
    let shard = ShardId("0123456789abcdef01234567".into());
    let attempts: Vec<String> = (0..8).map(|i| format!("attempt-{i}")).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for attempt in attempts.clone() {
        let store = store.clone();
        let shard = shard.clone();
        tasks.spawn(async move {
            let files = store
                .write_attempt(
                    &shard,
                    &attempt,
                    Some(Bytes::from(format!("rows of {attempt}"))),
                    Some(Bytes::from_static(b"rej")),
                )
                .await
                .unwrap();
            let mut ours = marker(&shard, &attempt, files.part.map(|p| p.0));
            ours.rejects_part = files.rejects_part;
            (attempt, store.commit(&ours).await.unwrap())
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (attempt, outcome) = joined.unwrap();
        if outcome == CommitOutcome::Won {
            winners.push(attempt);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one attempt wins: {winners:?}");
    let winner = &winners[0];
    let stored = store.marker(&shard).await.unwrap().unwrap();
    assert_eq!(&stored.attempt_id, winner);
    let files = files_under(&dir.path().join("race"));
    assert_eq!(
        files,
        vec![
            format!("commits/{shard}.json"),
            format!("parts/{shard}/{winner}.parquet"),
            format!("rejects/{shard}/{winner}.parquet"),
        ]
    );
    let rows = store.read(stored.part.as_deref().unwrap()).await.unwrap();
    assert_eq!(rows, Bytes::from(format!("rows of {winner}")));
}

#[tokio::test]
async fn crash_between_data_and_marker_leaves_nothing_readers_trust() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "crash").unwrap();
    let shard = ShardId("fedcba9876543210fedcba98".into());
    // The first attempt writes its data, then "dies" before the marker.
    store
        .write_attempt(&shard, "dead", Some(Bytes::from_static(b"orphan")), None)
        .await
        .unwrap();
    // A writer killed while writing a marker to a local directory leaves the staging file
    // (`<shard>.json#<n>`), whole, beside where the marker would be: it is not a marker.
    let commits = dir.path().join("crash/commits");
    std::fs::create_dir_all(&commits).unwrap();
    let staged = serde_json::to_vec(&marker(&shard, "dead", None)).unwrap();
    std::fs::write(commits.join(format!("{shard}.json#7")), staged).unwrap();
    assert!(store.marker(&shard).await.unwrap().is_none());
    assert!(
        store.markers().await.unwrap().is_empty(),
        "readers see no committed shard"
    );
    assert!(store.committed_shards().await.unwrap().is_empty());
    // The redelivered attempt commits; markers point at its files only.
    let files = store
        .write_attempt(&shard, "alive", Some(Bytes::from_static(b"fresh")), None)
        .await
        .unwrap();
    let ours = marker(&shard, "alive", files.part.map(|p| p.0));
    assert_eq!(store.commit(&ours).await.unwrap(), CommitOutcome::Won);
    let markers = store.markers().await.unwrap();
    assert_eq!(markers.len(), 1);
    assert_eq!(
        markers[0].part.as_deref(),
        Some(format!("parts/{shard}/alive.parquet").as_str())
    );
    // Committing the same attempt again (a retried put whose first answer was lost) still wins.
    assert_eq!(store.commit(&ours).await.unwrap(), CommitOutcome::Won);
    // A late duplicate attempt loses and its files are removed.
    let late = store
        .write_attempt(&shard, "late", Some(Bytes::from_static(b"dup")), None)
        .await
        .unwrap();
    let late_marker = marker(&shard, "late", late.part.map(|p| p.0));
    assert!(matches!(
        store.commit(&late_marker).await.unwrap(),
        CommitOutcome::Lost(_)
    ));
    assert!(
        !dir.path()
            .join(format!("crash/parts/{shard}/late.parquet"))
            .exists()
    );
}

#[tokio::test]
async fn manifest_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    assert!(store.load_manifest().await.unwrap().is_none());
    let spec = rubricmill_core::JobSpec::parse(
        std::path::Path::new("t.toml"),
        "name = \"plan\"\npipeline = \"crg\"\n[input]\nurl = \"x.jsonl\"\n[output]\nurl = \"o\"\n[llm]\nprovider = \"simulated\"\n",
    )
    .unwrap();
    let first = rubricmill_store::JobManifest {
        name: "plan".into(),
        fingerprint: "one".into(),
        planned_at: Utc::now(),
        input_root: "file:///".into(),
        spec,
        templates: BTreeMap::new(),
        shard_count: 0,
        expected_records: 0,
        chunks: vec![],
        inline_shards: vec![],
    };
    let mut second = first.clone();
    second.fingerprint = "two".into();
    assert_eq!(
        store.create_manifest(&first).await.unwrap().fingerprint,
        "one"
    );
    assert_eq!(
        store.create_manifest(&second).await.unwrap().fingerprint,
        "one",
        "the first plan stays in force"
    );
}

#[tokio::test]
async fn gc_removes_only_unreferenced_attempt_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "gc").unwrap();
    let shard = ShardId("aaaaaaaaaaaaaaaaaaaaaaaa".into());
    let winner = store
        .write_attempt(
            &shard,
            "win",
            Some(Bytes::from_static(b"rows")),
            Some(Bytes::from_static(b"rej")),
        )
        .await
        .unwrap();
    let mut ours = marker(&shard, "win", winner.part.map(|p| p.0));
    ours.rejects_part = winner.rejects_part;
    assert_eq!(store.commit(&ours).await.unwrap(), CommitOutcome::Won);
    // A crashed attempt of the same shard and one of a shard never committed.
    store
        .write_attempt(
            &shard,
            "crashed",
            Some(Bytes::from_static(b"x")),
            Some(Bytes::from_static(b"y")),
        )
        .await
        .unwrap();
    let other = ShardId("bbbbbbbbbbbbbbbbbbbbbbbb".into());
    store
        .write_attempt(&other, "lonely", Some(Bytes::from_static(b"z")), None)
        .await
        .unwrap();
    // A kill between the local store's write and its rename leaves a staging file behind.
    std::fs::write(dir.path().join("gc/job.json#1"), b"{").unwrap();
    std::fs::write(dir.path().join(format!("gc/commits/{other}.json#12")), b"{").unwrap();
    let within_grace = store
        .gc(std::time::Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert!(
        within_grace.is_empty(),
        "young files are kept: {within_grace:?}"
    );
    let listed = store.gc(std::time::Duration::ZERO, true).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.contains(&"job.json#1".to_string()), "{listed:?}");
    assert_eq!(
        files_under(&dir.path().join("gc")).len(),
        8,
        "a dry run removes nothing"
    );
    let removed = store.gc(std::time::Duration::ZERO, false).await.unwrap();
    assert_eq!(removed, listed);
    assert_eq!(
        files_under(&dir.path().join("gc")),
        vec![
            format!("commits/{shard}.json"),
            format!("parts/{shard}/win.parquet"),
            format!("rejects/{shard}/win.parquet"),
        ]
    );
}
