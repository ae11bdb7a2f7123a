//! Output files of one split in one folder (an export's staging folder): `<split>-<i>.<ext>`,
//! rows spread evenly over the files, each streamed to the object store through a multipart
//! upload (Parquet row groups and JSON lines are handed over as they are encoded). The commit
//! gives them their final names.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rubricmill_store::StoreLocation;
use serde_json::Value;
use tokio::runtime::Handle;

use crate::ExportError;

/// Rows per Parquet row group: small enough to bound memory, large enough to compress well.
const ROW_GROUP_ROWS: usize = 65_536;
/// Encoded bytes handed to the upload at once.
const UPLOAD_CHUNK: usize = 8 << 20;
/// Upload parts in flight per file.
const UPLOAD_CONCURRENCY: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Parquet,
    /// One JSON value per line, with this file extension.
    JsonLines(&'static str),
    /// One JSON array per file, with this file extension.
    JsonArray(&'static str),
}

impl SinkKind {
    fn extension(self) -> &'static str {
        match self {
            SinkKind::Parquet => "parquet",
            SinkKind::JsonLines(ext) | SinkKind::JsonArray(ext) => ext,
        }
    }
}

struct OpenFile {
    name: String,
    upload: WriteMultipart,
    parquet: Option<ArrowWriter<Vec<u8>>>,
    json_values: u64,
    bytes: u64,
}

/// What a sink wrote.
#[derive(Debug, Default)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<String>,
}

pub struct Sink {
    kind: SinkKind,
    folder: StoreLocation,
    split: String,
    files: u64,
    rows_per_file: u64,
    schema: SchemaRef,
    metadata: BTreeMap<String, String>,
    current: Option<OpenFile>,
    next_index: u64,
    rows_in_file: u64,
    written: Written,
}

impl Sink {
    pub fn new(
        kind: SinkKind,
        folder: &StoreLocation,
        split: &str,
        files: u64,
        rows: u64,
        schema: SchemaRef,
        metadata: &BTreeMap<String, String>,
    ) -> Self {
        let (files, rows_per_file) = spread(rows, files);
        Self {
            kind,
            folder: folder.clone(),
            split: split.to_owned(),
            files,
            rows_per_file,
            schema,
            metadata: metadata.clone(),
            current: None,
            next_index: 0,
            rows_in_file: 0,
            written: Written::default(),
        }
    }

    pub fn name(&self) -> String {
        match self.kind {
            SinkKind::JsonArray(ext) => format!("{}.{ext}", self.split),
            _ => format!("{}-*.{}", self.split, self.kind.extension()),
        }
    }

    fn open(&mut self, handle: &Handle) -> Result<(), ExportError> {
        // a JSON array is one file per split named as the released ResearchQA files are
        // ("test.json", "valid.json")
        let name = match self.kind {
            SinkKind::JsonArray(ext) => format!("{}.{ext}", self.split),
            _ => format!(
                "{}-{:05}.{}",
                self.split,
                self.next_index,
                self.kind.extension()
            ),
        };
        self.next_index += 1;
        let path = Path::from(format!("{}/{name}", self.folder.path).trim_start_matches('/'));
        let upload = handle
            .block_on(self.folder.store.put_multipart(&path))
            .map_err(|source| ExportError::ObjectStore {
                path: name.clone(),
                source,
            })?;
        let parquet = match self.kind {
            SinkKind::Parquet => {
                let key_values = self
                    .metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect();
                let level = ZstdLevel::try_new(3).map_err(|e| ExportError::Write {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(level))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_key_value_metadata(Some(key_values))
                    .build();
                let writer = ArrowWriter::try_new(
                    Vec::with_capacity(UPLOAD_CHUNK),
                    self.schema.clone(),
                    Some(properties),
                )
                .map_err(|e| ExportError::Write {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
                Some(writer)
            }
            _ => None,
        };
        let mut file = OpenFile {
            name,
            upload: WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK),
            parquet,
            json_values: 0,
            bytes: 0,
        };
        if let SinkKind::JsonArray(_) = self.kind {
            send(handle, &mut file, b"[\n".to_vec())?;
        }
        self.current = Some(file);
        self.rows_in_file = 0;
        Ok(())
    }

    /// The open file, opening the next one when the current is full.
    fn file(&mut self, handle: &Handle) -> Result<&mut OpenFile, ExportError> {
        if self.current.is_some()
            && self.rows_in_file >= self.rows_per_file
            && self.next_index < self.files
        {
            self.close(handle)?;
        }
        if self.current.is_none() {
            self.open(handle)?;
        }
        Ok(self.current.as_mut().expect("a file is open"))
    }

    pub fn write_batch(&mut self, handle: &Handle, batch: &RecordBatch) -> Result<(), ExportError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let room = if self.current.is_some() && self.rows_in_file < self.rows_per_file {
                self.rows_per_file - self.rows_in_file
            } else {
                self.rows_per_file
            };
            let take = (room as usize).min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            let file = self.file(handle)?;
            let writer = file.parquet.as_mut().expect("parquet sink");
            writer.write(&slice).map_err(|e| ExportError::Write {
                path: file.name.clone(),
                reason: e.to_string(),
            })?;
            let ready = std::mem::take(writer.inner_mut());
            if !ready.is_empty() {
                send(handle, file, ready)?;
            }
            self.rows_in_file += take as u64;
            self.written.rows += take as u64;
            offset += take;
        }
        Ok(())
    }

