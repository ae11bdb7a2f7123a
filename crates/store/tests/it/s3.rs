//! The store against a real S3-protocol server (moto on a free port): listing and reading
//! inputs, and the commit race decided by conditional puts (`If-None-Match: *`).

use std::io::Write;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rubricmill_core::{ShardId, Usage};
use rubricmill_store::{
    CommitMarker, CommitOutcome, JobStore, ReadItem, StoreLocation, list_inputs_with, plan_shards,
    read_shard,
};
use rubricmill_testkit::S3Server;

async fn put(location: &StoreLocation, name: &str, bytes: Vec<u8>) {
    let path = location.path.clone().join(name);
    location
        .store
        .put(&Path::from(path.as_ref()), PutPayload::from(bytes))
        .await
        .unwrap();
}

#[tokio::test]
async fn jsonl_inputs_are_listed_planned_and_read_from_s3() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("inputs");
    let options = server.options();
    let root = StoreLocation::parse_with("s3://inputs/pairs", &options).unwrap();
    let lines: String = (0..25).map(|i| format!("{{\"id\": {i}}}\n")).collect();
    put(&root, "a.jsonl", lines.clone().into_bytes()).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).unwrap();
    put(&root, "b.jsonl.gz", gz.finish().unwrap()).await;
    put(&root, "skip.txt", b"not matched".to_vec()).await;
    let inputs = list_inputs_with("s3://inputs/pairs/*.jsonl*", None, &options)
        .await
        .unwrap();
    assert_eq!(inputs.files.len(), 2);
    assert!(
        inputs.files[0]
            .file
            .url
            .starts_with("s3://inputs/pairs/a.jsonl")
    );
    let shards = plan_shards(&inputs, 10).await.unwrap();
    assert_eq!(shards.len(), 6);
    let mut ids = Vec::new();
    for shard in &shards {
        let mut items = read_shard(&inputs.location, shard, None, 1 << 20);
        while let Some(item) = items.next().await {
            let ReadItem::Record(record) = item.unwrap() else {
                panic!("unexpected reject")
            };
            let rubricmill_core::RawPayload::Json(value) = record.payload else {
                panic!("not json")
            };
            ids.push(value["id"].as_u64().unwrap());
        }
    }
    ids.sort_unstable();
    let expected: Vec<u64> = (0..25).flat_map(|i| [i, i]).collect();
    assert_eq!(ids, expected, "every line of both files exactly once");
}

#[tokio::test]
async fn conditional_puts_decide_the_commit_race() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("out");
    let output = StoreLocation::parse_with("s3://out/jobs", &server.options()).unwrap();
    let store = JobStore::at(&output, "race");
    let shard = ShardId("00112233445566778899aabb".into());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let store = store.clone();
        let shard = shard.clone();
        tasks.spawn(async move {
            let attempt = format!("attempt-{i}");
            let files = store
                .write_attempt(&shard, &attempt, Some(Bytes::from(attempt.clone())), None)
                .await
                .unwrap();
            let marker = CommitMarker {
                shard_id: shard.clone(),
                attempt_id: attempt.clone(),
                worker_id: "w".into(),
                committed_at: Utc::now(),
                part: files.part.map(|p| p.0),
                rejects_part: None,
                rows: 1,
                rejects: 0,
                bytes: 9,
                checksum: None,
                records: 1,
                stages: Default::default(),
                usage: Usage::default(),
            };
            (attempt, store.commit(&marker).await.unwrap())
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (attempt, outcome) = joined.unwrap();
        if outcome == CommitOutcome::Won {
            winners.push(attempt);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let marker = store.marker(&shard).await.unwrap().unwrap();
    assert_eq!(marker.attempt_id, winners[0]);
    let prefix = store.location().path.clone().join("parts");
    let listed: Vec<String> = store
        .location()
        .store
        .list(Some(&prefix))
        .map(|meta| meta.unwrap().location.to_string())
        .collect()
        .await;
    assert_eq!(listed.len(), 1, "losers removed their files: {listed:?}");
    assert!(listed[0].ends_with(&format!("{}.parquet", winners[0])));
}
