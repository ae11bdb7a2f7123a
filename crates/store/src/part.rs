//! A Parquet file written while a shard is processed: batches are encoded on the blocking pool
//! as they come and finished row groups go out as they are ready, so the memory a shard needs
//! does not grow with the shard. A file smaller than one upload chunk (most parts) goes out in
//! a single PUT at the end; a larger one through a multipart upload, started when the first
//! chunk is full. An upload that is dropped unfinished (a shard handed back, a failed attempt)
//! is aborted, so it leaves no open multipart upload behind. The file's blake3 checksum is
//! computed on the way out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayloadMut, WriteMultipart};
use parquet::arrow::ArrowWriter;

use crate::StoreError;
use crate::output::writer_properties;

/// Rows per row group of a part file.
pub const PART_ROW_GROUP_ROWS: usize = 8192;
/// Bytes handed to the upload at once.
const UPLOAD_CHUNK: usize = 5 << 20;
/// Upload parts in flight.
const UPLOAD_CONCURRENCY: usize = 2;

/// What a finished part is: its path relative to the job folder, size and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedPart {
    pub relative: String,
    pub bytes: u64,
    pub checksum: String,
}

pub struct PartWriter {
    relative: String,
    path: Path,
    store: Arc<dyn ObjectStore>,
    writer: Option<ArrowWriter<Vec<u8>>>,
    upload: Upload,
    hasher: blake3::Hasher,
    bytes: u64,
}

/// Where the encoded bytes are: held until a whole chunk is there, then in a multipart upload.
/// `Done` once the upload is finished or aborted.
enum Upload {
    Buffered(PutPayloadMut),
    Multipart(WriteMultipart),
    Done,
}

impl PartWriter {
    pub(crate) fn create(
        store: &Arc<dyn ObjectStore>,
        path: Path,
        relative: String,
        schema: SchemaRef,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, StoreError> {
        let properties = writer_properties(metadata, Some(PART_ROW_GROUP_ROWS))?;
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        Ok(Self {
            relative,
            path,
            store: store.clone(),
            writer: Some(writer),
            upload: Upload::Buffered(PutPayloadMut::new()),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    /// Encodes a batch (on the blocking pool) and uploads any finished row groups.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), StoreError> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::Encode("part already finished".into()))?;
        let (writer, ready) = tokio::task::spawn_blocking(move || {
            let written = writer
                .write(&batch)
                .map_err(|e| StoreError::Encode(e.to_string()));
            let ready = std::mem::take(writer.inner_mut());
            written.map(|()| (writer, ready))
        })
        .await
        .map_err(|e| StoreError::Encode(format!("encoding task failed: {e}")))??;
        self.writer = Some(writer);
        self.send(ready).await
    }

    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.hasher.update(&bytes);
        self.bytes += bytes.len() as u64;
        match &mut self.upload {
            Upload::Buffered(buffer) if buffer.content_length() + bytes.len() < UPLOAD_CHUNK => {
                buffer.push(bytes.into());
                return Ok(());
            }
            Upload::Buffered(buffer) => {
                let buffered = std::mem::take(buffer).freeze();
                let upload = self
                    .store
                    .put_multipart(&self.path)
                    .await
                    .map_err(|source| {
                        StoreError::store("put-multipart", self.path.as_ref(), source)
                    })?;
                let mut upload = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK);
                for chunk in buffered {
                    upload.put(chunk);
                }
                upload.put(bytes.into());
                self.upload = Upload::Multipart(upload);
            }
            Upload::Multipart(upload) => upload.put(bytes.into()),
            Upload::Done => return Err(StoreError::Encode("part already finished".into())),
        }
        let Upload::Multipart(upload) = &mut self.upload else {
            unreachable!("a multipart upload was started above")
        };
        upload
            .wait_for_capacity(UPLOAD_CONCURRENCY)
            .await
            .map_err(|source| StoreError::store("upload", self.path.as_ref(), source))
    }

    /// Writes the footer and completes the upload.
    pub async fn finish(mut self) -> Result<FinishedPart, StoreError> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| StoreError::Encode("part already finished".into()))?;
        let rest = tokio::task::spawn_blocking(move || {
            writer
                .into_inner()
                .map_err(|e| StoreError::Encode(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Encode(format!("encoding task failed: {e}")))??;
        self.send(rest).await?;
        match std::mem::replace(&mut self.upload, Upload::Done) {
            Upload::Buffered(buffer) => self
                .store
                .put(&self.path, buffer.freeze())
                .await
                .map(drop)
                .map_err(|source| StoreError::store("put", self.path.as_ref(), source))?,
            Upload::Multipart(upload) => upload.finish().await.map(drop).map_err(|source| {
                StoreError::store("complete-upload", self.path.as_ref(), source)
            })?,
            Upload::Done => return Err(StoreError::Encode("part already finished".into())),
        }
        Ok(FinishedPart {
            relative: std::mem::take(&mut self.relative),
            bytes: self.bytes,
            checksum: self.hasher.finalize().to_hex().to_string(),
        })
    }

    /// Abandons the upload (its parts are removed where the store supports it).
    pub async fn abort(mut self) {
        if let Upload::Multipart(upload) = std::mem::replace(&mut self.upload, Upload::Done) {
            abort_upload(upload, &self.path).await;
        }
    }
}

impl Drop for PartWriter {
    /// A part dropped before it finished (its shard handed back, its attempt failed part way)
    /// aborts its multipart upload: S3 keeps an open upload's parts, unlisted, until it is
    /// aborted.
    fn drop(&mut self) {
        let Upload::Multipart(upload) = std::mem::replace(&mut self.upload, Upload::Done) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(path = %self.path, "a part upload was dropped outside a runtime and stays open");
            return;
        };
        let path = self.path.clone();
        runtime.spawn(async move { abort_upload(upload, &path).await });
    }
}

async fn abort_upload(upload: WriteMultipart, path: &Path) {
    if let Err(error) = upload.abort().await {
        tracing::debug!(path = %path, error = %error, "aborting a part upload failed");
    }
}
