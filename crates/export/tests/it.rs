//! Export over a job folder on the local file system: duplicates removed with their counts,
//! deterministic splits that keep each document in one split, the Hugging Face layout, the card.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use arrow_array::{RecordBatch, StringArray};
use chrono::Utc;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_core::{JobSpec, Provenance, ResearchQaRow, RubricItem, ShardId, Usage};
use rubricmill_export::{
    ExportError, ExportFormat, ExportOptions, ExportReport, ExportRun, ExportStep, export,
    export_with,
};
use rubricmill_store::output::{encode_parquet, researchqa_batch};
use rubricmill_store::{CommitMarker, JobManifest, JobStore, StoreLocation};

fn row(id: &str, doc: &str, query: &str) -> ResearchQaRow {
    ResearchQaRow {
        id: id.into(),
        general_domain: Some("Computer Science".into()),
        subdomain: None,
        field: None,
        query: query.into(),
        date: None,
        rubric: vec![RubricItem {
            rubric_item: format!("Does the response explain {query}?"),
            types: vec!["Explanation".into()],
            citation_metadata: None,
        }],
        doc_id: doc.into(),
        doc_title: None,
        section_heading: "1 Intro".into(),
        heading_path: vec!["1 Intro".into()],
        section_text_hash: "h".into(),
        section_kind: "content".into(),
        section_text: Some(format!("Text about {query}.")),
        cited_references: Vec::new(),
        provenance: Provenance {
            provider: "simulated".into(),
            ..Provenance::default()
        },
    }
}

fn topic(i: usize) -> String {
    let words = [
        "caching",
        "indexes",
        "sensors",
        "stewardship",
        "fairness",
        "graphs",
        "chatbots",
        "fusion",
    ];
    format!(
        "how do {} and {} methods trade accuracy against cost in study number {i} across {} settings",
        words[i % 8],
        words[(i / 8) % 8],
        words[(i / 3) % 8]
    )
}

fn spec() -> JobSpec {
    JobSpec::parse(
        Path::new("t.toml"),
        "name = \"exp\"\npipeline = \"researchqa\"\n[input]\nurl = \"x\"\n[output]\nurl = \"o\"\n[llm]\nprovider = \"simulated\"\n[dataset]\nlicense = \"cc-by-4.0\"\n",
    )
    .unwrap()
}

fn manifest() -> JobManifest {
    JobManifest {
        name: "exp".into(),
        fingerprint: "fp".into(),
        planned_at: Utc::now(),
        input_root: "file:///".into(),
        spec: spec(),
        templates: BTreeMap::new(),
        shard_count: 0,
        expected_records: 0,
        chunks: vec![],
        inline_shards: vec![],
    }
}

/// The 203 rows of the test job: 200 distinct ones, then an id seen before, an exact
/// duplicate (other id, same text up to case and punctuation) and a near duplicate (one word
/// added).
fn planted_rows() -> Vec<ResearchQaRow> {
    let mut rows = Vec::new();
    for i in 0..200 {
        rows.push(row(
            &format!("doc{}-s{}", i / 5, i % 5),
            &format!("doc{}", i / 5),
            &topic(i),
        ));
    }
    rows.push(row(
        "doc0-s0",
        "doc0",
        "a different text under a repeated id",
    ));
    rows.push(row(
        "dup-exact",
        "docx",
        &topic(7).to_uppercase().replace(' ', "  "),
    ));
    rows.push(row("dup-near", "docy", &format!("{} today", topic(11))));
    rows
}

