//! `rubricmill export`: committed rows of a job, turned into a dataset for training teams.
//!
//! Two passes over the committed Parquet parts, in a fixed order (markers by shard id, rows in
//! file order), so the result is deterministic:
//! 1. decide every row: dropped (`kept = false`, an id seen before, an exact or near
//!    duplicate of an earlier row) or kept in a split (by the hash of the split key, so one
//!    source document never straddles two splits);
//! 2. write the kept rows per split in the Hugging Face layout `data/<split>-<i>-of-<n>.<ext>`
//!    (`researchqa-json`: one `<split>.json` at the top, as the released ResearchQA files
//!    `test.json`, `valid.json` are), then `README.md` (dataset card with YAML front matter)
//!    and `schema.json`.
//!
//! The work is CPU-bound, so it runs on the blocking pool; object-store I/O inside it is driven
//! through the runtime handle. Parquet output streams through multipart uploads, so memory is
//! bounded by a row group and a few upload chunks, not by the dataset.

pub mod card;
pub mod decide;
pub mod dedup;
mod sink;

use std::collections::{BTreeMap, HashSet};

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_core::{PipelineKind, Usage};
use rubricmill_mine::formats::{InterchangeFormat, convert};
use rubricmill_store::{CommitMarker, JobManifest, JobStore, StoreLocation};
use serde::Serialize;
use serde_json::Value;
use tokio::runtime::Handle;

use crate::sink::{Sink, SinkKind};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] rubricmill_store::StoreError),
    #[error("object store {path}: {source}")]
    ObjectStore {
        path: String,
        source: object_store::Error,
    },
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("writing {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("row {id:?} cannot be written as {format}: {reason}")]
    Convert {
        id: String,
        format: &'static str,
        reason: String,
    },
    #[error("bad export option: {0}")]
    Option(String),
    #[error("job {0:?} has no committed rows to export")]
    Empty(String),
}

/// What file format `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Parquet,
    Jsonl,
    Interchange(InterchangeFormat),
}

impl ExportFormat {
    /// The extension of the data files.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::Interchange(format) => format.extension(),
        }
    }

    pub fn parse(name: &str) -> Result<Self, ExportError> {
        match name {
            "parquet" => Ok(Self::Parquet),
            "jsonl" => Ok(Self::Jsonl),
            other => InterchangeFormat::parse(other).map(Self::Interchange).ok_or_else(|| {
                ExportError::Option(format!(
                    "unknown format {other:?}: parquet, jsonl, researchqa-json, openrubric or healthbench"
                ))
            }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl",
            Self::Interchange(format) => format.name(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// Split names and fractions, summing to 1.
    pub splits: Vec<(String, f64)>,
    /// Column whose value decides the split (default: `doc_id` for researchqa, `pair_id` for crg).
    pub split_key: Option<String>,
    pub exact_dedup: bool,
    /// Jaccard threshold of near-duplicate removal; `None` turns it off.
    pub near_dup_threshold: Option<f64>,
    /// Target size of one data file.
    pub target_file_bytes: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            format: ExportFormat::Parquet,
            splits: vec![
                ("train".into(), 0.9),
                ("validation".into(), 0.05),
                ("test".into(), 0.05),
            ],
            split_key: None,
            exact_dedup: true,
            near_dup_threshold: Some(0.8),
            target_file_bytes: 256 << 20,
        }
    }
}

/// Parses `train=0.9,validation=0.05,test=0.05`.
pub fn parse_splits(text: &str) -> Result<Vec<(String, f64)>, ExportError> {
    let mut splits = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, fraction) = part
            .split_once('=')
            .ok_or_else(|| ExportError::Option(format!("split {part:?} is not NAME=FRACTION")))?;
        let fraction: f64 = fraction.trim().parse().map_err(|_| {
            ExportError::Option(format!("split {name:?}: {fraction:?} is not a number"))
        })?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ExportError::Option(format!(
                "split name {name:?} must be letters, digits or '_'"
            )));
        }
        if !(0.0..=1.0).contains(&fraction) {
            return Err(ExportError::Option(format!(
                "split {name:?}: fraction must be in [0, 1]"
            )));
        }
        splits.push((name.to_owned(), fraction));
    }
    let total: f64 = splits.iter().map(|(_, f)| f).sum();
    if splits.is_empty() || (total - 1.0).abs() > 1e-6 {
        return Err(ExportError::Option(format!(
            "split fractions must sum to 1 (they sum to {total})"
        )));
    }
    Ok(splits)
}

