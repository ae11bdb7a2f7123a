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
use rubricmill_core::row::excerpt;
use rubricmill_core::{
    FileRef, InputFormat, Location, RawPayload, RawRecord, ShardSpec, ShardUnit, SourceRef,
};
use tokio::io::{AsyncBufRead, AsyncReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

use crate::StoreError;
use crate::lines::{Line, LineReader};
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
}

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
                Ok(meta) if pattern.matches(&meta.location) => metas.push(meta),
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
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    if metas.is_empty() {
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
    })
}

/// Splits the inputs into shards of about `records_per_shard` records (files, for Markdown and
/// JSON). JSONL files are scanned once to find line boundaries; Parquet files by their footer.
pub async fn plan_shards(
    inputs: &Inputs,
    records_per_shard: u64,
) -> Result<Vec<ShardSpec>, StoreError> {
    let store = &inputs.location.store;
    let mut shards = Vec::new();
    let mut whole_files: Vec<FileRef> = Vec::new();
    for input in &inputs.files {
        match input.format {
            InputFormat::Markdown | InputFormat::Json => {
                whole_files.push(input.file.clone());
                if whole_files.len() as u64 == records_per_shard {
                    let files = std::mem::take(&mut whole_files);
                    let count = files.len() as u64;
                    shards.push(ShardSpec::new(ShardUnit::Files { files }, count));
                }
            }
            InputFormat::Jsonl => shards.extend(plan_jsonl(store, input, records_per_shard).await?),
            InputFormat::Parquet => {
                shards.extend(plan_parquet(store, input, records_per_shard).await?)
            }
        }
    }
    if !whole_files.is_empty() {
        let count = whole_files.len() as u64;
        shards.push(ShardSpec::new(
            ShardUnit::Files { files: whole_files },
            count,
        ));
    }
    Ok(shards)
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
        let more = lines
            .next_line(&mut line)
            .await
            .map_err(|source| StoreError::io(&input.file.url, source))?;
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
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|source| StoreError::parquet(&input.file.url, source))?;
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
        let excerpt = excerpt(&String::from_utf8_lossy(&raw[..raw.len().min(4 * 300)]));
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
            (&mut reader)
                .take(self.max_record_bytes + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(|source| StoreError::io(&file.url, source))?;
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

    async fn emit_text_file(&self, source: SourceRef, bytes: Vec<u8>) -> Result<(), Closed> {
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
        while lines
            .next_line(&mut line)
            .await
            .map_err(|source| StoreError::io(&file.url, source))?
        {
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

    async fn read_row_groups(
        &self,
        file: &FileRef,
        row_groups: Vec<usize>,
        first_row: u64,
    ) -> Result<Result<(), Closed>, StoreError> {
        let path = self.path_of(file)?;
        let reader = ObjectFileReader::new(self.location.store.clone(), path, file.size);
        let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(|source| StoreError::parquet(&file.url, source))?
            .with_row_groups(row_groups)
            .with_batch_size(256)
            .build()
            .map_err(|source| StoreError::parquet(&file.url, source))?;
        let mut row = first_row;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|source| StoreError::parquet(&file.url, source))?;
            let mut json = Vec::new();
            {
                let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
                writer
                    .write(&batch)
                    .and_then(|()| writer.finish())
                    .map_err(|e| StoreError::io(&file.url, io::Error::other(e)))?;
            }
            for line in json.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let source = SourceRef::new(file.url.clone(), Location::Row(row));
                row += 1;
                let item = match serde_json::from_slice(line) {
                    Ok(value) => ReadItem::Record(RawRecord {
                        source,
                        payload: RawPayload::Json(value),
                    }),
                    Err(error) => ReadItem::Reject {
                        source,
                        reason: format!("row does not convert to JSON: {error}"),
                        excerpt: excerpt(&String::from_utf8_lossy(line)),
                    },
                };
                if let Err(closed) = self.emit(item).await {
                    return Ok(Err(closed));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// Decodes one JSONL line into a record or a reject.
fn line_to_item(file_url: &str, line: &Line, max_record_bytes: u64) -> ReadItem {
    let source = SourceRef::new(file_url.to_owned(), Location::Line(line.number));
    let lossy = || {
        excerpt(&String::from_utf8_lossy(
            &line.bytes[..line.bytes.len().min(1200)],
        ))
    };
    if line.overflow {
        let reason = format!(
            "record is {} bytes, over input.max_record_bytes ({max_record_bytes})",
            line.len
        );
        return ReadItem::Reject {
            source,
            reason,
            excerpt: lossy(),
        };
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