/// Commits `rows` in shards of 50, the first shard numbered `first_shard`.
async fn commit_rows(store: &JobStore, rows: &[ResearchQaRow], first_shard: usize) {
    let metadata = BTreeMap::new();
    for (index, chunk) in rows.chunks(50).enumerate() {
        let shard = ShardId(format!("{:024}", first_shard + index));
        let bytes = encode_parquet(&researchqa_batch(chunk).unwrap(), &metadata).unwrap();
        let size = bytes.len() as u64;
        let files = store
            .write_attempt(&shard, "a", Some(bytes), None)
            .await
            .unwrap();
        let marker = CommitMarker {
            shard_id: shard,
            attempt_id: "a".into(),
            worker_id: "w".into(),
            committed_at: Utc::now(),
            part: files.part.map(|p| p.0),
            rejects_part: None,
            rows: chunk.len() as u64,
            rejects: 0,
            bytes: size,
            checksum: None,
            records: chunk.len() as u64,
            stages: BTreeMap::new(),
            usage: Usage::default(),
        };
        store.commit(&marker).await.unwrap();
    }
}

async fn committed_job(dir: &Path) -> (JobStore, JobManifest) {
    let output = StoreLocation::parse(dir.to_str().unwrap()).unwrap();
    let store = JobStore::at(&output, "exp");
    commit_rows(&store, &planted_rows(), 0).await;
    // An uncommitted attempt: never exported.
    let orphan = encode_parquet(
        &researchqa_batch(&[row("orphan", "doc-orphan", "never exported")]).unwrap(),
        &BTreeMap::new(),
    )
    .unwrap();
    store
        .write_attempt(&ShardId("f".repeat(24)), "dead", Some(orphan), None)
        .await
        .unwrap();
    (store, manifest())
}

fn read_ids(path: &Path) -> Vec<(String, String)> {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone()
        };
        let (ids, docs) = (column("id"), column("doc_id"));
        for i in 0..batch.num_rows() {
            out.push((ids.value(i).to_owned(), docs.value(i).to_owned()));
        }
    }
    out
}

#[tokio::test]
async fn export_dedups_splits_by_document_and_writes_the_hf_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    let target_dir = dir.path().join("dataset");
    let target = StoreLocation::parse(target_dir.to_str().unwrap()).unwrap();
    let options = ExportOptions {
        target_file_bytes: 4096,
        ..ExportOptions::default()
    };
    let report = export(store.clone(), manifest.clone(), target, options.clone())
        .await
        .unwrap();
    assert_eq!(report.rows_read, 203);
    assert_eq!(report.duplicate_ids, 1);
    assert_eq!(report.exact_duplicates, 1);
    assert_eq!(report.near_duplicates, 1);
    assert_eq!(report.rows_written, 200);
    let mut seen = HashSet::new();
    let mut split_of_doc: HashMap<String, String> = HashMap::new();
    let mut total = 0;
    let version_dir = target_dir.join("data").join(&report.version);
    assert!(report.committed);
    for (split, counts) in &report.splits {
        let mut files: Vec<_> = std::fs::read_dir(&version_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&format!("{split}-")))
            .collect();
        files.sort();
        assert_eq!(files.len() as u64, counts.files);
        for (index, name) in files.iter().enumerate() {
            assert_eq!(
                name,
                &format!("{split}-{index:05}-of-{:05}.parquet", files.len())
            );
            for (id, doc) in read_ids(&version_dir.join(name)) {
                assert!(seen.insert(id.clone()), "{id} exported twice");
                let previous = split_of_doc.insert(doc.clone(), split.clone());
                assert!(
                    previous.is_none_or(|p| &p == split),
                    "{doc} is in two splits"
                );
                total += 1;
            }
        }
    }
    assert_eq!(total, 200);
    assert!(
        report.splits["train"].files > 1,
        "a small target file size makes several files"
    );
    assert!(
        !seen.contains("orphan"),
        "uncommitted attempts are never exported"
    );
    let card = std::fs::read_to_string(target_dir.join("README.md")).unwrap();
    assert!(card.starts_with("---\nlicense: cc-by-4.0\n"), "{card}");
    assert!(
        card.contains(&format!("path: data/{}/train-*.parquet", report.version)),
        "{card}"
    );
    assert!(card.contains("simulated provider"));
    assert!(target_dir.join("schema.json").exists());
    // the front matter is YAML a YAML parser reads back, with the bytes of every split
    let front = card
        .strip_prefix("---\n")
        .and_then(|rest| rest.split_once("\n---\n"))
        .map(|(yaml, _)| yaml)
        .expect("front matter");
    let front: rubricmill_export::card::FrontMatter = serde_norway::from_str(front).unwrap();
    for split in &front.dataset_info.splits {
        let reported = &report.splits[&split.name];
        assert_eq!(split.num_examples, reported.rows);
        assert_eq!(split.num_bytes, reported.bytes);
        assert!(split.num_bytes > 0);
    }

    // Exporting again gives the same split of every row.
    let again_dir = dir.path().join("again");
    let target = StoreLocation::parse(again_dir.to_str().unwrap()).unwrap();
    let again = export(store, manifest, target, options).await.unwrap();
    let counts = |r: &rubricmill_export::ExportReport| {
        r.splits
            .iter()
            .map(|(k, v)| (k.clone(), v.rows))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&report), counts(&again));
}

