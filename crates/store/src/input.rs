//! Input files: listing them behind a glob, planning shards over them, and reading a shard back
//! as a stream of records. Readers stream with a bounded channel, so memory depends on the
//! shard and record size limits, not on the input size. A record that cannot be read becomes a
//! [`ReadItem::Reject`] with its location and reason; it never stops the shard.

use std::io;
use std::ops::Range;
use std::sync::Arc;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use rubricmill_core::row::excerpt;
use rubricmill_core::{
    FileRef, InputFormat, Location, RawPayload, RawRecord, ShardSpec, ShardUnit, SourceRef,
};
use tokio::io::{AsyncBufRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

use crate::StoreError;
use crate::lines::{Line, LineReader, UTF8_BOM};
use crate::location::{InputPattern, StoreLocation};
use crate::parquet_input::ObjectFileReader;

/// Compression of an input file, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn from_name(name: &str) -> Self {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// One input object with the format it will be read as.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub file: FileRef,
    pub path: Path,
    pub format: InputFormat,
}

/// The set of input files a job reads.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub location: StoreLocation,
    pub files: Vec<InputFile>,
    /// Entries the pattern matched that cannot be read as files (a FIFO, a socket, a device),
    /// with the reason: planning turns each into a reject instead of hanging on it.
    pub unreadable: Vec<(FileRef, String)>,
}

/// Metadata requests for walked local files kept in flight at once.
const HEADS_IN_FLIGHT: usize = 64;

/// Lists the objects an input URL or glob matches, sorted by path so planning is deterministic.
pub async fn list_inputs(url: &str, format: Option<InputFormat>) -> Result<Inputs, StoreError> {
    list_inputs_with(url, format, &std::collections::BTreeMap::new()).await
}

/// Like [`list_inputs`], with store settings that take precedence over the environment's.
pub async fn list_inputs_with(
    url: &str,
    format: Option<InputFormat>,
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Inputs, StoreError> {
    let pattern = InputPattern::parse_with(url, options)?;
    let store = pattern.location.store.clone();
    let mut metas = Vec::new();
    let mut unreadable = Vec::new();
    if let Some(root) = pattern.location.local_path(&pattern.location.path) {
        // Local folders are walked here rather than by the store: the walk stays as deep as
        // the glob reaches, survives symlink loops, and sees FIFOs and devices for what they
        // are (opening one would block planning forever).
        let depth = pattern.max_depth();
        let listing = tokio::task::spawn_blocking(move || walk_local(&root, depth))
            .await
            .map_err(|e| StoreError::io(&pattern.pattern, io::Error::other(e)))?
            .map_err(|(path, source)| StoreError::io(&path.display().to_string(), source))?;
        for skipped in &listing.loops {
            tracing::warn!(path = %skipped.display(), "symlink loop in the input folder, not followed");
        }
        for (local, reason, modified) in listing.others {
            let Ok(path) = Path::from_absolute_path(&local) else {
                continue;
            };
            if pattern.selects(&path) {
                let file = FileRef {
                    url: pattern.location.url_of(&path),
                    size: 0,
                    etag: None,
                    last_modified: modified.to_rfc3339(),
                };
                unreadable.push((file, reason));
            }
        }
        let mut selected = Vec::with_capacity(listing.files.len());
        for local in listing.files {
            let path = Path::from_absolute_path(&local).map_err(|e| StoreError::Url {
                url: local.display().to_string(),
                reason: e.to_string(),
            })?;
            if pattern.selects(&path) {
                selected.push(path);
            }
        }
        let mut heads = futures::stream::iter(selected)
            .map(|path| {
                let store = &store;
                async move { (store.head(&path).await, path) }
            })
            .buffer_unordered(HEADS_IN_FLIGHT);
        while let Some((head, path)) = heads.next().await {
            match head {
                Ok(meta) => metas.push(meta),
                // Removed since the walk saw it.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(StoreError::store("head", path.as_ref(), source)),
            }
        }
    } else {
        if pattern.glob.is_none() {
            match store.head(&pattern.location.path).await {
                Ok(meta) => metas.push(meta),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(StoreError::store(
                        "head",
                        pattern.location.path.as_ref(),
                        source,
                    ));
                }
            }
        }
        if metas.is_empty() {
            let mut listing = store.list(Some(&pattern.location.path));
            while let Some(meta) = listing.next().await {
                match meta {
                    Ok(meta) if pattern.selects(&meta.location) => metas.push(meta),
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(source) => {
                        return Err(StoreError::store(
                            "list",
                            pattern.location.path.as_ref(),
                            source,
                        ));
                    }
                }
            }
        }
    }
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    if metas.is_empty() && unreadable.is_empty() {
        return Err(StoreError::NoInputs {
            pattern: pattern.pattern,
        });
    }
    let mut files = Vec::with_capacity(metas.len());
    for meta in metas {
        let url = pattern.location.url_of(&meta.location);
        let format = match format.or_else(|| InputFormat::from_file_name(meta.location.as_ref())) {
            Some(format) => format,
            None => return Err(StoreError::UnknownFormat { file: url }),
        };
        let file = FileRef {
            url,
            size: meta.size,
            etag: meta.e_tag.clone(),
            last_modified: meta.last_modified.to_rfc3339(),
        };
        files.push(InputFile {
            file,
            path: meta.location,
            format,
        });
    }
    Ok(Inputs {
        location: pattern.location,
        files,
        unreadable,
    })
}