    pub fn write_value(&mut self, handle: &Handle, value: &Value) -> Result<(), ExportError> {
        let kind = self.kind;
        let file = self.file(handle)?;
        let mut line = serde_json::to_vec(value).map_err(|e| ExportError::Write {
            path: file.name.clone(),
            reason: e.to_string(),
        })?;
        if let SinkKind::JsonArray(_) = kind
            && file.json_values > 0
        {
            line.splice(0..0, b",\n".iter().copied());
        }
        if let SinkKind::JsonLines(_) = kind {
            line.push(b'\n');
        }
        file.json_values += 1;
        send(handle, file, line)?;
        self.rows_in_file += 1;
        self.written.rows += 1;
        Ok(())
    }

    fn close(&mut self, handle: &Handle) -> Result<(), ExportError> {
        let Some(mut file) = self.current.take() else {
            return Ok(());
        };
        if let Some(writer) = file.parquet.take() {
            let rest = writer.into_inner().map_err(|e| ExportError::Write {
                path: file.name.clone(),
                reason: e.to_string(),
            })?;
            send(handle, &mut file, rest)?;
        }
        if let SinkKind::JsonArray(_) = self.kind {
            send(handle, &mut file, b"\n]\n".to_vec())?;
        }
        let name = file.name.clone();
        handle
            .block_on(file.upload.finish())
            .map_err(|source| ExportError::ObjectStore {
                path: name.clone(),
                source,
            })?;
        self.written.bytes += file.bytes;
        self.written.files.push(name);
        Ok(())
    }

    /// Closes the last file. A split with no rows writes no file.
    pub fn finish(mut self, handle: &Handle) -> Result<Written, ExportError> {
        self.close(handle)?;
        Ok(self.written)
    }
}

fn send(handle: &Handle, file: &mut OpenFile, bytes: Vec<u8>) -> Result<(), ExportError> {
    if bytes.is_empty() {
        return Ok(());
    }
    file.bytes += bytes.len() as u64;
    let _runtime = handle.enter();
    file.upload.put(bytes.into());
    handle
        .block_on(file.upload.wait_for_capacity(UPLOAD_CONCURRENCY))
        .map_err(|source| ExportError::ObjectStore {
            path: file.name.clone(),
            source,
        })
}

/// How `rows` spread over at most `files` files: the number of files that will really be
/// written (each name says `-of-<files>`, so it must not promise a file that never comes) and
/// the rows in each but the last.
fn spread(rows: u64, files: u64) -> (u64, u64) {
    let rows_per_file = rows.div_ceil(files.max(1)).max(1);
    (rows.div_ceil(rows_per_file).max(1), rows_per_file)
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn file_names_promise_only_files_that_are_written() {
        // 9 rows over 4 files is 3 a file: only 3 files are written, so names say "of 3".
        assert_eq!(spread(9, 4), (3, 3));
        assert_eq!(spread(8, 4), (4, 2));
        assert_eq!(spread(10, 4), (4, 3));
        assert_eq!(
            spread(0, 4),
            (1, 1),
            "an empty split still gets its one file"
        );
        assert_eq!(spread(5, 0), (1, 5));
        for rows in 0..200 {
            for files in 1..20 {
                let (written, per_file) = spread(rows, files);
                assert!(written <= files);
                assert!(
                    written * per_file >= rows,
                    "{rows} rows fit in {files} files"
                );
                assert!(
                    rows == 0 || (written - 1) * per_file < rows,
                    "no empty file"
                );
            }
        }
    }
}