#[tokio::test]
async fn jsonl_export_and_dedup_switches() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    let target_dir = dir.path().join("jsonl");
    let target = StoreLocation::parse(target_dir.to_str().unwrap()).unwrap();
    let options = ExportOptions {
        format: ExportFormat::Jsonl,
        exact_dedup: false,
        near_dup_threshold: None,
        ..ExportOptions::default()
    };
    let report = export(store, manifest, target, options).await.unwrap();
    assert_eq!(report.rows_written, 202, "only the repeated id is dropped");
    let mut lines = 0;
    for entry in std::fs::read_dir(target_dir.join("data").join(&report.version)).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                value["rubric"][0]["rubric_item"]
                    .as_str()
                    .unwrap()
                    .starts_with("Does the response")
            );
            lines += 1;
        }
    }
    assert_eq!(lines, 202);
}

#[tokio::test]
async fn researchqa_json_export_writes_the_released_file_names_and_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    let target_dir = dir.path().join("rqa");
    let target = StoreLocation::parse(target_dir.to_str().unwrap()).unwrap();
    let options = ExportOptions {
        format: ExportFormat::parse("researchqa-json").unwrap(),
        splits: vec![("test".into(), 0.5), ("valid".into(), 0.5)],
        ..ExportOptions::default()
    };
    let report = export(store, manifest, target, options).await.unwrap();
    let mut read = 0;
    for split in ["test", "valid"] {
        let text = std::fs::read_to_string(
            target_dir
                .join("data")
                .join(&report.version)
                .join(format!("{split}.json")),
        )
        .unwrap_or_else(|e| panic!("{split}.json: {e}"));
        let items: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(items.len() as u64, report.splits[split].rows);
        for item in &items {
            for entry in item["rubric"].as_array().unwrap() {
                let mut keys: Vec<&str> = entry
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                keys.sort_unstable();
                assert_eq!(keys, ["citation_metadata", "rubric_item", "type"]);
                assert!(entry["type"].is_string());
            }
        }
        read += items.len();
    }
    assert_eq!(read as u64, report.rows_written);
    assert_eq!(
        std::fs::read_dir(target_dir.join("data").join(&report.version))
            .unwrap()
            .count(),
        2,
        "one JSON array per split"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target_dir.join("schema.json")).unwrap())
            .unwrap();
    assert_eq!(schema["fields"][6]["name"], "rubric");
    let card = std::fs::read_to_string(target_dir.join("README.md")).unwrap();
    assert!(
        card.contains(&format!("path: data/{}/test.json", report.version)),
        "{card}"
    );
}

