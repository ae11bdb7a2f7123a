//! `rubricmill export`: committed rows of a job, turned into a dataset for training teams.
//!
//! Two passes over the committed Parquet parts, in a fixed order (markers by shard id, rows in
//! file order), so the result is deterministic; parts are read ahead ([`reader`]):
//! 1. decide every row ([`decide`], memory bounded by spilling to local files): dropped
//!    (`kept = false`, an id seen before, an exact or near duplicate of an earlier row) or
//!    kept in a split (by the hash of the split key, so one source document never straddles
//!    two splits);
//! 2. write the kept rows per split into the target's staging area; Parquet output streams
//!    through multipart uploads, so memory is bounded by a row group and a few upload chunks.
//!
//! The target is written as a new version ([`target`]): staged files move to
//! `data/<version>/<split>-<i>-of-<n>.<ext>`, then `README.md` (dataset card with YAML front
//! matter naming that folder), `schema.json` and `export.json` are written, then older
//! versions are removed. The write pass can be split over processes ([`ExportStep`]).
//!
//! The work is CPU-bound, so it runs on the blocking pool; object-store I/O inside it is driven
//! through the runtime handle.

pub mod card;
pub mod decide;
pub mod dedup;
pub mod interchange;
pub mod reader;
mod sink;
pub mod target;