/// What an export did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportReport {
    pub rows_read: u64,
    /// CRG rows whose rubric the consistency filter dropped (`kept = false`).
    pub not_kept: u64,
    pub duplicate_ids: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    pub rows_written: u64,
    pub splits: BTreeMap<String, SplitReport>,
    pub files: Vec<String>,
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitReport {
    pub rows: u64,
    pub files: u64,
    /// Bytes of the split's data files.
    pub bytes: u64,
}

/// Whether a row's text repeats one already kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextVerdict {
    Unique,
    Exact,
    Near,
}

/// A committed part and its rows, in export order.
struct Part {
    path: String,
}

/// Exports the committed rows of a job to `target`.
pub async fn export(
    job: JobStore,
    manifest: JobManifest,
    target: StoreLocation,
    options: ExportOptions,
) -> Result<ExportReport, ExportError> {
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        Exporter {
            handle,
            job,
            manifest,
            target,
            options,
        }
        .run()
    })
    .await
    .map_err(|e| ExportError::Write {
        path: "export".into(),
        reason: format!("export task failed: {e}"),
    })?
}

struct Exporter {
    handle: Handle,
    job: JobStore,
    manifest: JobManifest,
    target: StoreLocation,
    options: ExportOptions,
}

impl Exporter {
    fn pipeline(&self) -> PipelineKind {
        self.manifest.spec.pipeline
    }

