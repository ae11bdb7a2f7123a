//! Export over a job folder on the local file system: duplicates removed with their counts,
//! deterministic splits that keep each document in one split, the Hugging Face layout, the card.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use arrow_array::{RecordBatch, StringArray};
use chrono::Utc;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_core::{JobSpec, Provenance, ResearchQaRow, RubricItem, ShardId, Usage};
use rubricmill_export::{ExportFormat, ExportOptions, export};
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

async fn committed_job(dir: &Path) -> (JobStore, JobManifest) {
    let spec = JobSpec::parse(
        Path::new("t.toml"),
        "name = \"exp\"\npipeline = \"researchqa\"\n[input]\nurl = \"x\"\n[output]\nurl = \"o\"\n[llm]\nprovider = \"simulated\"\n[dataset]\nlicense = \"cc-by-4.0\"\n",
    )
    .unwrap();
    let output = StoreLocation::parse(dir.to_str().unwrap()).unwrap();
    let store = JobStore::at(&output, "exp");
    let mut rows = Vec::new();
    for i in 0..200 {
        rows.push(row(
            &format!("doc{}-s{}", i / 5, i % 5),
            &format!("doc{}", i / 5),
            &topic(i),
        ));
    }
    // An id seen before, an exact duplicate (other id, same text up to case and punctuation),
    // and a near duplicate (one word added).
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
    let metadata = BTreeMap::new();
    for (index, chunk) in rows.chunks(50).enumerate() {
        let shard = ShardId(format!("{index:024}"));
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
    // An uncommitted attempt: never exported.
    let orphan = encode_parquet(
        &researchqa_batch(&[row("orphan", "doc-orphan", "never exported")]).unwrap(),
        &metadata,
    )
    .unwrap();
    store
        .write_attempt(&ShardId("f".repeat(24)), "dead", Some(orphan), None)
        .await
        .unwrap();
    let manifest = JobManifest {
        name: "exp".into(),
        fingerprint: "fp".into(),
        planned_at: Utc::now(),
        input_root: "file:///".into(),
        spec,
        templates: BTreeMap::new(),
        shard_count: 0,
        expected_records: 0,
        chunks: vec![],
        inline_shards: vec![],
    };
    (store, manifest)
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
    for (split, counts) in &report.splits {
        let mut files: Vec<_> = std::fs::read_dir(target_dir.join("data"))
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
            for (id, doc) in read_ids(&target_dir.join("data").join(name)) {
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
    assert!(card.contains("path: data/train-*.parquet"));
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
    for entry in std::fs::read_dir(target_dir.join("data")).unwrap() {
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
        let text = std::fs::read_to_string(target_dir.join(format!("{split}.json")))
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
    assert!(
        !target_dir.join("data").exists(),
        "no data/ folder for a JSON array export"
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(target_dir.join("schema.json")).unwrap())
            .unwrap();
    assert_eq!(schema["fields"][6]["name"], "rubric");
    let card = std::fs::read_to_string(target_dir.join("README.md")).unwrap();
    assert!(card.contains("path: test.json"), "{card}");
}
