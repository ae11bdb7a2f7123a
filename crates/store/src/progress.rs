//! The progress log: summaries of commit markers ([`MarkerSummary`]) kept in a few files, so
//! that knowing what a job committed costs a listing of `commits/` (one request per 1,000
//! markers) and a few reads instead of one read per marker.
//!
//! ```text
//! <output>/<job>/progress/<writer>.jsonl.zst   marker summaries, one JSON object a line, zstd
//! ```
//!
//! Whoever has read markers writes what it read (the coordinator periodically, `run` and
//! `submit` when they resume, `run` while and after it runs), each file under a new time-ordered
//! name with a plain put, so writers never collide. Markers are immutable, so every summary
//! ever written stays true and readers take the union of all files; a shard found in several
//! files is the same shard. The markers stay the truth: a reader lists `commits/` and reads the
//! markers the log does not summarise, and ignores summaries whose marker is not listed.
//!
//! Compaction keeps the number of files small: a reader that found many files writes their
//! union (plus what it read itself) as one new file, then deletes exactly the files it read.
//! A file is deleted only by a writer whose own file, already stored, holds its content, so
//! concurrent compactions lose nothing (at worst a summary is stored twice).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use async_compression::tokio::bufread::ZstdDecoder;
use async_compression::tokio::write::ZstdEncoder;
use object_store::path::Path;
use rubricmill_core::{MarkerSummary, ShardId};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::StoreError;
use crate::commit::{CommitMarker, JobStore};

/// Files in `progress/` from which a reader compacts them into one.
pub const PROGRESS_FILES_BEFORE_COMPACTION: usize = 8;

const FOLDER: &str = "progress";
const SUFFIX: &str = ".jsonl.zst";

/// The progress files one read found (what a compaction may delete).
#[derive(Debug, Clone, Default)]
pub struct ProgressLog {
    /// Paths relative to the job folder.
    pub files: Vec<String>,
}

impl ProgressLog {
    /// Whether the log has grown to enough files to compact.
    pub fn wants_compaction(&self) -> bool {
        self.files.len() >= PROGRESS_FILES_BEFORE_COMPACTION
    }
}

impl CommitMarker {
    /// The marker less its per-stage counts.
    pub fn summary(&self) -> MarkerSummary {
        MarkerSummary {
            shard_id: self.shard_id.clone(),
            attempt_id: self.attempt_id.clone(),
            worker_id: self.worker_id.clone(),
            committed_at: self.committed_at,
            part: self.part.clone(),
            rejects_part: self.rejects_part.clone(),
            rows: self.rows,
            rejects: self.rejects,
            bytes: self.bytes,
            checksum: self.checksum.clone(),
            records: self.records,
            usage: self.usage,
            agreement: self.stages.get("agreement").copied(),
        }
    }
}

impl JobStore {
    fn relative_of(&self, path: &Path) -> String {
        let root = self.location().path.as_ref().to_owned();
        let full = path.as_ref();
        full.strip_prefix(&root)
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_owned()
    }

    /// Reads every progress file (one listing, one read per file), handing each summary to
    /// `visit`; a shard may come more than once when files overlap.
    pub async fn read_progress(
        &self,
        mut visit: impl FnMut(MarkerSummary),
    ) -> Result<ProgressLog, StoreError> {
        let mut log = ProgressLog::default();
        for meta in self.list(FOLDER).await? {
            let relative = self.relative_of(&meta.location);
            if !relative.ends_with(SUFFIX) {
                continue;
            }
            if !self.read_progress_file(&relative, &mut visit).await? {
                continue;
            }
            log.files.push(relative);
        }
        log.files.sort();
        Ok(log)
    }

