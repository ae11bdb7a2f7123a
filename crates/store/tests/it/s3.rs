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

/// `rows` rows of `width` pseudo-random hex characters each: text zstd cannot shrink much.
fn hex_batch(rows: usize, width: usize, seed: &mut u64) -> arrow_array::RecordBatch {
    let values: Vec<String> = (0..rows)
        .map(|_| {
            (0..width / 16)
                .map(|_| {
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    format!("{:016x}", *seed)
                })
                .collect()
        })
        .collect();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "text",
        arrow_schema::DataType::Utf8,
        false,
    )]));
    arrow_array::RecordBatch::try_new(
        schema,
        vec![std::sync::Arc::new(arrow_array::StringArray::from(values))],
    )
    .unwrap()
}

fn rows_in(bytes: Bytes) -> usize {
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(|batch| batch.unwrap().num_rows())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_any_size_read_back_and_a_dropped_upload_is_aborted() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("parts");
    let output = StoreLocation::parse_with("s3://parts/jobs", &server.options()).unwrap();
    let store = JobStore::at(&output, "sizes");
    let shard = ShardId("0123456789abcdef01234567".into());
    let metadata = std::collections::BTreeMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15;

    // A small part (one PUT) and a large one (several upload chunks) read back whole, with
    // the size and checksum of what is stored.
    for (attempt, batches) in [("small", 1), ("large", 3)] {
        let rows = if attempt == "small" { 10 } else { 8192 };
        let mut part = store
            .begin_part(
                "parts",
                &shard,
                attempt,
                hex_batch(1, 16, &mut seed).schema(),
                &metadata,
            )
            .unwrap();
        for _ in 0..batches {
            part.write(hex_batch(rows, 1024, &mut seed)).await.unwrap();
        }
        let finished = part.finish().await.unwrap();
        let stored = store.read(&finished.relative).await.unwrap();
        assert_eq!(stored.len() as u64, finished.bytes, "{attempt}");
        assert_eq!(
            blake3::hash(&stored).to_hex().to_string(),
            finished.checksum,
            "{attempt}"
        );
        assert_eq!(rows_in(stored), rows * batches, "{attempt}");
    }
    assert!(
        store
            .read("parts/0123456789abcdef01234567/small.parquet")
            .await
            .is_ok()
            && server.open_multipart_uploads("parts") == 0,
        "finished parts leave no open upload"
    );

    // A part dropped after its upload has started (a shard handed back) aborts the upload.
    let mut part = store
        .begin_part(
            "parts",
            &shard,
            "dropped",
            hex_batch(1, 16, &mut seed).schema(),
            &metadata,
        )
        .unwrap();
    for _ in 0..2 {
        part.write(hex_batch(8192, 1024, &mut seed)).await.unwrap();
    }
    assert_eq!(
        server.open_multipart_uploads("parts"),
        1,
        "the upload started"
    );
    drop(part);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.open_multipart_uploads("parts") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped part's upload is still open"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        store
            .read("parts/0123456789abcdef01234567/dropped.parquet")
            .await
            .is_err(),
        "nothing of the dropped part is visible"
    );
}

/// A resume on S3: the markers are listed in pages of 1,000, each read once, and recorded in
/// the progress log; the next resume lists and reads the log alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_summaries_on_s3_list_in_pages_and_read_each_marker_only_once() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("resume");
    let options = server.options();
    let open = || {
        let output = StoreLocation::parse_with("s3://resume/out", &options).unwrap();
        JobStore::at(&output, "job")
    };
    let writer = open();
    let shards = 1_050;
    let commits = futures::stream::iter(0..shards)
        .map(|index| {
            let writer = writer.clone();
            async move {
                let marker = CommitMarker {
                    shard_id: ShardId(rubricmill_core::short_hash(
                        index.to_string().as_bytes(),
                        24,
                    )),
                    attempt_id: format!("attempt-{index}"),
                    worker_id: "w".into(),
                    committed_at: Utc::now(),
                    part: None,
                    rejects_part: None,
                    rows: index,
                    rejects: 0,
                    bytes: 0,
                    checksum: None,
                    records: 1,
                    stages: Default::default(),
                    usage: Usage::default(),
                };
                writer.commit(&marker).await.unwrap()
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(commits.iter().all(|c| *c == CommitOutcome::Won));

    let first = open();
    let summaries = first.committed_summaries().await.unwrap();
    assert_eq!(summaries.len(), shards as usize);
    assert_eq!(
        summaries.iter().map(|s| s.rows).sum::<u64>(),
        (0..shards).sum::<u64>()
    );
    let requests = first.requests();
    // `commits/` in 16 ranges side by side (about 66 markers, one page, each), one page of
    // `progress/`; every marker read once; one log file.
    assert_eq!(
        (requests.list, requests.get, requests.put),
        (17, shards, 1),
        "{requests:?}"
    );

    let second = open();
    assert_eq!(second.committed_summaries().await.unwrap(), summaries);
    let requests = second.requests();
    assert_eq!(
        (requests.list, requests.get, requests.put),
        (17, 1, 0),
        "{requests:?}"
    );
}

#[tokio::test]
async fn the_ranged_listing_of_markers_finds_each_once_whatever_its_first_character() {
    let Some(server) = S3Server::start() else {
        return;
    };
    server.create_bucket("ranges");
    let output = StoreLocation::parse_with("s3://ranges/out", &server.options()).unwrap();
    let store = JobStore::at(&output, "job");
    // The edges of the 16 ranges, and names no planner makes but a listing must not lose.
    let mut ids: Vec<String> = [
        "000000000000000000000000",
        "0fffffffffffffffffffffff",
        "100000000000000000000000",
        "9fffffffffffffffffffffff",
        "a00000000000000000000000",
        "efffffffffffffffffffffff",
        "f00000000000000000000000",
        "ffffffffffffffffffffffff",
        "-before-zero",
        "Upper",
        "shard-not-hex",
        "z-after-f",
    ]
    .map(str::to_owned)
    .to_vec();
    for id in &ids {
        let marker = CommitMarker {
            shard_id: ShardId(id.clone()),
            attempt_id: "a".into(),
            worker_id: "w".into(),
            committed_at: Utc::now(),
            part: None,
            rejects_part: None,
            rows: 0,
            rejects: 0,
            bytes: 0,
            checksum: None,
            records: 0,
            stages: Default::default(),
            usage: Usage::default(),
        };
        assert_eq!(store.commit(&marker).await.unwrap(), CommitOutcome::Won);
    }
    ids.sort();
    let listed: Vec<String> = store
        .committed_shards()
        .await
        .unwrap()
        .into_iter()
        .map(|shard| shard.0)
        .collect();
    assert_eq!(listed, ids);
}