/// What a walk of a local folder found.
#[derive(Debug, Default)]
struct LocalListing {
    /// Regular files (symlinks to them included), by path as reached.
    files: Vec<std::path::PathBuf>,
    /// Entries that are not regular files or folders, with what they are and when modified.
    others: Vec<(std::path::PathBuf, String, chrono::DateTime<chrono::Utc>)>,
    /// Symlinks to a folder that holds them (not followed).
    loops: Vec<std::path::PathBuf>,
}

/// Walks `root` (a file or a folder) down to `max_depth` folders below it, following symlinks
/// but never into a folder that is its own ancestor. Broken symlinks are skipped. A `root` that
/// does not exist lists nothing.
fn walk_local(
    root: &std::path::Path,
    max_depth: Option<usize>,
) -> Result<LocalListing, (std::path::PathBuf, io::Error)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut listing = LocalListing::default();
    let metadata = match std::fs::metadata(root) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(listing),
        Err(error) => return Err((root.to_owned(), error)),
    };
    let classify =
        |path: std::path::PathBuf, metadata: &std::fs::Metadata, listing: &mut LocalListing| {
            let kind = metadata.file_type();
            let what = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_block_device() || kind.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            let modified = metadata
                .modified()
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_default();
            listing.others.push((
                path,
                format!("{what}, not a regular file: it cannot be read as input"),
                modified,
            ));
        };
    if metadata.is_file() {
        listing.files.push(root.to_owned());
        return Ok(listing);
    }
    if !metadata.is_dir() {
        classify(root.to_owned(), &metadata, &mut listing);
        return Ok(listing);
    }
    // (folder, its depth below root, the (device, inode) of it and its ancestors)
    let mut stack = vec![(
        root.to_owned(),
        0usize,
        vec![(metadata.dev(), metadata.ino())],
    )];
    while let Some((folder, depth, ancestors)) = stack.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|error| (folder.clone(), error))?;
        for entry in entries {
            let entry = entry.map_err(|error| (folder.clone(), error))?;
            let path = entry.path();
            // Follows symlinks; a broken one is skipped.
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if metadata.is_file() {
                listing.files.push(path);
            } else if metadata.is_dir() {
                if max_depth.is_some_and(|max| depth >= max) {
                    continue;
                }
                let id = (metadata.dev(), metadata.ino());
                if ancestors.contains(&id) {
                    listing.loops.push(path);
                    continue;
                }
                let mut below = ancestors.clone();
                below.push(id);
                stack.push((path, depth + 1, below));
            } else {
                classify(path, &metadata, &mut listing);
            }
        }
    }
    listing.files.sort();
    Ok(listing)
}

/// Input files planned at once: planning a JSONL file reads it whole, so several are read
/// side by side to hide the store's latency.
const FILES_PLANNED_IN_FLIGHT: usize = 16;

/// Splits the inputs into shards of about `records_per_shard` records (files, for Markdown and
/// JSON). JSONL files are scanned once to find line boundaries; Parquet files by their footer.
pub async fn plan_shards(
    inputs: &Inputs,
    records_per_shard: u64,
) -> Result<Vec<ShardSpec>, StoreError> {
    let mut shards = Vec::new();
    plan_shards_into(inputs, records_per_shard, async |batch| {
        shards.extend(batch);
        Ok(())
    })
    .await?;
    Ok(shards)
}