    /// Reads one progress file, handing each summary to `visit`; false when the file is gone
    /// (compacted away by another reader since it was listed: its content is in a newer file,
    /// which the next reader finds).
    async fn read_progress_file(
        &self,
        relative: &str,
        visit: &mut impl FnMut(MarkerSummary),
    ) -> Result<bool, StoreError> {
        let bytes = match self.read(relative).await {
            Ok(bytes) => bytes,
            Err(StoreError::ObjectStore {
                source: object_store::Error::NotFound { .. },
                ..
            }) => return Ok(false),
            Err(error) => return Err(error),
        };
        let mut lines = BufReader::new(ZstdDecoder::new(&bytes[..])).lines();
        let bad = |reason: String| StoreError::Decode {
            path: self.url_of(relative),
            reason,
        };
        while let Some(line) = lines.next_line().await.map_err(|e| bad(e.to_string()))? {
            if line.trim().is_empty() {
                continue;
            }
            let summary: MarkerSummary =
                serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            visit(summary);
        }
        Ok(true)
    }

    /// Stores `summaries` as a new progress file and returns its path relative to the job
    /// folder (`None`, and nothing written, when there are none).
    pub async fn write_progress<'a>(
        &self,
        summaries: impl IntoIterator<Item = &'a MarkerSummary>,
    ) -> Result<Option<String>, StoreError> {
        let mut encoder = ZstdEncoder::new(Vec::new());
        let mut count = 0u64;
        for summary in summaries {
            let mut line =
                serde_json::to_vec(summary).map_err(|e| StoreError::Encode(e.to_string()))?;
            line.push(b'\n');
            encoder
                .write_all(&line)
                .await
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            count += 1;
        }
        if count == 0 {
            return Ok(None);
        }
        encoder
            .shutdown()
            .await
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let relative = format!("{FOLDER}/{}{SUFFIX}", uuid::Uuid::now_v7());
        self.put(&relative, encoder.into_inner().into()).await?;
        tracing::debug!(file = %relative, summaries = count, "progress written");
        Ok(Some(relative))
    }

    /// Writes `union` (which must hold everything `read` found) as one file, then deletes the
    /// files of `read`.
    pub async fn compact_progress<'a>(
        &self,
        read: &ProgressLog,
        union: impl IntoIterator<Item = &'a MarkerSummary>,
    ) -> Result<(), StoreError> {
        let written = self.write_progress(union).await?;
        for file in &read.files {
            if Some(file) == written.as_ref() {
                continue;
            }
            self.discard(Some(file), None).await?;
        }
        tracing::debug!(files = read.files.len(), "progress compacted");
        Ok(())
    }

    /// Compacts the files `read` found into one without holding their summaries: each file is
    /// read again and its lines go into the new file, each shard once; then the files of
    /// `read` are deleted. For readers that did not keep what they read.
    pub async fn compact_progress_files(&self, read: &ProgressLog) -> Result<(), StoreError> {
        let mut seen: HashSet<ShardId> = HashSet::new();
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3)
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        let mut count = 0u64;
        let mut failed: Option<StoreError> = None;
        for relative in &read.files {
            let mut copy = |summary: MarkerSummary| {
                if failed.is_some() || seen.contains(&summary.shard_id) {
                    return;
                }
                let written = serde_json::to_vec(&summary)
                    .map_err(|e| e.to_string())
                    .and_then(|mut line| {
                        line.push(b'\n');
                        encoder.write_all(&line).map_err(|e| e.to_string())
                    });
                match written {
                    Ok(()) => {
                        seen.insert(summary.shard_id);
                        count += 1;
                    }
                    Err(reason) => failed = Some(StoreError::Encode(reason)),
                }
            };
            self.read_progress_file(relative, &mut copy).await?;
            if let Some(error) = failed.take() {
                return Err(error);
            }
        }
        let bytes = encoder
            .finish()
            .map_err(|e| StoreError::Encode(e.to_string()))?;
        if count > 0 {
            let relative = format!("{FOLDER}/{}{SUFFIX}", uuid::Uuid::now_v7());
            self.put(&relative, bytes.into()).await?;
        }
        for file in &read.files {
            self.discard(Some(file), None).await?;
        }
        tracing::debug!(
            files = read.files.len(),
            summaries = count,
            "progress compacted"
        );
        Ok(())
    }

    /// The summaries of every committed shard: a listing of `commits/`, the progress log, and
    /// the markers the log does not summarise (read [`crate::MARKER_READS_IN_FLIGHT`] at a
    /// time). What it had to read is added to the log (compacting it when it has grown), so the
    /// next caller need not read it again; a failure to write the log only costs that.
    pub async fn committed_summaries(&self) -> Result<Vec<MarkerSummary>, StoreError> {
        self.summaries(true).await
    }

    /// Like [`JobStore::committed_summaries`], writing nothing when `record` is false (`gc`
    /// leaves the job folder as it found it but for what it removes).
    pub async fn summaries(&self, record: bool) -> Result<Vec<MarkerSummary>, StoreError> {
        let listed: HashSet<ShardId> = self.committed_shards().await?.into_iter().collect();
        let mut known: HashMap<ShardId, MarkerSummary> = HashMap::new();
        let log = self
            .read_progress(|summary| {
                if listed.contains(&summary.shard_id) {
                    known.entry(summary.shard_id.clone()).or_insert(summary);
                }
            })
            .await?;
        let missing: Vec<ShardId> = listed
            .iter()
            .filter(|shard| !known.contains_key(*shard))
            .cloned()
            .collect();
        let read: Vec<MarkerSummary> = self
            .read_markers(missing)
            .await?
            .iter()
            .map(CommitMarker::summary)
            .collect();
        let recorded = if !record {
            Ok(())
        } else if log.wants_compaction() {
            self.compact_progress(&log, known.values().chain(&read))
                .await
        } else {
            self.write_progress(&read).await.map(|_| ())
        };
        if let Err(error) = recorded {
            tracing::warn!(job = %self.url(), error = %error, "cannot record marker summaries in the progress log");
        }
        known.extend(read.into_iter().map(|s| (s.shard_id.clone(), s)));
        let mut summaries: Vec<MarkerSummary> = known.into_values().collect();
        summaries.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(summaries)
    }

    /// The requests this job's store has served so far (see [`crate::requests`]).
    pub fn requests(&self) -> crate::RequestTally {
        self.location().requests()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rubricmill_core::Usage;

    use super::*;

    fn summary(shard: &str, rows: u64) -> MarkerSummary {
        MarkerSummary {
            shard_id: ShardId(shard.into()),
            attempt_id: format!("attempt-{shard}"),
            worker_id: "w".into(),
            committed_at: Utc::now(),
            part: Some(format!("parts/{shard}/attempt-{shard}.parquet")),
            rejects_part: None,
            rows,
            rejects: 0,
            bytes: 10,
            checksum: Some("c".into()),
            records: 1,
            usage: Usage::default(),
            agreement: None,
        }
    }

    async fn read_all(store: &JobStore) -> (Vec<MarkerSummary>, ProgressLog) {
        let mut all = Vec::new();
        let log = store.read_progress(|s| all.push(s)).await.unwrap();
        all.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        (all, log)
    }

    #[tokio::test]
    async fn compaction_keeps_the_union_of_the_files_it_read_and_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        let (a, b, c) = (summary("a", 1), summary("b", 2), summary("c", 3));
        assert_eq!(store.write_progress([]).await.unwrap(), None);
        store.write_progress([&a, &b]).await.unwrap();
        store.write_progress([&b, &c]).await.unwrap();
        store.write_progress([&c]).await.unwrap();
        let (before, log) = read_all(&store).await;
        assert_eq!(log.files.len(), 3);
        assert_eq!(before.len(), 5, "b and c are in two files each");
        store.compact_progress_files(&log).await.unwrap();
        let (after, log) = read_all(&store).await;
        assert_eq!(log.files.len(), 1);
        assert_eq!(after, vec![a.clone(), b.clone(), c.clone()]);
        // A file written after the read survives a compaction of what was read.
        let d = summary("d", 4);
        store.write_progress([&d]).await.unwrap();
        store.compact_progress(&log, [&a, &b, &c]).await.unwrap();
        let (last, log) = read_all(&store).await;
        assert_eq!(log.files.len(), 2);
        assert_eq!(last, vec![a, b, c, d]);
    }
}
