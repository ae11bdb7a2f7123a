//! Readers per format: good records arrive in order with their locations; malformed lines,
//! invalid UTF-8, empty files and oversized records become rejects with reasons; nothing is
//! dropped silently and compression is seen through.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rubricmill_core::{InputFormat, RawPayload};
use serde_json::json;

use crate::{read_all, write};

const GOOD: &str = r#"{"prompt": "p1", "chosen": "a", "rejected": "b"}"#;

fn jsonl_with_problems() -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(GOOD.as_bytes());
    bytes.extend_from_slice(b"\n{\"prompt\": \"broken\", \n");
    bytes.extend_from_slice(b"\n   \n");
    bytes.extend_from_slice(b"{\"prompt\": \"bad \xff\xfe utf8\"}\r\n");
    bytes.extend_from_slice(b"42\n");
    bytes.extend_from_slice(format!("{{\"prompt\": \"{}\"}}\n", "x".repeat(3000)).as_bytes());
    bytes.extend_from_slice(GOOD.replace("p1", "p7").as_bytes());
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn jsonl_lines_become_records_or_rejects_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "pairs.jsonl", &jsonl_with_problems());
    let url = dir.path().join("pairs.jsonl");
    // Two records per shard: shard boundaries must not lose or repeat lines.
    let all = read_all(url.to_str().unwrap(), None, 2, 2048).await;
    assert!(all.shards >= 3, "{} shards", all.shards);
    let locations: Vec<&str> = all.records.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        locations,
        [
            "pairs.jsonl:line 1",
            "pairs.jsonl:line 6",
            "pairs.jsonl:line 8"
        ]
    );
    assert_eq!(
        all.records[2].1,
        RawPayload::Json(json!({"prompt": "p7", "chosen": "a", "rejected": "b"}))
    );
    assert_eq!(
        all.records[1].1,
        RawPayload::Json(json!(42)),
        "valid JSON that is not an object is the pipeline's call"
    );
    let rejects: Vec<(&str, &str)> = all
        .rejects
        .iter()
        .map(|(l, r)| (l.as_str(), r.as_str()))
        .collect();
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert_eq!(rejects[0].0, "pairs.jsonl:line 2");
    assert!(rejects[0].1.starts_with("invalid JSON"), "{}", rejects[0].1);
    assert_eq!(rejects[1].0, "pairs.jsonl:line 5");
    assert!(rejects[1].1.contains("invalid UTF-8"), "{}", rejects[1].1);
    assert_eq!(rejects[2].0, "pairs.jsonl:line 7");
    assert!(
        rejects[2].1.contains("over input.max_record_bytes"),
        "{}",
        rejects[2].1
    );
}