/// Every Parquet file under `folder`, at any depth, sorted by path: what a `data/**` glob of
/// DuckDB or polars, or `datasets` with `data_dir`, would read.
fn parquet_files(folder: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The ids under the target's `data/` glob, in file-name order.
fn ids_in_glob(target: &Path) -> Vec<String> {
    parquet_files(&target.join("data"))
        .iter()
        .flat_map(|file| read_ids(file).into_iter().map(|(id, _)| id))
        .collect()
}

fn small_files() -> ExportOptions {
    ExportOptions {
        target_file_bytes: 4096,
        ..ExportOptions::default()
    }
}

fn local(path: &Path) -> StoreLocation {
    StoreLocation::parse(path.to_str().unwrap()).unwrap()
}

fn assert_card_names(target: &Path, report: &ExportReport) {
    let card = std::fs::read_to_string(target.join("README.md")).unwrap();
    assert!(
        card.contains(&format!("path: data/{}/train-*.parquet", report.version)),
        "{card}"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target.join("export.json")).unwrap())
            .unwrap();
    assert_eq!(record["version"], report.version.as_str());
}

#[tokio::test]
async fn reexport_after_more_shards_commit_leaves_only_the_new_version_in_the_glob() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::at(&local(dir.path()), "exp");
    let rows = planted_rows();
    commit_rows(&store, &rows[..100], 0).await;
    let target = dir.path().join("dataset");
    let first = export(store.clone(), manifest(), local(&target), small_files())
        .await
        .unwrap();
    assert_eq!(first.rows_written, 100);
    assert_eq!(ids_in_glob(&target).len(), 100);

    commit_rows(&store, &rows[100..], 2).await;
    let second = export(store.clone(), manifest(), local(&target), small_files())
        .await
        .unwrap();
    assert_ne!(first.version, second.version);
    assert_eq!(second.rows_written, 200);
    let ids = ids_in_glob(&target);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        200,
        "no row of the first version is left in the glob"
    );
    assert_eq!(unique.len(), 200);
    assert!(!target.join("data").join(&first.version).exists());
    assert!(!target.join(".staging").exists());
    assert_card_names(&target, &second);

    // The same rows and options again: the committed version stands, nothing is rewritten.
    let again = export(store, manifest(), local(&target), small_files())
        .await
        .unwrap();
    assert!(again.unchanged);
    assert_eq!(again.version, second.version);
    assert_eq!(ids_in_glob(&target), ids);
}

#[tokio::test]
async fn another_target_file_size_leaves_only_the_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    let target = dir.path().join("dataset");
    let small = export(
        store.clone(),
        manifest.clone(),
        local(&target),
        small_files(),
    )
    .await
    .unwrap();
    assert!(small.splits["train"].files > 1);
    let large = export(
        store,
        manifest,
        local(&target),
        ExportOptions {
            target_file_bytes: 64 << 20,
            ..ExportOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(large.splits["train"].files, 1);
    let files = parquet_files(&target.join("data"));
    assert_eq!(
        files.len() as u64,
        large.splits.values().map(|s| s.files).sum::<u64>()
    );
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            name.ends_with("-of-00001.parquet"),
            "{name} is an older file"
        );
    }
    assert_eq!(ids_in_glob(&target).len(), 200);
}

