//! The plan's shard list as chunk files beside `job.json`:
//!
//! ```text
//! <output>/<job>/plan/<checksum>.jsonl.zst    up to SHARDS_PER_CHUNK shards, one JSON per line
//! ```
//!
//! Planning streams shards into a [`PlanWriter`], which encodes each full chunk on the blocking
//! pool and uploads it while planning goes on, so planning a million shards holds a few chunks
//! in memory, not the list. A chunk is named by the blake3 checksum of its bytes: writing it is
//! idempotent (two planners of the same inputs write the same files), and a reader that gets
//! other bytes than the name promises reports the chunk as damaged. `job.json`, written last
//! with a put-if-absent, lists the chunks in plan order; chunks no plan lists (a planner that
//! lost the race for `job.json`) are removed by `gc`.

use bytes::Bytes;
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use rubricmill_core::{JobManifest, PlanChunk, ShardSpec};
use tokio::task::JoinHandle;

use crate::StoreError;
use crate::commit::JobStore;

/// Shards per chunk file: about 3 MB of JSON, 0.3 MB stored.
pub const SHARDS_PER_CHUNK: usize = 10_000;

/// Chunk uploads a writer keeps in flight before it waits for the oldest.
const CHUNK_WRITES_IN_FLIGHT: usize = 4;

/// Chunk reads a reader keeps ahead of the one it hands out.
const CHUNK_READS_AHEAD: usize = 2;

/// The folder of the chunk files, relative to the job folder.
pub(crate) const PLAN_FOLDER: &str = "plan";

/// What a finished [`PlanWriter`] stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanIndex {
    pub shard_count: u64,
    pub expected_records: u64,
    pub chunks: Vec<PlanChunk>,
}

/// Writes a plan's shards, in the order pushed, as chunk files of the job folder.
#[derive(Debug)]
pub struct PlanWriter {
    store: JobStore,
    buffer: Vec<ShardSpec>,
    index: PlanIndex,
    uploads: FuturesOrdered<JoinHandle<Result<PlanChunk, StoreError>>>,
}

impl PlanWriter {
    pub fn new(store: &JobStore) -> Self {
        Self {
            store: store.clone(),
            buffer: Vec::with_capacity(SHARDS_PER_CHUNK),
            index: PlanIndex::default(),
            uploads: FuturesOrdered::new(),
        }
    }

    /// Adds shards to the plan; uploads every chunk that fills.
    pub async fn extend(
        &mut self,
        shards: impl IntoIterator<Item = ShardSpec>,
    ) -> Result<(), StoreError> {
        for shard in shards {
            self.index.shard_count += 1;
            self.index.expected_records += shard.expected_records;
            self.buffer.push(shard);
            if self.buffer.len() == SHARDS_PER_CHUNK {
                self.upload_buffer().await?;
            }
        }
        Ok(())
    }

    /// Uploads what is left and waits for every upload; returns the plan's index.
    pub async fn finish(mut self) -> Result<PlanIndex, StoreError> {
        if !self.buffer.is_empty() {
            self.upload_buffer().await?;
        }
        while let Some(chunk) = self.uploads.next().await {
            self.index.chunks.push(joined(chunk)?);
        }
        Ok(self.index)
    }

    async fn upload_buffer(&mut self) -> Result<(), StoreError> {
        let shards = std::mem::replace(&mut self.buffer, Vec::with_capacity(SHARDS_PER_CHUNK));
        let store = self.store.clone();
        self.uploads.push_back(tokio::spawn(async move {
            let count = shards.len() as u64;
            let bytes = tokio::task::spawn_blocking(move || encode_chunk(&shards))
                .await
                .map_err(|e| StoreError::Encode(format!("encoding a plan chunk: {e}")))??;
            let file = format!(
                "{PLAN_FOLDER}/{}.jsonl.zst",
                rubricmill_core::content_hash(&bytes)
            );
            store.put(&file, bytes).await?;
            Ok(PlanChunk {
                file,
                shards: count,
            })
        }));
        if self.uploads.len() >= CHUNK_WRITES_IN_FLIGHT
            && let Some(chunk) = self.uploads.next().await
        {
            self.index.chunks.push(joined(chunk)?);
        }
        Ok(())
    }
}