    fn id_column(&self) -> &'static str {
        match self.pipeline() {
            PipelineKind::Researchqa => "id",
            PipelineKind::Crg => "pair_id",
        }
    }

    fn split_column(&self) -> String {
        self.options.split_key.clone().unwrap_or_else(|| {
            match self.pipeline() {
                PipelineKind::Researchqa => "doc_id",
                // A listwise record's pairs share one rubric id: they stay in one split.
                PipelineKind::Crg => "rubric_id",
            }
            .to_owned()
        })
    }

    fn run(self) -> Result<ExportReport, ExportError> {
        if let ExportFormat::Interchange(format) = self.options.format
            && format.pipeline() != self.pipeline()
        {
            return Err(ExportError::Option(format!(
                "{} holds {} rows; job {:?} is a {} job",
                format.name(),
                format.pipeline().as_str(),
                self.manifest.name,
                self.pipeline().as_str()
            )));
        }
        let markers = self.handle.block_on(self.job.markers())?;
        let parts: Vec<Part> = markers
            .iter()
            .filter_map(|m| m.part.clone())
            .map(|path| Part { path })
            .collect();
        if parts.is_empty() {
            return Err(ExportError::Empty(self.manifest.name.clone()));
        }
        let mut report = ExportReport::default();

        // Pass 1: decide.
        let split_column = self.split_column();
        // What pass 1 decided about each row, in export order: its split, or `None` when
        // it is dropped.
        let mut decided: Vec<Option<u8>> = Vec::new();
        let mut seen_ids = HashSet::new();
        let mut seen_texts = HashSet::new();
        let mut near = self
            .options
            .near_dup_threshold
            .map(dedup::NearDuplicates::new);
        // The text verdict of the last rubric judged (crg): the other pairs of a listwise
        // record (written next to each other) share its prompt and rubric and follow it,
        // rather than counting as duplicates of their own first pair.
        let mut last_rubric: Option<(String, TextVerdict)> = None;
        let mut schema: Option<SchemaRef> = None;
        // Pass 1 decodes only the columns its decisions read.
        let decision_columns = self.decision_columns();
        for part in &parts {
            let (part_schema, batches) = self.read_part(part, Some(&decision_columns))?;
            schema.get_or_insert(part_schema);
            for batch in batches {
                for row in rows_as_json(&batch, &part.path)? {
                    report.rows_read += 1;
                    let id = string_field(&row, self.id_column());
                    let split = split_of(&string_field(&row, &split_column), &self.options.splits);
                    let drop = if row.get("kept").and_then(Value::as_bool) == Some(false) {
                        report.not_kept += 1;
                        true
                    } else if !seen_ids.insert(dedup::exact_key(&id)) {
                        report.duplicate_ids += 1;
                        true
                    } else {
                        let rubric = (self.pipeline() == PipelineKind::Crg)
                            .then(|| string_field(&row, "rubric_id"));
                        let verdict = match (&last_rubric, &rubric) {
                            (Some((last, verdict)), Some(rubric)) if last == rubric => *verdict,
                            _ => {
                                let normalized =
                                    dedup::normalize(&dedup_text(self.pipeline(), &row));
                                let verdict = if self.options.exact_dedup
                                    && !seen_texts.insert(dedup::exact_key(&normalized))
                                {
                                    TextVerdict::Exact
                                } else if near
                                    .as_mut()
                                    .is_some_and(|near| near.is_duplicate(&normalized))
                                {
                                    TextVerdict::Near
                                } else {
                                    TextVerdict::Unique
                                };
                                if let Some(rubric) = rubric {
                                    last_rubric = Some((rubric, verdict));
                                }
                                verdict
                            }
                        };
                        match verdict {
                            TextVerdict::Exact => report.exact_duplicates += 1,
                            TextVerdict::Near => report.near_duplicates += 1,
                            TextVerdict::Unique => {}
                        }
                        verdict != TextVerdict::Unique
                    };
                    decided.push((!drop).then_some(split));
                }
            }
        }
        drop((seen_ids, seen_texts, near));

        // Pass 2: write.
        let schema = schema.ok_or_else(|| ExportError::Empty(self.manifest.name.clone()))?;
        let mut split_rows = vec![0u64; self.options.splits.len()];
        for split in decided.iter().flatten() {
            split_rows[*split as usize] += 1;
        }
        let committed_bytes: u64 = markers.iter().map(|m| m.bytes).sum();
        let bytes_per_row = committed_bytes as f64 / report.rows_read.max(1) as f64;
        let mut sinks = Vec::new();
        for ((name, _), rows) in self.options.splits.iter().zip(&split_rows) {
            let estimated = (*rows as f64 * bytes_per_row * self.size_factor()) as u64;
            let files = estimated
                .div_ceil(self.options.target_file_bytes.max(1))
                .max(1);
            let files = if self.single_file() {
                1
            } else {
                files.min((*rows).max(1))
            };
            sinks.push(Sink::new(
                self.sink_kind(),
                &self.target,
                name,
                files,
                *rows,
                schema.clone(),
                &self.file_metadata(),
            ));
        }
        let mut row_index = 0usize;
        for part in &parts {
            for batch in self.read_part(part, None)?.1 {
                let rows = batch.num_rows();
                let json = match self.options.format {
                    ExportFormat::Parquet => None,
                    _ => Some(rows_as_json(&batch, &part.path)?),
                };
                for (split, sink) in sinks.iter_mut().enumerate() {
                    let mask: BooleanArray = decided[row_index..row_index + rows]
                        .iter()
                        .map(|decision| Some(*decision == Some(split as u8)))
                        .collect();
                    if mask.true_count() == 0 {
                        continue;
                    }
                    match &json {
                        None => {
                            let selected = arrow_select::filter::filter_record_batch(&batch, &mask)
                                .map_err(|e| ExportError::Write {
                                    path: sink.name(),
                                    reason: e.to_string(),
                                })?;
                            sink.write_batch(&self.handle, &selected)?;
                        }
                        Some(values) => {
                            for (_, value) in
                                values.iter().enumerate().filter(|(r, _)| mask.value(*r))
                            {
                                let converted = self.convert(value)?;
                                if let Some(converted) = converted {
                                    sink.write_value(&self.handle, &converted)?;
                                }
                            }
                        }
                    }
                }
                row_index += rows;
            }
        }
        for (sink, (name, _)) in sinks.into_iter().zip(&self.options.splits) {
            let written = sink.finish(&self.handle)?;
            report.rows_written += written.rows;
            report.bytes_written += written.bytes;
            report.files.extend(written.files.iter().cloned());
            report.splits.insert(
                name.clone(),
                SplitReport {
                    rows: written.rows,
                    files: written.files.len() as u64,
                    bytes: written.bytes,
                },
            );
        }
        let usage = markers
            .iter()
            .fold(Usage::default(), |mut total, m: &CommitMarker| {
                total.add(&m.usage);
                total
            });
        let card = card::dataset_card(
            &self.manifest,
            &self.options,
            &self.split_column(),
            &report,
            &schema,
            &usage,
        );
        let schema_json = card::schema_json(&schema, self.options.format);
        for (name, text) in [("README.md", card), ("schema.json", schema_json)] {
            let bytes = text.into_bytes();
            report.bytes_written += bytes.len() as u64;
            sink::put(&self.handle, &self.target, name, bytes)?;
            report.files.push(name.to_owned());
        }
        Ok(report)
    }

    fn convert(&self, row: &Value) -> Result<Option<Value>, ExportError> {
        match self.options.format {
            ExportFormat::Interchange(format) => {
                convert(format, row).map_err(|reason| ExportError::Convert {
                    id: string_field(row, self.id_column()),
                    format: format.name(),
                    reason,
                })
            }
            _ => Ok(Some(row.clone())),
        }
    }

    fn sink_kind(&self) -> SinkKind {
        let extension = self.options.format.extension();
        match self.options.format {
            ExportFormat::Parquet => SinkKind::Parquet,
            ExportFormat::Jsonl => SinkKind::JsonLines(extension),
            ExportFormat::Interchange(format) => match format.layout() {
                rubricmill_mine::formats::Layout::JsonLines => SinkKind::JsonLines(extension),
                rubricmill_mine::formats::Layout::JsonArray => SinkKind::JsonArray(extension),
            },
        }
    }

    fn single_file(&self) -> bool {
        matches!(self.sink_kind(), SinkKind::JsonArray(_))
    }

    /// JSON is several times larger than zstd Parquet.
    fn size_factor(&self) -> f64 {
        if matches!(self.options.format, ExportFormat::Parquet) {
            1.0
        } else {
            4.0
        }
    }

    fn file_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("rubricmill.job".to_owned(), self.manifest.name.clone()),
            (
                "rubricmill.pipeline".to_owned(),
                self.pipeline().as_str().to_owned(),
            ),
            (
                "rubricmill.fingerprint".to_owned(),
                self.manifest.fingerprint.clone(),
            ),
            (
                "rubricmill.provider".to_owned(),
                self.manifest.spec.llm.provider.as_str().to_owned(),
            ),
            (
                "rubricmill.model".to_owned(),
                self.manifest.spec.llm.model.clone(),
            ),
        ])
    }

    /// The top-level columns pass 1 reads: the id, `kept`, the split key and the dedup text's.
    fn decision_columns(&self) -> Vec<String> {
        let mut columns = vec![
            self.id_column().to_owned(),
            "kept".to_owned(),
            self.split_column(),
        ];
        columns.extend(
            dedup_columns(self.pipeline())
                .iter()
                .map(|c| (*c).to_owned()),
        );
        columns
    }

    /// Reads a part: the file's whole schema, and its batches with only the top-level
    /// `columns` (all when `None`).
    fn read_part(
        &self,
        part: &Part,
        columns: Option<&[String]>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ExportError> {
        let read_error = |reason: String| ExportError::Read {
            path: part.path.clone(),
            reason,
        };
        let bytes = self.handle.block_on(self.job.read(&part.path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| read_error(e.to_string()))?;
        let schema = builder.schema().clone();
        let builder = match columns {
            None => builder,
            Some(names) => {
                let roots = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, field)| names.iter().any(|name| name == field.name()))
                    .map(|(index, _)| index);
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
                builder.with_projection(mask)
            }
        };
        let batches = builder
            .with_batch_size(8192)
            .build()
            .map_err(|e| read_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_error(e.to_string()))?;
        Ok((schema, batches))
    }
}