/// [`plan_shards`] handing the shards to `sink` a batch at a time, in plan order, so a plan
/// need not be held in memory whole. Files are planned [`FILES_PLANNED_IN_FLIGHT`] at a time.
pub async fn plan_shards_into(
    inputs: &Inputs,
    records_per_shard: u64,
    mut sink: impl AsyncFnMut(Vec<ShardSpec>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let store = &inputs.location.store;
    let mut planned = futures::stream::iter(&inputs.files)
        .map(|input| plan_file(store, input, records_per_shard))
        .buffered(FILES_PLANNED_IN_FLIGHT);
    let mut whole_files: Vec<FileRef> = Vec::new();
    while let Some(planned) = planned.next().await {
        match planned? {
            PlannedFile::Whole(file) => {
                whole_files.push(file);
                if whole_files.len() as u64 == records_per_shard {
                    let files = std::mem::take(&mut whole_files);
                    let count = files.len() as u64;
                    sink(vec![ShardSpec::new(ShardUnit::Files { files }, count)]).await?;
                }
            }
            PlannedFile::Shards(shards) => sink(shards).await?,
        }
    }
    if !whole_files.is_empty() {
        let count = whole_files.len() as u64;
        let unit = ShardUnit::Files { files: whole_files };
        sink(vec![ShardSpec::new(unit, count)]).await?;
    }
    let unreadable: Vec<ShardSpec> = inputs
        .unreadable
        .iter()
        .map(|(file, reason)| unreadable_shard(file, None, reason.clone()))
        .collect();
    if !unreadable.is_empty() {
        sink(unreadable).await?;
    }
    Ok(())
}

/// What planning one input file gives.
enum PlannedFile {
    /// A file read whole (Markdown, JSON), grouped with its neighbours into shards.
    Whole(FileRef),
    /// The shards of a file that splits (JSONL lines, Parquet row groups).
    Shards(Vec<ShardSpec>),
}

async fn plan_file(
    store: &Arc<dyn ObjectStore>,
    input: &InputFile,
    records_per_shard: u64,
) -> Result<PlannedFile, StoreError> {
    match input.format {
        InputFormat::Markdown | InputFormat::Json => Ok(PlannedFile::Whole(input.file.clone())),
        InputFormat::Jsonl => plan_jsonl(store, input, records_per_shard)
            .await
            .map(PlannedFile::Shards),
        InputFormat::Parquet => plan_parquet(store, input, records_per_shard)
            .await
            .map(PlannedFile::Shards),
    }
}

/// The most shards one JSONL file of `stored_bytes` may plan into: a thousand, plus one per 64
/// stored bytes. Real records (sections, pairs) are far larger than 64 bytes even compressed,
/// so only a file of near-empty records, or one that decompresses absurdly, reaches it.
fn max_shards_of(stored_bytes: u64) -> u64 {
    1_000 + stored_bytes / 64
}

/// A shard that reads as one reject: `file` (from `first_line` on) cannot be read.
fn unreadable_shard(file: &FileRef, first_line: Option<u64>, reason: String) -> ShardSpec {
    let unit = ShardUnit::Unreadable {
        file: file.clone(),
        first_line,
        reason,
    };
    ShardSpec::new(unit, 1)
}

/// Whether an I/O error is a failure of the store or the network (worth retrying the shard)
/// rather than of the bytes it delivered (a truncated or corrupt stream: every retry reads the
/// same bytes and fails the same way).
fn is_transient_io(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<object_store::Error>())
        || matches!(
            error.kind(),
            TimedOut
                | ConnectionReset
                | ConnectionAborted
                | BrokenPipe
                | Interrupted
                | WouldBlock
                | NotConnected
        )
}

/// [`is_transient_io`] for Parquet errors: the store's failures arrive as `External`.
fn is_transient_parquet(error: &parquet::errors::ParquetError) -> bool {
    match error {
        parquet::errors::ParquetError::External(inner) => {
            inner.is::<object_store::Error>()
                || inner
                    .downcast_ref::<io::Error>()
                    .is_some_and(is_transient_io)
        }
        _ => false,
    }
}

