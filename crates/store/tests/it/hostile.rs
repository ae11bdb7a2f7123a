//! Hostile inputs: corrupt and truncated files, FIFOs, symlink loops, folder names that mean
//! something in a URL, globs that must not cross folders, oversized Parquet cells, and files
//! of near-empty records. Each becomes records and rejects with reasons; none blocks planning
//! or fails a shard.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use rubricmill_core::ShardUnit;
use rubricmill_store::{list_inputs, plan_shards};

use crate::{ReadAll, read_all, write};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Asserts that reading gave exactly one reject, at `location`, whose reason holds `reason`.
fn assert_one_reject(all: &ReadAll, location: &str, reason: &str) {
    assert_eq!(all.rejects.len(), 1, "{:?}", all.rejects);
    assert_eq!(all.rejects[0].0, location);
    assert!(all.rejects[0].1.contains(reason), "{:?}", all.rejects);
}

fn pairs_jsonl(count: usize) -> String {
    (0..count)
        .map(|i| format!("{{\"prompt\": \"question {i}\", \"chosen\": \"good {i}\", \"rejected\": \"bad {i}\"}}\n"))
        .collect()
}

#[tokio::test]
async fn a_truncated_gzip_document_is_a_reject_and_its_neighbours_are_read() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.md",
        b"# Survey A\n\nText of a good survey.\n",
    );
    let broken = gzip(
        "# Survey B\n\nText that will be cut. "
            .repeat(200)
            .as_bytes(),
    );
    write(dir.path(), "b.md.gz", &broken[..broken.len() / 2]);
    write(dir.path(), "c.md", b"# Survey C\n\nAnother good survey.\n");
    let all = read_all(&format!("{}/*", dir.path().display()), None, 3, 1 << 20).await;
    assert_eq!(all.shards, 1, "the three files are one shard");
    assert_eq!(all.records.len(), 2, "{:?}", all.rejects);
    assert_eq!(all.rejects.len(), 1);
    assert!(all.rejects[0].0.starts_with("b.md.gz"), "{:?}", all.rejects);
    assert!(
        all.rejects[0].1.contains("cannot decode"),
        "{:?}",
        all.rejects
    );
}

#[tokio::test]
async fn a_truncated_gzip_jsonl_plans_what_decodes_and_rejects_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let whole = gzip(pairs_jsonl(2_000).as_bytes());
    write(dir.path(), "pairs.jsonl.gz", &whole[..whole.len() * 2 / 3]);
    let url = dir.path().join("pairs.jsonl.gz");
    let all = read_all(url.to_str().unwrap(), None, 100, 1 << 20).await;
    assert_eq!(all.rejects.len(), 1, "{:?}", all.rejects);
    assert!(
        all.rejects[0]
            .1
            .contains("cannot decode the file from line"),
        "{:?}",
        all.rejects
    );
    assert!(
        (1..2_000).contains(&all.records.len()),
        "the lines before the cut are records: {}",
        all.records.len()
    );
    // The reject names the first line that did not decode, right after the last record.
    let last_record_line = all.records.len();
    assert_eq!(
        all.rejects[0].0,
        format!("pairs.jsonl.gz:line {}", last_record_line + 1)
    );
}

/// Writes `rows` pairs as Parquet with row groups of `group` rows; returns the file's path.
fn write_parquet(
    dir: &std::path::Path,
    name: &str,
    rows: usize,
    group: usize,
    big_row: Option<usize>,
) -> std::path::PathBuf {
    let schema = Arc::new(Schema::new(vec![
        Field::new("prompt", DataType::Utf8, false),
        Field::new("chosen", DataType::Utf8, false),
        Field::new("rejected", DataType::Utf8, false),
    ]));
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_dictionary_enabled(false)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(properties)).unwrap();
    let prompts: Vec<String> = (0..rows)
        .map(|i| match big_row {
            Some(big) if big == i => "x".repeat(50_000),
            _ => format!("question {i}"),
        })
        .collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(prompts.iter())),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("good {i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("bad {i}")),
            )),
        ],
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

#[tokio::test]
async fn a_corrupt_parquet_row_group_is_one_reject_and_the_others_are_read() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path(), "pairs.parquet", 12, 4, None);
    // Overwrite the first column chunk of the middle row group with garbage.
    let (start, len) = {
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        reader.metadata().row_group(1).column(0).byte_range()
    };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[start as usize..(start + len) as usize].fill(0xFF);
    std::fs::write(&path, &bytes).unwrap();

    let all = read_all(path.to_str().unwrap(), None, 12, 1 << 20).await;
    assert_eq!(
        all.records.len(),
        8,
        "row groups 0 and 2: {:?}",
        all.rejects
    );
    assert_one_reject(&all, "pairs.parquet:row 4", "row group 1");
}

#[tokio::test]
async fn a_file_that_is_not_parquet_is_a_reject_at_planning() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "junk.parquet",
        b"this is not a parquet file at all",
    );
    write_parquet(dir.path(), "good.parquet", 3, 10, None);
    let all = read_all(
        &format!("{}/*.parquet", dir.path().display()),
        None,
        10,
        1 << 20,
    )
    .await;
    assert_eq!(all.records.len(), 3);
    assert_one_reject(&all, "junk.parquet:document", "not a readable Parquet file");
}