/// Rows of a batch as JSON objects (columns as fields), as Arrow's JSON writer renders them.
fn rows_as_json(batch: &RecordBatch, path: &str) -> Result<Vec<Value>, ExportError> {
    let mut buffer = Vec::with_capacity(batch.get_array_memory_size());
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buffer);
        writer
            .write(batch)
            .and_then(|()| writer.finish())
            .map_err(|e| ExportError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
    }
    buffer
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_slice(line).map_err(|e| ExportError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        })
        .collect()
}

fn string_field(row: &Value, column: &str) -> String {
    match row.get(column) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The columns [`dedup_text`] reads, and for crg the rubric id whose pairs share a verdict.
fn dedup_columns(pipeline: PipelineKind) -> &'static [&'static str] {
    match pipeline {
        PipelineKind::Researchqa => &["query", "rubric"],
        PipelineKind::Crg => &["prompt", "chosen", "rejected", "rubric", "rubric_id"],
    }
}

/// The text duplicates are judged on: the query and its rubric (researchqa); the prompt, both
/// responses and the rubric (crg).
fn dedup_text(pipeline: PipelineKind, row: &Value) -> String {
    let join = |list: Option<&Value>, field: &str| -> String {
        list.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get(field).and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    match pipeline {
        PipelineKind::Researchqa => {
            format!(
                "{} {}",
                string_field(row, "query"),
                join(row.get("rubric"), "rubric_item")
            )
        }
        PipelineKind::Crg => format!(
            "{} {} {} {}",
            join(row.get("prompt"), "content"),
            string_field(row, "chosen"),
            string_field(row, "rejected"),
            join(row.get("rubric"), "text")
        ),
    }
}

/// The split a key falls in: the hash of the key as a fraction in [0, 1), against the
/// cumulative split fractions.
fn split_of(key: &str, splits: &[(String, f64)]) -> u8 {
    let value = dedup::hash64(key.as_bytes());
    let fraction = (value >> 11) as f64 / (1u64 << 53) as f64;
    let mut cumulative = 0.0;
    for (index, (_, share)) in splits.iter().enumerate() {
        cumulative += share;
        if fraction < cumulative {
            return index as u8;
        }
    }
    (splits.len() - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_parse_and_must_sum_to_one() {
        let splits = parse_splits("train=0.8, validation=0.1,test=0.1").unwrap();
        assert_eq!(splits.len(), 3);
        assert!(parse_splits("train=0.8,test=0.1").is_err());
        assert!(parse_splits("train").is_err());
        assert!(parse_splits("tr ain=1").is_err());
    }

    #[test]
    fn split_assignment_is_stable_and_follows_the_fractions() {
        let splits = vec![("train".to_owned(), 0.8), ("test".to_owned(), 0.2)];
        let keys: Vec<String> = (0..10_000).map(|i| format!("doc-{i}")).collect();
        let assigned: Vec<u8> = keys.iter().map(|k| split_of(k, &splits)).collect();
        let again: Vec<u8> = keys.iter().map(|k| split_of(k, &splits)).collect();
        assert_eq!(assigned, again);
        let test_share = assigned.iter().filter(|s| **s == 1).count() as f64 / keys.len() as f64;
        assert!((0.18..0.22).contains(&test_share), "{test_share}");
    }

    #[test]
    fn the_dedup_text_needs_only_the_columns_pass_one_reads() {
        let rows = [
            (
                PipelineKind::Researchqa,
                serde_json::json!({
                    "id": "q1", "doc_id": "d1", "query": "How do caches age?",
                    "rubric": [{"rubric_item": "Names eviction.", "type": ["Explanation"]}],
                    "section_text_hash": "h", "provider": "simulated",
                }),
            ),
            (
                PipelineKind::Crg,
                serde_json::json!({
                    "pair_id": "p1", "rubric_id": "r1", "kept": true,
                    "prompt": [{"role": "user", "content": "What helps a cold?"}],
                    "chosen": "Rest and fluids.", "rejected": "Nothing.",
                    "rubric": [{"text": "Suggests rest.", "kind": "principle"}],
                    "attempt_log": [{"attempt": 1}], "verdicts": ["chosen"],
                }),
            ),
        ];
        for (pipeline, row) in rows {
            let projected: serde_json::Map<String, Value> = row
                .as_object()
                .unwrap()
                .iter()
                .filter(|(name, _)| dedup_columns(pipeline).contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let full = dedup_text(pipeline, &row);
            assert!(full.split_whitespace().count() >= 4, "{full}");
            assert_eq!(dedup_text(pipeline, &Value::Object(projected)), full);
        }
    }
}
