//! The plan's shard list in chunk files: order, integrity, plans of earlier versions, and gc.

use std::collections::BTreeMap;

use chrono::Utc;
use rubricmill_core::{FileRef, JobManifest, JobSpec, ShardSpec, ShardUnit};
use rubricmill_store::{JobStore, PlanWriter, SHARDS_PER_CHUNK};

fn shard(line: u64) -> ShardSpec {
    let file = FileRef {
        url: "file:///in/pairs.jsonl".into(),
        size: 1 << 30,
        etag: Some("e1".into()),
        last_modified: "2026-01-01T00:00:00Z".into(),
    };
    let unit = ShardUnit::Lines {
        file,
        first_line: line,
        line_count: 1,
        byte_range: Some((line * 100, line * 100 + 99)),
    };
    ShardSpec::new(unit, 1 + line % 3)
}

fn manifest(store_shards: rubricmill_store::PlanIndex) -> JobManifest {
    let spec = JobSpec::parse(
        std::path::Path::new("t.toml"),
        "name = \"plan\"\npipeline = \"crg\"\n[input]\nurl = \"x.jsonl\"\n[output]\nurl = \"o\"\n[llm]\nprovider = \"simulated\"\n",
    )
    .unwrap();
    JobManifest {
        name: "plan".into(),
        fingerprint: "fp".into(),
        planned_at: Utc::now(),
        input_root: "file:///".into(),
        spec,
        templates: BTreeMap::new(),
        shard_count: store_shards.shard_count,
        expected_records: store_shards.expected_records,
        chunks: store_shards.chunks,
        inline_shards: vec![],
    }
}

async fn write_plan(store: &JobStore, shards: &[ShardSpec]) -> rubricmill_store::PlanIndex {
    let mut writer = PlanWriter::new(store);
    // In uneven batches, as planning hands them over file by file.
    for batch in shards.chunks(777) {
        writer.extend(batch.to_vec()).await.unwrap();
    }
    writer.finish().await.unwrap()
}

#[tokio::test]
async fn a_plan_of_several_chunks_reads_back_whole_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    let total = 2 * SHARDS_PER_CHUNK as u64 + 123;
    let shards: Vec<ShardSpec> = (1..=total).map(shard).collect();
    let index = write_plan(&store, &shards).await;
    assert_eq!(index.shard_count, total);
    assert_eq!(
        index.expected_records,
        shards.iter().map(|s| s.expected_records).sum::<u64>()
    );
    let sizes: Vec<u64> = index.chunks.iter().map(|c| c.shards).collect();
    assert_eq!(
        sizes,
        vec![SHARDS_PER_CHUNK as u64, SHARDS_PER_CHUNK as u64, 123]
    );
    let manifest = manifest(index);
    store.create_manifest(&manifest).await.unwrap();
    let loaded = store.load_manifest().await.unwrap().unwrap();
    assert_eq!(loaded, manifest);
    let job_json = std::fs::metadata(dir.path().join("plan/job.json"))
        .unwrap()
        .len();
    assert!(
        job_json < 8 * 1024,
        "job.json holds the index only, not {total} shards: {job_json} bytes"
    );
    let read = store.all_planned_shards(&loaded).await.unwrap();
    assert_eq!(read, shards, "every shard, in plan order");
}

#[tokio::test]
async fn the_same_shards_make_the_same_chunk_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    let shards: Vec<ShardSpec> = (1..=50).map(shard).collect();
    let first = write_plan(&store, &shards).await;
    let second = write_plan(&store, &shards).await;
    assert_eq!(first, second);
    let files = std::fs::read_dir(dir.path().join("plan/plan"))
        .unwrap()
        .count();
    assert_eq!(files, 1, "a planner that plans again writes the same file");
    let other = write_plan(&store, &shards[1..]).await;
    assert_ne!(other.chunks[0].file, first.chunks[0].file);
}

#[tokio::test]
async fn a_damaged_chunk_is_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    let shards: Vec<ShardSpec> = (1..=30).map(shard).collect();
    let index = write_plan(&store, &shards).await;
    let chunk = index.chunks[0].clone();
    let path = dir.path().join("plan").join(&chunk.file);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let error = store.plan_chunk(&chunk).await.unwrap_err().to_string();
    assert!(error.contains("plan chunk damaged"), "{error}");
    assert!(error.contains(&chunk.file), "names the file: {error}");
}

#[tokio::test]
async fn a_plan_stored_inline_by_an_earlier_version_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    let shards: Vec<ShardSpec> = (1..=5).map(shard).collect();
    // job.json as versions before the chunked plan wrote it: the shard list inline, no counts.
    let mut old = serde_json::to_value(manifest(Default::default())).unwrap();
    let object = old.as_object_mut().unwrap();
    for field in ["shard_count", "expected_records", "chunks"] {
        object.remove(field);
    }
    object.insert("shards".into(), serde_json::to_value(&shards).unwrap());
    std::fs::create_dir_all(dir.path().join("plan")).unwrap();
    std::fs::write(
        dir.path().join("plan/job.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let loaded = store.load_manifest().await.unwrap().unwrap();
    assert_eq!(loaded.shard_count, 5);
    assert_eq!(
        loaded.expected_records,
        shards.iter().map(|s| s.expected_records).sum::<u64>()
    );
    assert_eq!(store.all_planned_shards(&loaded).await.unwrap(), shards);
}

#[tokio::test]
async fn gc_removes_chunks_no_plan_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::open(dir.path().to_str().unwrap(), "plan").unwrap();
    let shards: Vec<ShardSpec> = (1..=40).map(shard).collect();
    let kept = write_plan(&store, &shards).await;
    // A planner that lost the race for job.json left its chunk behind.
    let lost = write_plan(&store, &shards[..10]).await;
    store
        .create_manifest(&manifest(kept.clone()))
        .await
        .unwrap();
    let removed = store.gc(std::time::Duration::ZERO, false).await.unwrap();
    assert_eq!(removed, vec![lost.chunks[0].file.clone()]);
    let loaded = store.load_manifest().await.unwrap().unwrap();
    assert_eq!(store.all_planned_shards(&loaded).await.unwrap(), shards);
}