use std::collections::BTreeMap;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_core::{PipelineKind, Usage};
use rubricmill_mine::formats::{InterchangeFormat, Layout, convert_all};
use rubricmill_store::{JobManifest, JobStore, MarkerSummary, StoreLocation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::runtime::Handle;

use crate::decide::{Decider, Decisions, RowFacts};
use crate::reader::PartReader;
use crate::sink::{Sink, SinkKind};
use crate::target::{Commit, PartitionDone, StagedSplit, Target};

/// Splits an export can have at most (a verdict byte holds the split).
const MAX_SPLITS: usize = 200;

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
    #[error("{0}")]
    Target(String),
    #[error("export not complete: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Spill(#[from] decide::SpillError),
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
            other => InterchangeFormat::parse(other)
                .map(Self::Interchange)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        InterchangeFormat::ALL.iter().map(|f| f.name()).collect();
                    ExportError::Option(format!(
                        "unknown format {other:?}: parquet, jsonl, {}",
                        names.join(", ")
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
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportReport {
    /// The version written (`data/<version>/` in the target).
    #[serde(default)]
    pub version: String,
    /// Whether this run committed the version (a partition that leaves the commit to the last
    /// one to finish did not).
    #[serde(default)]
    pub committed: bool,
    /// The version was already the committed one: nothing was written.
    #[serde(default)]
    pub unchanged: bool,
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SplitReport {
    pub rows: u64,
    pub files: u64,
    /// Bytes of the split's data files.
    pub bytes: u64,
}

/// How an export run divides its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStep {
    /// One process: decide, write, commit.
    Whole,
    /// Partition `index` of `count`: decide (every partition makes the same decisions),
    /// write this partition's share of the rows to the staging area; the partition that finds
    /// every other one done commits.
    Partition { index: u32, count: u32 },
    /// Commit the `count` partitions already written.
    Merge { count: u32 },
}

/// How an export is run.
#[derive(Debug, Clone, Copy)]
pub struct ExportRun {
    pub step: ExportStep,
    /// Write into a non-empty target that has no `export.json` (replacing its `data/`).
    pub force: bool,
}

impl Default for ExportRun {
    fn default() -> Self {
        Self {
            step: ExportStep::Whole,
            force: false,
        }
    }
}

/// Exports the committed rows of a job to `target` in one process.
pub async fn export(
    job: JobStore,
    manifest: JobManifest,
    target: StoreLocation,
    options: ExportOptions,
) -> Result<ExportReport, ExportError> {
    export_with(job, manifest, target, options, ExportRun::default()).await
}

/// Exports the committed rows of a job to `target`, as one step of `run`.
pub async fn export_with(
    job: JobStore,
    manifest: JobManifest,
    target: StoreLocation,
    options: ExportOptions,
    run: ExportRun,
) -> Result<ExportReport, ExportError> {
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        Exporter {
            target: Target::new(target, handle.clone()),
            handle,
            job,
            manifest,
            options,
            run,
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
    target: Target,
    options: ExportOptions,
    run: ExportRun,
}

/// What the decide pass found.
struct Decided {
    decisions: Decisions,
    schema: SchemaRef,
    /// Rows of each part, in export order.
    part_rows: Vec<u64>,
}

impl Exporter {
    fn pipeline(&self) -> PipelineKind {
        self.manifest.spec.pipeline
    }

    fn id_column(&self) -> &'static str {
        match self.pipeline() {
            PipelineKind::Researchqa => "id",
            PipelineKind::Crg => "pair_id",
            PipelineKind::Reference | PipelineKind::Nuggets | PipelineKind::Score => "id",
        }
    }

    fn split_column(&self) -> String {
        self.options.split_key.clone().unwrap_or_else(|| {
            match self.pipeline() {
                PipelineKind::Researchqa => "doc_id",
                // A listwise record's pairs share one rubric id: they stay in one split.
                PipelineKind::Crg => "rubric_id",
                PipelineKind::Reference | PipelineKind::Nuggets | PipelineKind::Score => "id",
            }
            .to_owned()
        })
    }

    fn partitions(&self) -> u32 {
        match self.run.step {
            ExportStep::Whole => 1,
            ExportStep::Partition { count, .. } | ExportStep::Merge { count } => count,
        }
    }

    fn check_options(&self) -> Result<(), ExportError> {
        if let ExportFormat::Interchange(format) = self.options.format
            && !format.accepts(self.pipeline())
        {
            return Err(ExportError::Option(format!(
                "{} holds {} rows; job {:?} is a {} job",
                format.name(),
                format.pipelines_text(),
                self.manifest.name,
                self.pipeline().as_str()
            )));
        }
        if self.options.splits.len() > MAX_SPLITS {
            return Err(ExportError::Option(format!("at most {MAX_SPLITS} splits")));
        }
        let count = self.partitions();
        if count == 0 {
            return Err(ExportError::Option(
                "--partitions must be at least 1".into(),
            ));
        }
        if let ExportStep::Partition { index, count } = self.run.step
            && index >= count
        {
            return Err(ExportError::Option(format!(
                "--partition {index} is not below --partitions {count}"
            )));
        }
        if count > 1 && self.single_file() {
            return Err(ExportError::Option(format!(
                "{} writes one file per split, which one process writes: use --partitions 1",
                self.options.format.name()
            )));
        }
        Ok(())
    }

    fn run(self) -> Result<ExportReport, ExportError> {
        self.check_options()?;
        let committed = self.target.check(&self.job, self.run.force)?;
        // The progress log summarises the markers, so a large job's export reads a few files
        // and the markers the log lacks, not one marker per shard; nothing is written to the
        // job's folder.
        let mut markers = self.handle.block_on(self.job.summaries(false))?;
        markers.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        let parts: Vec<String> = markers.iter().filter_map(|m| m.part.clone()).collect();
        if parts.is_empty() {
            return Err(ExportError::Empty(self.manifest.name.clone()));
        }
        let version = self.version(&markers);
        if let Some(commit) = committed
            && commit.version == version
            && !self.run.force
        {
            tracing::info!(version = %version, target = %self.target.url(), "export unchanged: this version is already committed");
            let mut report = commit.report;
            report.unchanged = true;
            return Ok(report);
        }
        let count = self.partitions();
        match self.run.step {
            ExportStep::Merge { count } => self.commit(&version, count, &markers),
            ExportStep::Whole => {
                self.write_partition(&version, 0, 1, &markers, &parts)?;
                self.commit(&version, 1, &markers)
            }
            ExportStep::Partition { index, .. } => {
                let done = self.write_partition(&version, index, count, &markers, &parts)?;
                let (_, missing) = self.target.partitions_done(&version, count)?;
                if missing.is_empty() {
                    return self.commit(&version, count, &markers);
                }
                tracing::info!(partition = index, missing = ?missing, version = %version, "partition written; the last partition to finish commits");
                Ok(partition_report(&version, &done))
            }
        }
    }

    /// The version an export of these markers with these options is: a hash of both, so every
    /// partition of one export names the same version without talking to the others.
    fn version(&self, markers: &[MarkerSummary]) -> String {
        let mut hasher = blake3::Hasher::new();
        let options = format!(
            "{}|{:?}|{:?}|{}|{:?}|{}|{}|{}",
            self.options.format.name(),
            self.options.splits,
            self.options.split_key,
            self.options.exact_dedup,
            self.options.near_dup_threshold,
            self.options.target_file_bytes,
            self.partitions(),
            self.manifest.fingerprint,
        );
        hasher.update(options.as_bytes());
        for marker in markers {
            hasher.update(marker.shard_id.0.as_bytes());
            hasher.update(b"/");
            hasher.update(marker.attempt_id.as_bytes());
            hasher.update(b"\n");
        }
        format!("v{}", &hasher.finalize().to_hex()[..16])
    }

    /// Pass 1: the verdict of every row, from the decision columns of every part.
    fn decide(&self, markers: &[MarkerSummary], parts: &[String]) -> Result<Decided, ExportError> {
        let expected_rows: u64 = markers.iter().map(|m| m.rows).sum();
        let near = self.options.near_dup_threshold;
        let mut decider = Decider::new(expected_rows, near.is_some(), decide::PARTITION_ROWS)?;
        let split_column = self.split_column();
        let decision_columns = self.decision_columns();
        let mut schema: Option<SchemaRef> = None;
        let mut part_rows = Vec::with_capacity(parts.len());
        let mut reader = PartReader::start(&self.handle, &self.job, parts.to_vec());
        while let Some(part) = reader.next_part() {
            let (path, bytes) = part?;
            let (part_schema, batches) = decode_part(&path, bytes, Some(&decision_columns))?;
            schema.get_or_insert(part_schema);
            let mut rows = 0u64;
            for batch in batches {
                for row in rows_as_json(&batch, &path)? {
                    rows += 1;
                    let facts = self.facts(&row, &split_column, near.is_some());
                    decider.push(&facts)?;
                }
            }
            part_rows.push(rows);
        }
        let decisions = decider.finish(self.options.exact_dedup, near)?;
        let schema = schema.ok_or_else(|| ExportError::Empty(self.manifest.name.clone()))?;
        Ok(Decided {
            decisions,
            schema,
            part_rows,
        })
    }

    fn facts(&self, row: &Value, split_column: &str, near: bool) -> RowFacts {
        let not_kept = row.get("kept").and_then(Value::as_bool) == Some(false);
        let id = dedup::exact_key(&string_field(row, self.id_column()));
        let split = split_of(&string_field(row, split_column), &self.options.splits);
        let rubric = (self.pipeline() == PipelineKind::Crg)
            .then(|| dedup::exact_key(&string_field(row, "rubric_id")));
        if not_kept {
            return RowFacts {
                not_kept,
                id,
                rubric,
                text: 0,
                signature: None,
                split,
            };
        }
        let normalized = dedup::normalize(&dedup_text(self.pipeline(), row));
        RowFacts {
            not_kept,
            id,
            rubric,
            text: dedup::exact_key(&normalized),
            signature: near.then(|| dedup::signature(&normalized)),
            split,
        }
    }

    /// The parts partition `index` of `count` writes: a contiguous run in export order, cut so
    /// each partition has about the same number of rows. Returns the range and the rows before
    /// it.
    fn share(part_rows: &[u64], index: u32, count: u32) -> (std::ops::Range<usize>, u64) {
        let total: u64 = part_rows.iter().sum();
        let owner = |before: u64| -> u32 {
            if total == 0 {
                0
            } else {
                ((u128::from(before) * u128::from(count)) / u128::from(total)) as u32
            }
        };
        let mut before = 0u64;
        let mut start = None;
        let mut end = 0;
        let mut rows_before = 0;
        for (i, rows) in part_rows.iter().enumerate() {
            let mine = owner(before) == index;
            if mine && start.is_none() {
                start = Some(i);
                rows_before = before;
            }
            if mine {
                end = i + 1;
            }
            before += rows;
        }
        match start {
            Some(start) => (start..end, rows_before),
            None => (0..0, 0),
        }
    }

    /// Pass 2 of one partition: its share of the kept rows into the staging area.
    fn write_partition(
        &self,
        version: &str,
        index: u32,
        count: u32,
        markers: &[MarkerSummary],
        parts: &[String],
    ) -> Result<PartitionDone, ExportError> {
        let decided = self.decide(markers, parts)?;
        let decisions = &decided.decisions;
        let (range, rows_before) = Self::share(&decided.part_rows, index, count);
        let range_rows: u64 = decided.part_rows[range.clone()].iter().sum();
        // rows of each split in this share
        let mut split_rows = vec![0u64; self.options.splits.len()];
        {
            let mut verdicts = decisions.reader()?;
            verdicts.skip(rows_before)?;
            let mut left = range_rows;
            while left > 0 {
                let take = left.min(1 << 16);
                for verdict in verdicts.next_batch(take as usize)? {
                    if let Some(split) = verdict.split() {
                        split_rows[split as usize] += 1;
                    }
                }
                left -= take;
            }
        }
        let part_bytes: u64 = markers
            .iter()
            .filter(|m| m.part.is_some())
            .skip(range.start)
            .take(range.len())
            .map(|m| m.bytes)
            .sum();
        let bytes_per_row = part_bytes as f64 / range_rows.max(1) as f64;
        let folder = self.target.partition_folder(version, index);
        let interchange_schema = self.interchange_schema();
        let sink_schema = interchange_schema
            .clone()
            .unwrap_or_else(|| decided.schema.clone());
        let mut encoder = interchange_schema
            .map(interchange::Encoder::new)
            .transpose()
            .map_err(|e| ExportError::Write {
                path: self.options.format.name().to_owned(),
                reason: e.to_string(),
            })?;
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
                &folder,
                name,
                files,
                *rows,
                sink_schema.clone(),
                &self.file_metadata(),
            ));
        }
        let mut verdicts = decisions.reader()?;
        verdicts.skip(rows_before)?;
        let mut reader = PartReader::start(&self.handle, &self.job, parts[range].to_vec());
        while let Some(part) = reader.next_part() {
            let (path, bytes) = part?;
            for batch in decode_part(&path, bytes, None)?.1 {
                let rows = batch.num_rows();
                let batch_verdicts = verdicts.next_batch(rows)?;
                let json = match self.options.format {
                    ExportFormat::Parquet => None,
                    _ => Some(rows_as_json(&batch, &path)?),
                };
                for (split, sink) in sinks.iter_mut().enumerate() {
                    let mask: BooleanArray = batch_verdicts
                        .iter()
                        .map(|verdict| Some(verdict.split() == Some(split as u8)))
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
                            let mut converted = Vec::new();
                            for (_, value) in
                                values.iter().enumerate().filter(|(r, _)| mask.value(*r))
                            {
                                converted.extend(self.convert(value)?);
                            }
                            match encoder.as_mut() {
                                Some(encoder) => {
                                    let encoded = encoder.encode(&converted).map_err(|e| {
                                        ExportError::Write {
                                            path: sink.name(),
                                            reason: format!(
                                                "encoding {} rows: {e}",
                                                self.options.format.name()
                                            ),
                                        }
                                    })?;
                                    if let Some(batch) = encoded {
                                        sink.write_batch(&self.handle, &batch)?;
                                    }
                                }
                                None => {
                                    for value in &converted {
                                        sink.write_value(&self.handle, value)?;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut splits = Vec::new();
        for (sink, (name, _)) in sinks.into_iter().zip(&self.options.splits) {
            let written = sink.finish(&self.handle)?;
            splits.push(StagedSplit {
                split: name.clone(),
                files: written.files,
                rows: written.rows,
                bytes: written.bytes,
            });
        }
        let done = PartitionDone {
            index,
            count,
            rows_read: decisions.rows,
            not_kept: decisions.not_kept,
            duplicate_ids: decisions.duplicate_ids,
            exact_duplicates: decisions.exact_duplicates,
            near_duplicates: decisions.near_duplicates,
            splits,
        };
        self.target.write_done(version, &done)?;
        Ok(done)
    }

    /// Moves the staged files of every partition to `data/<version>/`, then writes the card,
    /// `schema.json` and `export.json`, then removes older versions.
    fn commit(
        &self,
        version: &str,
        count: u32,
        markers: &[MarkerSummary],
    ) -> Result<ExportReport, ExportError> {
        let (done, missing) = self.target.partitions_done(version, count)?;
        if !missing.is_empty() {
            return Err(ExportError::Incomplete(format!(
                "partitions {missing:?} of {count} have not written version {version} to {}/{}/{version}; \
                 run them with the same options over the same committed shards first",
                self.target.url(),
                target::STAGING
            )));
        }
        let first = &done[0];
        if done.iter().any(|d| {
            (
                d.rows_read,
                d.not_kept,
                d.duplicate_ids,
                d.exact_duplicates,
                d.near_duplicates,
            ) != (
                first.rows_read,
                first.not_kept,
                first.duplicate_ids,
                first.exact_duplicates,
                first.near_duplicates,
            )
        }) {
            return Err(ExportError::Incomplete(format!(
                "the partitions of version {version} decided differently; export again"
            )));
        }
        let mut report = ExportReport {
            rows_read: first.rows_read,
            not_kept: first.not_kept,
            duplicate_ids: first.duplicate_ids,
            exact_duplicates: first.exact_duplicates,
            near_duplicates: first.near_duplicates,
            version: version.to_owned(),
            ..ExportReport::default()
        };
        let extension = self.options.format.extension();
        for (position, (split, _)) in self.options.splits.iter().enumerate() {
            let staged: Vec<(u32, &String)> = done
                .iter()
                .flat_map(|d| {
                    d.splits
                        .get(position)
                        .into_iter()
                        .flat_map(move |s| s.files.iter().map(move |f| (d.index, f)))
                })
                .collect();
            let total = staged.len();
            let mut counts = SplitReport::default();
            for (number, (index, name)) in staged.into_iter().enumerate() {
                let committed = if self.single_file() {
                    format!("{}/{version}/{split}.{extension}", target::DATA)
                } else {
                    format!(
                        "{}/{version}/{split}-{number:05}-of-{total:05}.{extension}",
                        target::DATA
                    )
                };
                let staged = format!("{}/{version}/p{index}/{name}", target::STAGING);
                self.target.promote(&staged, &committed)?;
                report.files.push(committed);
                counts.files += 1;
            }
            for d in &done {
                if let Some(s) = d.splits.get(position) {
                    counts.rows += s.rows;
                    counts.bytes += s.bytes;
                }
            }
            report.rows_written += counts.rows;
            report.bytes_written += counts.bytes;
            report.splits.insert(split.clone(), counts);
        }
        let schema = match self.interchange_schema() {
            Some(schema) => schema,
            None => self.first_schema(markers)?,
        };
        let usage = markers
            .iter()
            .fold(Usage::default(), |mut total, m: &MarkerSummary| {
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
            &format!("{}/{version}", target::DATA),
        );
        let schema_json = card::schema_json(&schema, self.options.format);
        for (name, text) in [("README.md", card), ("schema.json", schema_json)] {
            let bytes = text.into_bytes();
            report.bytes_written += bytes.len() as u64;
            self.target.put(name, bytes)?;
            report.files.push(name.to_owned());
        }
        report.committed = true;
        let commit = Commit {
            format: "rubricmill-export/1".to_owned(),
            job: self.manifest.name.clone(),
            fingerprint: self.manifest.fingerprint.clone(),
            version: version.to_owned(),
            committed_at: chrono_now(),
            report: report.clone(),
        };
        let json = serde_json::to_vec_pretty(&commit).map_err(|e| ExportError::Write {
            path: target::COMMIT_FILE.to_owned(),
            reason: e.to_string(),
        })?;
        self.target.put(target::COMMIT_FILE, json)?;
        let removed = self.target.remove_other_versions(version)?;
        tracing::info!(version = %version, removed, target = %self.target.url(), "export committed");
        Ok(report)
    }

    /// The schema of the committed rows (from the first part's footer).
    fn first_schema(&self, markers: &[MarkerSummary]) -> Result<SchemaRef, ExportError> {
        let path = markers
            .iter()
            .find_map(|m| m.part.clone())
            .ok_or_else(|| ExportError::Empty(self.manifest.name.clone()))?;
        let bytes = self.handle.block_on(self.job.read(&path))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| ExportError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(builder.schema().clone())
    }

    /// The values a row becomes in the export format: none (left out), one, or several (one
    /// per response for `rewards`).
    fn convert(&self, row: &Value) -> Result<Vec<Value>, ExportError> {
        match self.options.format {
            ExportFormat::Interchange(format) => {
                convert_all(format, self.pipeline(), row).map_err(|reason| ExportError::Convert {
                    id: string_field(row, self.id_column()),
                    format: format.name(),
                    reason,
                })
            }
            _ => Ok(vec![row.clone()]),
        }
    }

    /// The Arrow schema of an interchange format written as Parquet (`healthbench`).
    fn interchange_schema(&self) -> Option<SchemaRef> {
        match self.options.format {
            ExportFormat::Interchange(format) => {
                interchange::parquet_schema(format, self.pipeline())
            }
            _ => None,
        }
    }

    fn sink_kind(&self) -> SinkKind {
        let extension = self.options.format.extension();
        match self.options.format {
            ExportFormat::Parquet => SinkKind::Parquet,
            ExportFormat::Jsonl => SinkKind::JsonLines(extension),
            ExportFormat::Interchange(format) => match format.layout() {
                Layout::JsonLines => SinkKind::JsonLines(extension),
                Layout::JsonArray => SinkKind::JsonArray(extension),
                Layout::Parquet => SinkKind::Parquet,
            },
        }
    }

    fn single_file(&self) -> bool {
        matches!(self.sink_kind(), SinkKind::JsonArray(_))
    }

    /// JSON is several times larger than zstd Parquet; the verl layout holds the prompt and
    /// the rubric twice.
    fn size_factor(&self) -> f64 {
        match self.options.format {
            ExportFormat::Parquet => 1.0,
            ExportFormat::Interchange(format) if format.layout() == Layout::Parquet => 2.0,
            _ => 4.0,
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
}

/// Decodes a part: the file's whole schema, and its batches with only the top-level `columns`
/// (all when `None`).
fn decode_part(
    path: &str,
    bytes: bytes::Bytes,
    columns: Option<&[String]>,
) -> Result<(SchemaRef, Vec<RecordBatch>), ExportError> {
    let read_error = |reason: String| ExportError::Read {
        path: path.to_owned(),
        reason,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| read_error(e.to_string()))?;
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

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The report of a partition that wrote its share but did not commit.
fn partition_report(version: &str, done: &PartitionDone) -> ExportReport {
    let mut report = ExportReport {
        rows_read: done.rows_read,
        not_kept: done.not_kept,
        duplicate_ids: done.duplicate_ids,
        exact_duplicates: done.exact_duplicates,
        near_duplicates: done.near_duplicates,
        version: version.to_owned(),
        ..ExportReport::default()
    };
    for split in &done.splits {
        report.rows_written += split.rows;
        report.bytes_written += split.bytes;
        report.files.extend(split.files.iter().cloned());
        report.splits.insert(
            split.split.clone(),
            SplitReport {
                rows: split.rows,
                files: split.files.len() as u64,
                bytes: split.bytes,
            },
        );
    }
    report
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
        PipelineKind::Reference => &["prompt", "rubric"],
        PipelineKind::Nuggets => &["question", "nuggets"],
        PipelineKind::Score => &["prompt", "rubric", "responses"],
    }
}

/// The text duplicates are judged on: the query and its rubric (researchqa); the prompt, both
/// responses and the rubric (crg); the prompt and the criteria (reference); the question and
/// the nugget texts (nuggets); the prompt, the criteria and the response texts (score).
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
        PipelineKind::Reference => format!(
            "{} {}",
            join(row.get("prompt"), "content"),
            join(row.get("rubric"), "criterion")
        ),
        PipelineKind::Nuggets => format!(
            "{} {}",
            string_field(row, "question"),
            join(row.get("nuggets"), "nugget")
        ),
        PipelineKind::Score => format!(
            "{} {} {}",
            join(row.get("prompt"), "content"),
            join(row.get("rubric"), "criterion"),
            join(row.get("responses"), "text")
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
            (
                PipelineKind::Reference,
                serde_json::json!({
                    "id": "r1", "source": "in.jsonl", "reference_answer": "Rest.",
                    "prompt": [{"role": "user", "content": "What helps a cold?"}],
                    "rubric": [{"criterion": "Suggests rest.", "points": 6, "tags": [], "category": "important"}],
                    "dropped_criteria": [],
                }),
            ),
            (
                PipelineKind::Nuggets,
                serde_json::json!({
                    "id": "n1", "source": "in.jsonl", "question": "What helps a cold?",
                    "passages": [{"passage_id": "p1", "text": "Rest helps a cold."}],
                    "nuggets": [{"nugget": "Rest helps.", "passage_id": "p1", "span": "Rest helps",
                                 "span_start": 0, "span_end": 10, "importance": "vital"}],
                    "dropped_nuggets": [],
                }),
            ),
            (
                PipelineKind::Score,
                serde_json::json!({
                    "id": "s1", "source": "in.jsonl", "rubric_layout": "plain",
                    "prompt": [{"role": "user", "content": "What helps a cold?"}],
                    "rubric": [{"criterion": "Suggests rest.", "points": 1, "kind": "item"}],
                    "responses": [{"response_id": "response_0", "origin": "input", "text": "Rest.",
                                   "verdicts": [], "score": 1.0}],
                    "judge_model": "j",
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