async fn plan_jsonl(
    store: &Arc<dyn ObjectStore>,
    input: &InputFile,
    records_per_shard: u64,
) -> Result<Vec<ShardSpec>, StoreError> {
    let compression = Compression::from_name(input.path.as_ref());
    let reader = open_stream(store, &input.path, None, compression).await?;
    let mut lines = LineReader::new(reader, 1, 0, 64);
    let mut line = Line::default();
    let mut shards = Vec::new();
    let max_shards = max_shards_of(input.file.size);
    // (first line, byte offset of first line, records so far)
    let mut current: Option<(u64, u64, u64)> = None;
    let mut end_offset = 0;
    let mut last_line = 0;
    let close = |first: u64, start: u64, last: u64, end: u64, records: u64| {
        let byte_range = (compression == Compression::None).then_some((start, end));
        let unit = ShardUnit::Lines {
            file: input.file.clone(),
            first_line: first,
            line_count: last - first + 1,
            byte_range,
        };
        ShardSpec::new(unit, records)
    };
    loop {
        let more = match lines.next_line(&mut line).await {
            Ok(more) => more,
            Err(error) if is_transient_io(&error) => {
                return Err(StoreError::io(&input.file.url, error));
            }
            Err(error) => {
                // The stream breaks here for every reader: plan what came before, and the rest
                // as one reject.
                let broken_at = last_line + 1;
                if let Some((first, start, records)) = current.take() {
                    shards.push(close(first, start, last_line, end_offset, records));
                }
                let reason = format!("cannot decode the file from line {broken_at} on: {error}");
                shards.push(unreadable_shard(&input.file, Some(broken_at), reason));
                return Ok(shards);
            }
        };
        if !more {
            break;
        }
        last_line = line.number;
        end_offset = line.start + line.len + 1;
        if line.is_blank() {
            continue;
        }
        let (first, start, records) = current.get_or_insert((line.number, line.start, 0));
        *records += 1;
        if *records == records_per_shard {
            shards.push(close(*first, *start, line.number, end_offset, *records));
            current = None;
            if shards.len() as u64 > max_shards {
                // Planning memory and the plan's size would grow with a file of tiny records
                // (a decompression bomb of `{}` lines plans millions of shards from a few KB).
                let reason = format!(
                    "more than {max_shards} shards of {records_per_shard} records from a file \
                     of {} bytes: a likely decompression bomb or a file of near-empty records \
                     (planning stopped at line {}; raise input.records_per_shard to read it)",
                    input.file.size, line.number
                );
                return Ok(vec![unreadable_shard(&input.file, None, reason)]);
            }
        }
    }
    if let Some((first, start, records)) = current {
        shards.push(close(first, start, last_line, end_offset, records));
    }
    Ok(shards)
}

async fn plan_parquet(
    store: &Arc<dyn ObjectStore>,
    input: &InputFile,
    records_per_shard: u64,
) -> Result<Vec<ShardSpec>, StoreError> {
    let reader = ObjectFileReader::new(store.clone(), input.path.clone(), input.file.size);
    let builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(builder) => builder,
        Err(error) if is_transient_parquet(&error) => {
            return Err(StoreError::parquet(&input.file.url, error));
        }
        Err(error) => {
            let reason = format!("not a readable Parquet file: {error}");
            return Ok(vec![unreadable_shard(&input.file, None, reason)]);
        }
    };
    let mut shards = Vec::new();
    let mut groups = Vec::new();
    let mut first_row = 0u64;
    let mut rows = 0u64;
    let mut next_row = 0u64;
    for (index, group) in builder.metadata().row_groups().iter().enumerate() {
        if groups.is_empty() {
            first_row = next_row;
        }
        let group_rows = group.num_rows().max(0) as u64;
        groups.push(index);
        rows += group_rows;
        next_row += group_rows;
        if rows >= records_per_shard {
            let unit = ShardUnit::RowGroups {
                file: input.file.clone(),
                row_groups: std::mem::take(&mut groups),
                first_row,
            };
            shards.push(ShardSpec::new(unit, rows));
            rows = 0;
        }
    }
    if !groups.is_empty() {
        let unit = ShardUnit::RowGroups {
            file: input.file.clone(),
            row_groups: groups,
            first_row,
        };
        shards.push(ShardSpec::new(unit, rows));
    }
    Ok(shards)
}