fn joined(
    chunk: Result<Result<PlanChunk, StoreError>, tokio::task::JoinError>,
) -> Result<PlanChunk, StoreError> {
    chunk.map_err(|e| StoreError::Encode(format!("uploading a plan chunk: {e}")))?
}

fn encode_chunk(shards: &[ShardSpec]) -> Result<Bytes, StoreError> {
    let mut json = Vec::with_capacity(shards.len() * 512);
    for shard in shards {
        serde_json::to_writer(&mut json, shard).map_err(|e| StoreError::Encode(e.to_string()))?;
        json.push(b'\n');
    }
    zstd::encode_all(&json[..], 3)
        .map(Bytes::from)
        .map_err(|e| StoreError::Encode(format!("compressing a plan chunk: {e}")))
}

fn decode_chunk(url: &str, chunk: &PlanChunk, bytes: &[u8]) -> Result<Vec<ShardSpec>, StoreError> {
    let damaged = |reason: String| StoreError::Decode {
        path: url.to_owned(),
        reason,
    };
    let checksum = rubricmill_core::content_hash(bytes);
    let named = chunk
        .file
        .rsplit('/')
        .next()
        .and_then(|name| name.strip_suffix(".jsonl.zst"))
        .unwrap_or_default();
    if checksum != named {
        return Err(damaged(format!(
            "plan chunk damaged: its checksum is {checksum}, its name promises {named}"
        )));
    }
    let json = zstd::decode_all(bytes).map_err(|e| damaged(e.to_string()))?;
    let shards = json
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(serde_json::from_slice::<ShardSpec>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| damaged(format!("plan chunk does not decode: {e}")))?;
    if shards.len() as u64 != chunk.shards {
        return Err(damaged(format!(
            "plan chunk holds {} shards, the plan says {}",
            shards.len(),
            chunk.shards
        )));
    }
    Ok(shards)
}

impl JobStore {
    /// The shards of one chunk of the plan.
    pub async fn plan_chunk(&self, chunk: &PlanChunk) -> Result<Vec<ShardSpec>, StoreError> {
        let bytes = self.read(&chunk.file).await?;
        let url = self.url_of(&chunk.file);
        let chunk = chunk.clone();
        tokio::task::spawn_blocking(move || decode_chunk(&url, &chunk, &bytes))
            .await
            .map_err(|e| StoreError::Encode(format!("decoding a plan chunk: {e}")))?
    }

    /// The plan's shards a chunk at a time, in plan order (a plan stored inline by an earlier
    /// version first), reading a few chunks ahead.
    pub fn planned_shards<'a>(
        &'a self,
        manifest: &'a JobManifest,
    ) -> impl Stream<Item = Result<Vec<ShardSpec>, StoreError>> + Send + 'a {
        let inline =
            (!manifest.inline_shards.is_empty()).then(|| Ok(manifest.inline_shards.clone()));
        let chunks = futures::stream::iter(&manifest.chunks)
            .map(|chunk| self.plan_chunk(chunk))
            .buffered(CHUNK_READS_AHEAD);
        futures::stream::iter(inline).chain(chunks)
    }

    /// The whole shard list in memory: for plans known to be small (tests, tools).
    pub async fn all_planned_shards(
        &self,
        manifest: &JobManifest,
    ) -> Result<Vec<ShardSpec>, StoreError> {
        let mut shards = Vec::with_capacity(manifest.shard_count as usize);
        let mut chunks = std::pin::pin!(self.planned_shards(manifest));
        while let Some(chunk) = chunks.next().await {
            shards.extend(chunk?);
        }
        Ok(shards)
    }
}
