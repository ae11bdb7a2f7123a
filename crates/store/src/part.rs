//! A Parquet file written while a shard is processed: batches are encoded on the blocking pool
//! as they come and each finished row group goes out through a multipart upload, so the memory
//! a shard needs does not grow with the shard. The file's blake3 checksum is computed on the
//! way out.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
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
    writer: Option<ArrowWriter<Vec<u8>>>,
    upload: WriteMultipart,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl PartWriter {
    pub(crate) async fn create(
        store: &Arc<dyn ObjectStore>,
        path: Path,
        relative: String,
        schema: SchemaRef,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, StoreError> {
        let properties = writer_properties(metadata, Some(PART_ROW_GROUP_ROWS))?;
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties))
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|source| StoreError::store("put-multipart", path.as_ref(), source))?;
        Ok(Self {
            relative,
            path,
            writer: Some(writer),
            upload: WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK),
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
        self.upload.put(bytes.into());
        self.upload
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
        let path = self.path.clone();
        self.upload
            .finish()
            .await
            .map_err(|source| StoreError::store("complete-upload", path.as_ref(), source))?;
        Ok(FinishedPart {
            relative: self.relative,
            bytes: self.bytes,
            checksum: self.hasher.finalize().to_hex().to_string(),
        })
    }

    /// Abandons the upload (its parts are removed where the store supports it).
    pub async fn abort(self) {
        if let Err(error) = self.upload.abort().await {
            tracing::debug!(path = %self.path, error = %error, "aborting a part upload failed");
        }
    }
}