/// A byte stream of an object (or a range of it), decompressed, as buffered async input.
async fn open_stream(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    range: Option<Range<u64>>,
    compression: Compression,
) -> Result<Box<dyn AsyncBufRead + Send + Unpin>, StoreError> {
    let options = GetOptions {
        range: range.map(GetRange::Bounded),
        ..Default::default()
    };
    let result = store
        .get_opts(path, options)
        .await
        .map_err(|source| StoreError::store("get", path.as_ref(), source))?;
    let bytes = result.into_stream().map_err(io::Error::other);
    let raw = StreamReader::new(bytes);
    Ok(match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => {
            let mut decoder = GzipDecoder::new(raw);
            decoder.multiple_members(true);
            Box::new(BufReader::new(decoder))
        }
        Compression::Zstd => Box::new(BufReader::new(ZstdDecoder::new(raw))),
    })
}

/// What a shard reader yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadItem {
    Record(RawRecord),
    /// A record that could not be read, with the reason and a short excerpt.
    Reject {
        source: SourceRef,
        reason: String,
        excerpt: String,
    },
}

/// Reads a shard's records in order. Errors are failures of the store or stream (the shard
/// should be retried); bad records arrive as [`ReadItem::Reject`].
pub fn read_shard(
    inputs: &StoreLocation,
    shard: &ShardSpec,
    format: Option<InputFormat>,
    max_record_bytes: u64,
) -> BoxStream<'static, Result<ReadItem, StoreError>> {
    let (tx, rx) = mpsc::channel(64);
    let location = inputs.clone();
    let unit = shard.unit.clone();
    tokio::spawn(async move {
        let reader = ShardReader {
            location,
            tx: tx.clone(),
            max_record_bytes,
        };
        if let Err(error) = reader.read(unit, format).await {
            let _ = tx.send(Err(error)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Sending half of a shard read; a send fails only when the consumer went away.
struct ShardReader {
    location: StoreLocation,
    tx: mpsc::Sender<Result<ReadItem, StoreError>>,
    max_record_bytes: u64,
}

/// The consumer dropped the stream: stop reading quietly.
struct Closed;

impl ShardReader {
    async fn read(&self, unit: ShardUnit, format: Option<InputFormat>) -> Result<(), StoreError> {
        let outcome = match unit {
            ShardUnit::Files { files } => self.read_files(&files, format).await,
            ShardUnit::Lines {
                file,
                first_line,
                line_count,
                byte_range,
            } => {
                self.read_lines(&file, first_line, line_count, byte_range)
                    .await
            }
            ShardUnit::RowGroups {
                file,
                row_groups,
                first_row,
            } => self.read_row_groups(&file, row_groups, first_row).await,
            ShardUnit::Unreadable {
                file,
                first_line,
                reason,
            } => {
                let location = first_line.map_or(Location::Document, Location::Line);
                let source = SourceRef::new(file.url.clone(), location);
                Ok(self.reject(source, reason, b"").await)
            }
        };
        match outcome {
            Ok(Ok(())) | Ok(Err(Closed)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn emit(&self, item: ReadItem) -> Result<(), Closed> {
        self.tx.send(Ok(item)).await.map_err(|_| Closed)
    }

    async fn reject(&self, source: SourceRef, reason: String, raw: &[u8]) -> Result<(), Closed> {
        let excerpt = excerpt_of(raw);
        self.emit(ReadItem::Reject {
            source,
            reason,
            excerpt,
        })
        .await
    }

    fn path_of(&self, file: &FileRef) -> Result<Path, StoreError> {
        self.location
            .path_of_url(&file.url)
            .ok_or_else(|| StoreError::Url {
                url: file.url.clone(),
                reason: "input file is not in the planned input store".into(),
            })
    }

    async fn read_files(
        &self,
        files: &[FileRef],
        format: Option<InputFormat>,
    ) -> Result<Result<(), Closed>, StoreError> {
        for file in files {
            let path = self.path_of(file)?;
            let format = format
                .or_else(|| InputFormat::from_file_name(&file.url))
                .unwrap_or(InputFormat::Markdown);
            let document = SourceRef::new(file.url.clone(), Location::Document);
            let compression = Compression::from_name(&file.url);
            let mut reader = open_stream(&self.location.store, &path, None, compression).await?;
            let mut bytes = Vec::new();
            match (&mut reader)
                .take(self.max_record_bytes + 1)
                .read_to_end(&mut bytes)
                .await
            {
                Ok(_) => {}
                Err(error) if is_transient_io(&error) => {
                    return Err(StoreError::io(&file.url, error));
                }
                Err(error) => {
                    let reason = format!("cannot decode the file: {error}");
                    if let Err(closed) = self.reject(document, reason, b"").await {
                        return Ok(Err(closed));
                    }
                    continue;
                }
            }
            if bytes.len() as u64 > self.max_record_bytes {
                let reason = format!(
                    "file is larger than input.max_record_bytes ({} bytes)",
                    self.max_record_bytes
                );
                if let Err(closed) = self.reject(document, reason, &bytes).await {
                    return Ok(Err(closed));
                }
                continue;
            }
            let outcome = match format {
                InputFormat::Json => self.emit_json_file(file, &bytes).await,
                _ => self.emit_text_file(document, bytes).await,
            };
            if let Err(closed) = outcome {
                return Ok(Err(closed));
            }
        }
        Ok(Ok(()))
    }

    async fn emit_text_file(&self, source: SourceRef, mut bytes: Vec<u8>) -> Result<(), Closed> {
        if bytes.starts_with(UTF8_BOM) {
            bytes.drain(..UTF8_BOM.len());
        }
        match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => {
                self.reject(source, "empty file".into(), b"").await
            }
            Ok(text) => {
                self.emit(ReadItem::Record(RawRecord {
                    source,
                    payload: RawPayload::Text(text),
                }))
                .await
            }
            Err(error) => {
                let reason = format!("invalid UTF-8 at byte {}", error.utf8_error().valid_up_to());
                self.reject(source, reason, error.as_bytes()).await
            }
        }
    }

    async fn emit_json_file(&self, file: &FileRef, bytes: &[u8]) -> Result<(), Closed> {
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let document = SourceRef::new(file.url.clone(), Location::Document);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return self.reject(document, "empty file".into(), b"").await;
        }
        let value: serde_json::Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(error) => {
                return self
                    .reject(document, format!("invalid JSON: {error}"), bytes)
                    .await;
            }
        };
        match value {
            serde_json::Value::Array(elements) => {
                for (index, element) in elements.into_iter().enumerate() {
                    let source = SourceRef::new(file.url.clone(), Location::Element(index as u64));
                    self.emit(ReadItem::Record(RawRecord {
                        source,
                        payload: RawPayload::Json(element),
                    }))
                    .await?;
                }
                Ok(())
            }
            value => {
                self.emit(ReadItem::Record(RawRecord {
                    source: document,
                    payload: RawPayload::Json(value),
                }))
                .await
            }
        }
    }

    async fn read_lines(
        &self,
        file: &FileRef,
        first_line: u64,
        line_count: u64,
        byte_range: Option<(u64, u64)>,
    ) -> Result<Result<(), Closed>, StoreError> {
        let path = self.path_of(file)?;
        let compression = Compression::from_name(&file.url);
        let range = byte_range
            .map(|(start, end)| start..end.min(file.size))
            .filter(|r| !r.is_empty());
        let (start_number, start_offset) = match &range {
            Some(r) => (first_line, r.start),
            None => (1, 0),
        };
        let reader = open_stream(&self.location.store, &path, range, compression).await?;
        let limit = usize::try_from(self.max_record_bytes).unwrap_or(usize::MAX);
        let mut lines = LineReader::new(reader, start_number, start_offset, limit);
        let mut line = Line::default();
        let last_line = first_line + line_count - 1;
        loop {
            match lines.next_line(&mut line).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) if is_transient_io(&error) => {
                    return Err(StoreError::io(&file.url, error));
                }
                Err(error) => {
                    // The planner saw these lines decode; a stream that breaks now (the file
                    // changed, or the planner was older) loses the shard's rest as one reject.
                    let broken_at = line.number.max(first_line);
                    let source = SourceRef::new(file.url.clone(), Location::Line(broken_at));
                    let reason =
                        format!("cannot decode the file from line {broken_at} on: {error}");
                    return Ok(self.reject(source, reason, b"").await);
                }
            }
            if line.number < first_line || line.is_blank() {
                continue;
            }
            if line.number > last_line {
                break;
            }
            let item = line_to_item(&file.url, &line, self.max_record_bytes);
            if let Err(closed) = self.emit(item).await {
                return Ok(Err(closed));
            }
            if line.number == last_line {
                break;
            }
        }
        Ok(Ok(()))
    }

    /// Reads row groups one at a time: a row group that cannot be decoded becomes one reject
    /// (the rows of the others are still read), and a row over `max_record_bytes` a reject of
    /// its own.
    async fn read_row_groups(
        &self,
        file: &FileRef,
        row_groups: Vec<usize>,
        first_row: u64,
    ) -> Result<Result<(), Closed>, StoreError> {
        let path = self.path_of(file)?;
        let mut reader =
            ObjectFileReader::new(self.location.store.clone(), path.clone(), file.size);
        let metadata = match ArrowReaderMetadata::load_async(&mut reader, Default::default()).await
        {
            Ok(metadata) => metadata,
            Err(error) if is_transient_parquet(&error) => {
                return Err(StoreError::parquet(&file.url, error));
            }
            Err(error) => {
                let source = SourceRef::new(file.url.clone(), Location::Document);
                let reason = format!("not a readable Parquet file: {error}");
                return Ok(self.reject(source, reason, b"").await);
            }
        };
        let mut row = first_row;
        for group in row_groups {
            let group_rows = metadata
                .metadata()
                .row_groups()
                .get(group)
                .map_or(0, |g| g.num_rows().max(0) as u64);
            let group_first = row;
            row += group_rows;
            let reader =
                ObjectFileReader::new(self.location.store.clone(), path.clone(), file.size);
            let batches =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata.clone())
                    .with_row_groups(vec![group])
                    .with_batch_size(256)
                    .build();
            let outcome = match batches {
                Ok(batches) => self.emit_batches(file, batches, group_first).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(closed)) => return Ok(Err(closed)),
                Err(error) if is_transient_parquet(&error) => {
                    return Err(StoreError::parquet(&file.url, error));
                }
                Err(error) => {
                    let source = SourceRef::new(file.url.clone(), Location::Row(group_first));
                    let reason = format!(
                        "cannot decode row group {group} (rows {group_first}..{row}): {error}"
                    );
                    if let Err(closed) = self.reject(source, reason, b"").await {
                        return Ok(Err(closed));
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Emits the rows of one row group's batches, numbered from `first_row`.
    async fn emit_batches(
        &self,
        file: &FileRef,
        mut batches: ParquetRecordBatchStream<ObjectFileReader>,
        first_row: u64,
    ) -> Result<Result<(), Closed>, parquet::errors::ParquetError> {
        let mut row = first_row;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let mut json = Vec::new();
            {
                let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
                writer
                    .write(&batch)
                    .and_then(|()| writer.finish())
                    .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
            }
            for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let source = SourceRef::new(file.url.clone(), Location::Row(row));
                row += 1;
                let item = if line.len() as u64 > self.max_record_bytes {
                    oversized(source, line.len() as u64, self.max_record_bytes, line)
                } else {
                    match serde_json::from_slice(line) {
                        Ok(value) => ReadItem::Record(RawRecord {
                            source,
                            payload: RawPayload::Json(value),
                        }),
                        Err(error) => ReadItem::Reject {
                            source,
                            reason: format!("row does not convert to JSON: {error}"),
                            excerpt: excerpt(&String::from_utf8_lossy(line)),
                        },
                    }
                };
                if let Err(closed) = self.emit(item).await {
                    return Ok(Err(closed));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// The reject of a record of `len` bytes, over `input.max_record_bytes`; `start` holds (at
/// least) its first bytes.
fn oversized(source: SourceRef, len: u64, max_record_bytes: u64, start: &[u8]) -> ReadItem {
    ReadItem::Reject {
        source,
        reason: format!("record is {len} bytes, over input.max_record_bytes ({max_record_bytes})"),
        excerpt: excerpt_of(start),
    }
}

/// A reject's excerpt of raw bytes: the start of them, as text.
fn excerpt_of(raw: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(&raw[..raw.len().min(1200)]))
}

/// Decodes one JSONL line into a record or a reject.
fn line_to_item(file_url: &str, line: &Line, max_record_bytes: u64) -> ReadItem {
    let source = SourceRef::new(file_url.to_owned(), Location::Line(line.number));
    let lossy = || excerpt_of(&line.bytes);
    if line.overflow {
        return oversized(source, line.len, max_record_bytes, &line.bytes);
    }
    if let Err(error) = std::str::from_utf8(&line.bytes) {
        let reason = format!("invalid UTF-8 at byte {} of the line", error.valid_up_to());
        return ReadItem::Reject {
            source,
            reason,
            excerpt: lossy(),
        };
    }
    match serde_json::from_slice(&line.bytes) {
        Ok(value) => ReadItem::Record(RawRecord {
            source,
            payload: RawPayload::Json(value),
        }),
        Err(error) => ReadItem::Reject {
            source,
            reason: format!("invalid JSON: {error}"),
            excerpt: lossy(),
        },
    }
}