#[tokio::test]
async fn compressed_jsonl_reads_the_same_as_plain() {
    let dir = tempfile::tempdir().unwrap();
    let plain = jsonl_with_problems();
    write(dir.path(), "a.jsonl", &plain);
    write(dir.path(), "b.jsonl.gz", &gzip(&plain));
    write(
        dir.path(),
        "c.jsonl.zst",
        &zstd::encode_all(&plain[..], 3).unwrap(),
    );
    let strip = |all: crate::ReadAll| -> (Vec<String>, Vec<String>) {
        let records = all
            .records
            .iter()
            .map(|(l, p)| format!("{}|{p:?}", l.split_once(':').unwrap().1))
            .collect();
        let rejects = all
            .rejects
            .iter()
            .map(|(l, r)| format!("{}|{r}", l.split_once(':').unwrap().1))
            .collect();
        (records, rejects)
    };
    let base = dir.path().to_str().unwrap();
    let a = strip(read_all(&format!("{base}/a.jsonl"), None, 3, 2048).await);
    let b = strip(read_all(&format!("{base}/b.jsonl.gz"), None, 3, 2048).await);
    let c = strip(read_all(&format!("{base}/c.jsonl.zst"), None, 3, 2048).await);
    assert_eq!(a.0.len(), 3);
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[tokio::test]
async fn markdown_files_empty_and_invalid_utf8_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "docs/a.md", b"# Title\n\n# 1 Intro\n\nText.\n");
    write(dir.path(), "docs/b.md", b"  \n\n");
    write(dir.path(), "docs/c.md", b"# Title\n\xc3\x28 broken\n");
    write(
        dir.path(),
        "docs/nested/d.md.gz",
        &gzip(b"# Zipped\n\nBody.\n"),
    );
    write(dir.path(), "docs/skip.txt", b"not matched");
    let pattern = format!("{}/docs/**/*.md*", dir.path().to_str().unwrap());
    let all = read_all(&pattern, Some(InputFormat::Markdown), 2, 1 << 20).await;
    assert_eq!(all.shards, 2);
    let names: Vec<&str> = all.records.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, ["a.md:document", "d.md.gz:document"]);
    assert_eq!(
        all.records[1].1,
        RawPayload::Text("# Zipped\n\nBody.\n".into())
    );
    assert_eq!(
        all.rejects,
        vec![
            ("b.md:document".to_owned(), "empty file".to_owned()),
            (
                "c.md:document".to_owned(),
                "invalid UTF-8 at byte 8".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn json_files_hold_one_record_or_an_array_of_records() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "one.json",
        br#"{"id": "s1", "title": "T", "sections": []}"#,
    );
    write(dir.path(), "many.json", br#"[{"id": "a"}, {"id": "b"}]"#);
    write(dir.path(), "bad.json", br#"{"id": "#);
    let all = read_all(
        &format!("{}/*.json", dir.path().to_str().unwrap()),
        None,
        10,
        1 << 20,
    )
    .await;
    let names: Vec<&str> = all.records.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        names,
        [
            "many.json:element 0",
            "many.json:element 1",
            "one.json:document"
        ]
    );
    assert_eq!(all.rejects.len(), 1);
    assert_eq!(all.rejects[0].0, "bad.json:document");
    assert!(all.rejects[0].1.starts_with("invalid JSON"));
}

#[tokio::test]
async fn parquet_rows_are_read_by_row_group_shards() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("prompt", DataType::Utf8, false),
        Field::new("chosen", DataType::Utf8, false),
        Field::new("rejected", DataType::Utf8, true),
    ]));
    let path = dir.path().join("pairs.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(4))
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
    let prompts: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(prompts.iter())),
            Arc::new(StringArray::from_iter_values(
                prompts.iter().map(|p| format!("{p}-good")),
            )),
            Arc::new(StringArray::from_iter(
                (0..10).map(|i| (i != 3).then(|| format!("p{i}-bad"))),
            )),
        ],
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let all = read_all(path.to_str().unwrap(), None, 4, 1 << 20).await;
    assert_eq!(all.shards, 3, "row groups of 4, 4 and 2 rows");
    assert_eq!(all.records.len(), 10);
    assert!(all.rejects.is_empty());
    assert_eq!(all.records[9].0, "pairs.parquet:row 9");
    assert_eq!(
        all.records[9].1,
        RawPayload::Json(json!({"prompt": "p9", "chosen": "p9-good", "rejected": "p9-bad"}))
    );
    assert_eq!(
        all.records[3].1,
        RawPayload::Json(json!({"prompt": "p3", "chosen": "p3-good"})),
        "nulls are absent fields"
    );
}

#[tokio::test]
async fn planning_is_deterministic_and_a_missing_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write(
            dir.path(),
            &format!("part-{i}.jsonl"),
            format!("{GOOD}\n{GOOD}\n{GOOD}\n").as_bytes(),
        );
    }
    let url = format!("{}/*.jsonl", dir.path().to_str().unwrap());
    let plan = |url: String| async move {
        let inputs = rubricmill_store::list_inputs(&url, None).await.unwrap();
        rubricmill_store::plan_shards(&inputs, 2)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>()
    };
    let first = plan(url.clone()).await;
    assert_eq!(first.len(), 10);
    assert_eq!(first, plan(url.clone()).await);
    let unique: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(unique.len(), first.len());
    let missing = rubricmill_store::list_inputs(
        &format!("{}/nothing/*.jsonl", dir.path().to_str().unwrap()),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        missing.to_string().contains("no input files match"),
        "{missing}"
    );
}