#[tokio::test]
async fn parquet_rows_over_max_record_bytes_are_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path(), "pairs.parquet", 5, 10, Some(2));
    let all = read_all(path.to_str().unwrap(), None, 10, 10_000).await;
    assert_eq!(all.records.len(), 4);
    assert_one_reject(&all, "pairs.parquet:row 2", "input.max_record_bytes");
}

#[tokio::test]
async fn a_fifo_is_a_reject_and_does_not_hang_planning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.jsonl", pairs_jsonl(3).as_bytes());
    let fifo = dir.path().join("pipe.jsonl");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let all = read_all(
        &format!("{}/*.jsonl", dir.path().display()),
        None,
        10,
        1 << 20,
    )
    .await;
    assert_eq!(all.records.len(), 3);
    assert_one_reject(&all, "pipe.jsonl:document", "FIFO");
    // Named directly, too.
    let all = read_all(fifo.to_str().unwrap(), None, 10, 1 << 20).await;
    assert_eq!((all.records.len(), all.rejects.len()), (0, 1));
}

#[tokio::test]
async fn symlink_loops_are_not_followed_and_do_not_abort_listing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    write(&data, "a.jsonl", pairs_jsonl(1).as_bytes());
    write(&data.join("sub"), "b.jsonl", pairs_jsonl(2).as_bytes());
    std::os::unix::fs::symlink(&data, data.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("missing"), data.join("broken.jsonl")).unwrap();
    let inputs = list_inputs(&format!("{}/**/*.jsonl", data.display()), None)
        .await
        .unwrap();
    let names: Vec<&str> = inputs.files.iter().map(|f| f.path.as_ref()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with("data/a.jsonl") && names[1].ends_with("data/sub/b.jsonl"));
}

#[tokio::test]
async fn star_stays_in_its_folder_and_braces_pick_alternatives() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    for name in ["a.jsonl", "b.jsonl", "c.jsonl", "sub/d.jsonl"] {
        write(dir.path(), name, pairs_jsonl(1).as_bytes());
    }
    let names = |inputs: rubricmill_store::Inputs| -> Vec<String> {
        inputs
            .files
            .iter()
            .map(|f| f.path.as_ref().rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    let star = list_inputs(&format!("{}/*.jsonl", dir.path().display()), None)
        .await
        .unwrap();
    assert_eq!(names(star), ["a.jsonl", "b.jsonl", "c.jsonl"]);
    let braces = list_inputs(&format!("{}/{{a,c}}.jsonl", dir.path().display()), None)
        .await
        .unwrap();
    assert_eq!(names(braces), ["a.jsonl", "c.jsonl"]);
    let deep = list_inputs(&format!("{}/**/*.jsonl", dir.path().display()), None)
        .await
        .unwrap();
    assert_eq!(deep.files.len(), 4);
}

#[tokio::test]
async fn folders_named_with_url_characters_are_found() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["in#1", "p%41", "what?", "sp ace"] {
        let path = dir.path().join(folder);
        std::fs::create_dir_all(&path).unwrap();
        write(&path, "pairs.jsonl", pairs_jsonl(2).as_bytes());
        let all = read_all(
            path.join("pairs.jsonl").to_str().unwrap(),
            None,
            10,
            1 << 20,
        )
        .await;
        assert_eq!(all.records.len(), 2, "{folder}");
        let all = read_all(path.to_str().unwrap(), None, 10, 1 << 20).await;
        assert_eq!(all.records.len(), 2, "{folder} as a folder");
        let all = read_all(&format!("{}/*.jsonl", path.display()), None, 10, 1 << 20).await;
        assert_eq!(all.records.len(), 2, "{folder} with a glob");
    }
}

#[tokio::test]
async fn a_byte_order_mark_does_not_reject_the_first_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(pairs_jsonl(2).as_bytes());
    write(dir.path(), "bom.jsonl", &bytes);
    let all = read_all(
        dir.path().join("bom.jsonl").to_str().unwrap(),
        None,
        10,
        1 << 20,
    )
    .await;
    assert_eq!(
        (all.records.len(), all.rejects.len()),
        (2, 0),
        "{:?}",
        all.rejects
    );
}

#[tokio::test]
async fn a_file_of_near_empty_records_plans_a_bounded_number_of_shards() {
    let dir = tempfile::tempdir().unwrap();
    // About 3 MB of `{}` lines in a few KB of gzip: a million records.
    let bomb = gzip("{}\n".repeat(1_000_000).as_bytes());
    assert!(bomb.len() < 20_000, "{}", bomb.len());
    write(dir.path(), "bomb.jsonl.gz", &bomb);
    write(dir.path(), "good.jsonl", pairs_jsonl(5).as_bytes());
    let inputs = list_inputs(&format!("{}/*", dir.path().display()), None)
        .await
        .unwrap();
    let shards = plan_shards(&inputs, 2).await.unwrap();
    assert!(shards.len() < 10, "{} shards", shards.len());
    let unreadable: Vec<_> = shards
        .iter()
        .filter_map(|s| match &s.unit {
            ShardUnit::Unreadable { file, reason, .. } => Some((file.url.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(unreadable.len(), 1, "{unreadable:?}");
    assert!(unreadable[0].0.ends_with("bomb.jsonl.gz"));
    assert!(
        unreadable[0].1.contains("decompression bomb"),
        "{}",
        unreadable[0].1
    );
}