#[tokio::test]
async fn a_failed_or_killed_export_leaves_the_previous_version_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = JobStore::at(&local(dir.path()), "exp");
    let rows = planted_rows();
    commit_rows(&store, &rows[..100], 0).await;
    let target = dir.path().join("dataset");
    let first = export(store.clone(), manifest(), local(&target), small_files())
        .await
        .unwrap();
    let before = ids_in_glob(&target);
    let card = std::fs::read_to_string(target.join("README.md")).unwrap();
    commit_rows(&store, &rows[100..], 2).await;

    // Killed before its commit: one partition of two wrote its share, nobody committed.
    let run = |step| ExportRun { step, force: false };
    let partial = export_with(
        store.clone(),
        manifest(),
        local(&target),
        small_files(),
        run(ExportStep::Partition { index: 0, count: 2 }),
    )
    .await
    .unwrap();
    assert!(!partial.committed);
    assert!(partial.rows_written > 0);
    let merge = export_with(
        store.clone(),
        manifest(),
        local(&target),
        small_files(),
        run(ExportStep::Merge { count: 2 }),
    )
    .await;
    assert!(
        matches!(&merge, Err(ExportError::Incomplete(message)) if message.contains("[1]")),
        "{merge:?}"
    );

    // Failing mid-write: the staging folder cannot be created (a file is in its way).
    std::fs::remove_dir_all(target.join(".staging")).unwrap();
    std::fs::write(target.join(".staging"), b"in the way").unwrap();
    let failed = export(store.clone(), manifest(), local(&target), small_files()).await;
    assert!(failed.is_err(), "{failed:?}");

    assert_eq!(
        ids_in_glob(&target),
        before,
        "the glob still reads the first version"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("README.md")).unwrap(),
        card
    );
    assert_card_names(&target, &first);

    // The next export that succeeds replaces it and clears the leftovers.
    std::fs::remove_file(target.join(".staging")).unwrap();
    let second = export(store, manifest(), local(&target), small_files())
        .await
        .unwrap();
    assert_eq!(ids_in_glob(&target).len(), 200);
    assert_card_names(&target, &second);
}

#[tokio::test]
async fn targets_that_overlap_the_job_or_hold_other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    for inside in [
        dir.path().join("exp").join("dataset"),
        dir.path().to_owned(),
    ] {
        let refused = export(
            store.clone(),
            manifest.clone(),
            local(&inside),
            small_files(),
        )
        .await;
        match refused {
            Err(ExportError::Target(message)) => {
                assert!(message.contains("--target"), "{message}");
                assert!(message.contains("output folder"), "{message}");
            }
            other => panic!("{} was accepted: {other:?}", inside.display()),
        }
    }
    // A folder someone else filled: refused unless forced, then taken over.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(foreign.join("data")).unwrap();
    std::fs::write(
        foreign.join("data").join("train-00000-of-00001.parquet"),
        b"not ours",
    )
    .unwrap();
    let refused = export(
        store.clone(),
        manifest.clone(),
        local(&foreign),
        small_files(),
    )
    .await;
    assert!(
        matches!(&refused, Err(ExportError::Target(m)) if m.contains("--force") && m.contains("--target")),
        "{refused:?}"
    );
    let forced = export_with(
        store,
        manifest,
        local(&foreign),
        small_files(),
        ExportRun {
            step: ExportStep::Whole,
            force: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(ids_in_glob(&foreign).len() as u64, forced.rows_written);
    assert!(
        !foreign
            .join("data")
            .join("train-00000-of-00001.parquet")
            .exists()
    );
}

/// Rows of each split, in the order of the split's files.
fn rows_by_split(target: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in parquet_files(&target.join("data")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let split = name.split('-').next().unwrap().to_owned();
        out.entry(split)
            .or_default()
            .extend(read_ids(&file).into_iter().map(|(id, _)| id));
    }
    out
}

#[tokio::test]
async fn three_partitions_then_merge_equal_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (store, manifest) = committed_job(dir.path()).await;
    let whole_target = dir.path().join("whole");
    let whole = export(
        store.clone(),
        manifest.clone(),
        local(&whole_target),
        small_files(),
    )
    .await
    .unwrap();

    let parted = dir.path().join("parted");
    let mut reports = Vec::new();
    for index in [2, 0] {
        let step = ExportStep::Partition { index, count: 3 };
        let report = export_with(
            store.clone(),
            manifest.clone(),
            local(&parted),
            small_files(),
            ExportRun { step, force: false },
        )
        .await
        .unwrap();
        assert!(!report.committed, "partition {index} is not the last");
        reports.push(report);
    }
    assert!(!parted.join("README.md").exists());
    let last = export_with(
        store.clone(),
        manifest.clone(),
        local(&parted),
        small_files(),
        ExportRun {
            step: ExportStep::Partition { index: 1, count: 3 },
            force: false,
        },
    )
    .await
    .unwrap();
    assert!(last.committed, "the last partition to finish commits");
    // every partition wrote a share, and the shares add up
    reports.push(last.clone());
    assert!(reports.iter().take(2).all(|r| r.rows_written > 0));
    for (name, counts) in &whole.splits {
        assert_eq!(counts.rows, last.splits[name].rows, "split {name}");
    }
    assert_eq!(
        (
            last.rows_read,
            last.duplicate_ids,
            last.exact_duplicates,
            last.near_duplicates
        ),
        (
            whole.rows_read,
            whole.duplicate_ids,
            whole.exact_duplicates,
            whole.near_duplicates
        )
    );
    assert_eq!(rows_by_split(&parted), rows_by_split(&whole_target));
    assert!(!parted.join(".staging").exists());

    // A merge run again over a committed version changes nothing.
    let merged = export_with(
        store,
        manifest,
        local(&parted),
        small_files(),
        ExportRun {
            step: ExportStep::Merge { count: 3 },
            force: false,
        },
    )
    .await
    .unwrap();
    assert!(merged.unchanged);
    assert_eq!(rows_by_split(&parted), rows_by_split(&whole_target));
}

/// The ids of every Parquet object under `data/` of an S3 target, and the object names.
async fn s3_glob(target: &StoreLocation) -> (Vec<String>, Vec<String>) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let prefix = target.path.clone().join("data");
    let mut objects: Vec<_> = target
        .store
        .list(Some(&prefix))
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for object in objects {
        names.push(object.location.to_string());
        let bytes = target
            .store
            .get(&object.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let column = batch
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            ids.extend(column.iter().map(|v| v.unwrap().to_owned()));
        }
    }
    (ids, names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_reexports_and_partitions_leave_one_version_in_the_glob() {
    let Some(server) = rubricmill_testkit::S3Server::start() else {
        return;
    };
    server.create_bucket("jobs");
    server.create_bucket("datasets");
    let options = server.options();
    let output = StoreLocation::parse_with("s3://jobs/runs", &options).unwrap();
    let store = JobStore::at(&output, "exp");
    let rows = planted_rows();
    commit_rows(&store, &rows[..100], 0).await;
    let target = || StoreLocation::parse_with("s3://datasets/exp", &options).unwrap();
    let first = export(store.clone(), manifest(), target(), small_files())
        .await
        .unwrap();
    assert_eq!(s3_glob(&target()).await.0.len(), 100);

    // More shards commit; the export runs as three partitions.
    commit_rows(&store, &rows[100..], 2).await;
    let mut last = None;
    for index in 0..3 {
        let step = ExportStep::Partition { index, count: 3 };
        last = Some(
            export_with(
                store.clone(),
                manifest(),
                target(),
                small_files(),
                ExportRun { step, force: false },
            )
            .await
            .unwrap(),
        );
    }
    let last = last.unwrap();
    assert!(last.committed);
    let (ids, names) = s3_glob(&target()).await;
    assert_eq!(ids.len() as u64, last.rows_written);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert!(
        names
            .iter()
            .all(|n| n.contains(&format!("/data/{}/", last.version))),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains(&first.version)));
    // the staging area is gone and the card names the new version
    let staging: Vec<_> = {
        use futures::TryStreamExt;
        target()
            .store
            .list(Some(&target().path.clone().join(".staging")))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    };
    assert!(staging.is_empty(), "{staging:?}");
    let card = {
        use object_store::ObjectStoreExt;
        let t = target();
        t.store
            .get(&t.path.clone().join("README.md"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    let card = String::from_utf8(card.to_vec()).unwrap();
    assert!(card.contains(&format!("data/{}/train-*.parquet", last.version)));

    // A target inside the job folder on the same bucket is refused.
    let inside = StoreLocation::parse_with("s3://jobs/runs/exp/export", &options).unwrap();
    let refused = export(store, manifest(), inside, small_files()).await;
    assert!(
        matches!(refused, Err(ExportError::Target(_))),
        "{refused:?}"
    );
}
