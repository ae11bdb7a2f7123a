//! The output layout of a job and its commit protocol, which makes output exactly once however
//! often a shard is attempted:
//!
//! ```text
//! <output>/<job>/job.json                           the plan: spec, fingerprint, chunk index
//! <output>/<job>/plan/<checksum>.jsonl.zst          the plan's shards (see `plan`)
//! <output>/<job>/parts/<shard>/<attempt>.parquet    rows written by one attempt
//! <output>/<job>/rejects/<shard>/<attempt>.parquet  rejects written by one attempt
//! <output>/<job>/commits/<shard>.json               the marker: which attempt won
//! <output>/<job>/spend/<shard>/<attempt>.json       what an attempt paid (see `spend`)
//! <output>/<job>/progress/<writer>.jsonl.zst        marker summaries (see `progress`)
//! ```
//!
//! An attempt writes its files under its own attempt id, then creates the marker with a
//! put-if-absent. The first marker wins; a loser deletes its files. A put whose outcome is
//! unknown (timeout) is resolved by reading the marker back. Readers trust only markers.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rubricmill_core::{JobManifest, ShardId, StageCounts, Usage};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::location::StoreLocation;

/// How many marker reads one reader keeps in flight: enough to hide an object store's
/// latency (a GET on S3 takes 10–30 ms), few enough not to be throttled.
pub const MARKER_READS_IN_FLIGHT: usize = 64;

/// The commit marker of one shard: the truth about what the job produced for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitMarker {
    pub shard_id: ShardId,
    pub attempt_id: String,
    pub worker_id: String,
    pub committed_at: DateTime<Utc>,
    /// Path of the rows file relative to the job folder; `None` when the shard made no rows.
    pub part: Option<String>,
    /// Path of the rejects file relative to the job folder; `None` when nothing was rejected.
    pub rejects_part: Option<String>,
    pub rows: u64,
    pub rejects: u64,
    /// Size of the rows file.
    pub bytes: u64,
    /// blake3 of the rows file.
    pub checksum: Option<String>,
    /// Input records the shard read.
    pub records: u64,
    pub stages: BTreeMap<String, StageCounts>,
    pub usage: Usage,
}

/// Files one attempt wrote.
#[derive(Debug, Clone, Default)]
pub struct AttemptFiles {
    pub part: Option<(String, u64, String)>,
    pub rejects_part: Option<String>,
}

/// What became of a commit.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// Our marker is the shard's marker.
    Won,
    /// Another attempt committed first; its marker is here and our files were removed.
    Lost(Box<CommitMarker>),
}

/// One job's folder in the output store.
#[derive(Debug, Clone)]
pub struct JobStore {
    location: StoreLocation,
}

impl JobStore {
    /// The folder `<output>/<job name>`.
    pub fn open(output_url: &str, job_name: &str) -> Result<Self, StoreError> {
        Ok(Self {
            location: StoreLocation::parse(output_url)?.child(job_name),
        })
    }

    /// The job folder in an already opened store.
    pub fn at(output: &StoreLocation, job_name: &str) -> Self {
        Self {
            location: output.child(job_name),
        }
    }

    /// The job folder's location.
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    pub fn url(&self) -> String {
        self.location.url_of(&self.location.path)
    }

    pub(crate) fn path(&self, relative: &str) -> Path {
        let mut path = self.location.path.clone();
        for part in relative.split('/') {
            path = path.join(part);
        }
        path
    }

    /// One example of each kind of file the job folder holds (the plan, a marker, a rows part,
    /// a rejects part, a spend file, a progress file), to tell whether an input pattern would pick the job's own
    /// output up as input.
    pub fn layout_examples(&self) -> Vec<Path> {
        [
            "job.json",
            "plan/chunk.jsonl.zst",
            "commits/shard.json",
            "parts/shard/attempt.parquet",
            "rejects/shard/attempt.parquet",
            "spend/shard/attempt.json",
            "batches/shard.json",
            "progress/writer.jsonl.zst",
        ]
        .into_iter()
        .map(|relative| self.path(relative))
        .collect()
    }

    /// Full URL of a file named relative to the job folder.
    pub fn url_of(&self, relative: &str) -> String {
        self.location.url_of(&self.path(relative))
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        relative: &str,
    ) -> Result<Option<T>, StoreError> {
        let path = self.path(relative);
        let bytes = match self.location.store.get(&path).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(|source| StoreError::store("get", path.as_ref(), source))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(StoreError::store("get", path.as_ref(), source)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Decode {
                path: self.url_of(relative),
                reason: source.to_string(),
            })
    }

    /// Writes `value` as JSON only if nothing is there yet. Returns false when something was.
    async fn put_json_if_absent<T: Serialize>(
        &self,
        relative: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        let path = self.path(relative);
        let json =
            serde_json::to_vec_pretty(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .location
            .store
            .put_opts(&path, PutPayload::from(json), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(StoreError::store("put-if-absent", path.as_ref(), source)),
        }
    }

    pub async fn load_manifest(&self) -> Result<Option<JobManifest>, StoreError> {
        let manifest: Option<JobManifest> = self.get_json("job.json").await?;
        Ok(manifest.map(JobManifest::with_counts_of_inline_shards))
    }

    /// Stores the plan unless one exists; returns the plan in force (ours or the earlier one).
    /// A put whose outcome is unknown (a timeout: it may have landed) is resolved by reading
    /// the plan back, and tried again while none is there.
    pub async fn create_manifest(&self, manifest: &JobManifest) -> Result<JobManifest, StoreError> {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match self.put_json_if_absent("job.json", manifest).await {
                Ok(true) => return Ok(manifest.clone()),
                Ok(false) => break,
                Err(error) if error.is_retryable() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %error, attempt, "storing the plan had an unknown outcome, reading it back");
                    if let Some(stored) = self.load_manifest().await? {
                        return Ok(stored);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        self.load_manifest()
            .await?
            .ok_or_else(|| StoreError::Decode {
                path: self.url_of("job.json"),
                reason: "job.json existed a moment ago and is gone".into(),
            })
    }

    fn marker_relative(shard: &ShardId) -> String {
        format!("commits/{shard}.json")
    }

    pub async fn marker(&self, shard: &ShardId) -> Result<Option<CommitMarker>, StoreError> {
        self.get_json(&Self::marker_relative(shard)).await
    }

    /// Every commit marker of the job, sorted by shard id: one listing, then the markers read
    /// [`MARKER_READS_IN_FLIGHT`] at a time.
    pub async fn markers(&self) -> Result<Vec<CommitMarker>, StoreError> {
        let shards = self.committed_shards().await?;
        let mut markers = self.read_markers(shards).await?;
        markers.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(markers)
    }

    /// Reads the markers of `shards` with a bounded window of requests in flight, in no
    /// particular order; a shard whose marker is missing is left out.
    pub async fn read_markers(
        &self,
        shards: impl IntoIterator<Item = ShardId>,
    ) -> Result<Vec<CommitMarker>, StoreError> {
        let mut reads = futures::stream::iter(shards)
            .map(|shard| async move { self.marker(&shard).await })
            .buffer_unordered(MARKER_READS_IN_FLIGHT);
        let mut markers = Vec::new();
        while let Some(marker) = reads.next().await {
            markers.extend(marker?);
        }
        Ok(markers)
    }

    /// The shards that have a commit marker, sorted (listings, no reads). A cloud store pages a
    /// listing 1,000 keys at a time, each page waiting for the one before, so `commits/` is
    /// listed as 16 ranges side by side, one per first hex digit of the shard ids (a range
    /// starts after its digit's predecessor, as S3's `start-after` does, and stops at the
    /// next digit): a million markers take about 63 pages in each of 16 listings instead of
    /// 1,000 in one. A local folder is listed once (a ranged listing there walks it whole).
    pub async fn committed_shards(&self) -> Result<Vec<ShardId>, StoreError> {
        let prefix = self.path("commits");
        let names: Vec<String> = if self.location.local_path(&prefix).is_some() {
            self.list("commits")
                .await?
                .iter()
                .filter_map(|meta| meta.location.filename().map(str::to_owned))
                .collect()
        } else {
            let ranges = futures::stream::iter(0..16u32)
                .map(|digit| self.list_marker_range(&prefix, digit))
                .buffer_unordered(16);
            let ranges: Vec<Vec<String>> = futures::TryStreamExt::try_collect(ranges).await?;
            ranges.into_iter().flatten().collect()
        };
        let mut shards: Vec<ShardId> = names
            .iter()
            .filter_map(|name| name.strip_suffix(".json"))
            .map(|shard| ShardId(shard.to_owned()))
            .collect();
        shards.sort();
        Ok(shards)
    }

    /// File names under `prefix` whose first character sorts from hex digit `digit` up to the
    /// next one (the first range also takes names before `0`, the last every name after `f`).
    async fn list_marker_range(
        &self,
        prefix: &Path,
        digit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let first = char::from_digit(digit, 16).expect("a hex digit");
        let next = char::from_digit(digit + 1, 16);
        let mut listing = if digit == 0 {
            self.location.store.list(Some(prefix))
        } else {
            // Keys after `commits/<digit>`: every name that starts with the digit or later.
            let offset = prefix.clone().join(first.to_string());
            self.location.store.list_with_offset(Some(prefix), &offset)
        };
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = match meta {
                Ok(meta) => meta,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(source) => return Err(StoreError::store("list", prefix.as_ref(), source)),
            };
            let Some(name) = meta.location.filename() else {
                continue;
            };
            if next.is_some_and(|next| name.chars().next().is_some_and(|c| c >= next)) {
                break;
            }
            names.push(name.to_owned());
        }
        Ok(names)
    }

    /// Every file under a folder of the job (none when the folder does not exist).
    pub(crate) async fn list(&self, folder: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = self.path(folder);
        let mut listing = self.location.store.list(Some(&prefix));
        let mut files = Vec::new();
        while let Some(meta) = listing.next().await {
            match meta {
                Ok(meta) => files.push(meta),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(source) => return Err(StoreError::store("list", prefix.as_ref(), source)),
            }
        }
        Ok(files)
    }

    /// Where an attempt's file goes: `<folder>/<shard>/<attempt>.parquet`.
    fn attempt_relative(folder: &str, shard: &ShardId, attempt: &str) -> String {
        format!("{folder}/{shard}/{attempt}.parquet")
    }

    /// Writes one attempt's files whole, under its unique attempt id (plain puts: they never
    /// collide). Workers stream theirs through [`JobStore::begin_part`]; this is for files
    /// already encoded (tests, tools).
    pub async fn write_attempt(
        &self,
        shard: &ShardId,
        attempt: &str,
        rows: Option<Bytes>,
        rejects: Option<Bytes>,
    ) -> Result<AttemptFiles, StoreError> {
        let mut files = AttemptFiles::default();
        if let Some(rows) = rows {
            let relative = Self::attempt_relative("parts", shard, attempt);
            let size = rows.len() as u64;
            let checksum = rubricmill_core::content_hash(&rows);
            self.put(&relative, rows).await?;
            files.part = Some((relative, size, checksum));
        }
        if let Some(rejects) = rejects {
            let relative = Self::attempt_relative("rejects", shard, attempt);
            self.put(&relative, rejects).await?;
            files.rejects_part = Some(relative);
        }
        Ok(files)
    }

    /// Starts a streamed attempt file: `parts/<shard>/<attempt>.parquet` (rows) or
    /// `rejects/<shard>/<attempt>.parquet`.
    pub fn begin_part(
        &self,
        folder: &str,
        shard: &ShardId,
        attempt: &str,
        schema: arrow_schema::SchemaRef,
        metadata: &BTreeMap<String, String>,
    ) -> Result<crate::part::PartWriter, StoreError> {
        let relative = Self::attempt_relative(folder, shard, attempt);
        let path = self.path(&relative);
        crate::part::PartWriter::create(&self.location.store, path, relative, schema, metadata)
    }

    pub(crate) async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(relative);
        self.location
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::store("put", path.as_ref(), source))
    }

    /// Creates the shard's marker if no attempt has; see the module docs for the protocol.
    pub async fn commit(&self, marker: &CommitMarker) -> Result<CommitOutcome, StoreError> {
        let relative = Self::marker_relative(&marker.shard_id);
        let created = match self.put_json_if_absent(&relative, marker).await {
            Ok(created) => created,
            Err(error) => {
                // The outcome is unknown: the put may have landed. The marker says.
                tracing::warn!(shard = %marker.shard_id, error = %error, "commit outcome unknown, reading marker back");
                match self.marker(&marker.shard_id).await? {
                    Some(existing) if existing.attempt_id == marker.attempt_id => {
                        return Ok(CommitOutcome::Won);
                    }
                    Some(existing) => return self.lose(marker, existing).await,
                    None => return Err(error),
                }
            }
        };
        if created {
            return Ok(CommitOutcome::Won);
        }
        match self.marker(&marker.shard_id).await? {
            Some(existing) if existing.attempt_id == marker.attempt_id => Ok(CommitOutcome::Won),
            Some(existing) => self.lose(marker, existing).await,
            None => Err(StoreError::Decode {
                path: self.url_of(&relative),
                reason: "marker vanished after a conflicting put".into(),
            }),
        }
    }

    async fn lose(
        &self,
        ours: &CommitMarker,
        winner: CommitMarker,
    ) -> Result<CommitOutcome, StoreError> {
        tracing::info!(shard = %ours.shard_id, attempt = %ours.attempt_id, winner = %winner.attempt_id, "lost commit race, removing attempt files");
        self.discard(ours.part.as_deref(), ours.rejects_part.as_deref())
            .await?;
        Ok(CommitOutcome::Lost(Box::new(winner)))
    }

    /// Deletes an attempt's files (missing files are fine).
    pub async fn discard(
        &self,
        part: Option<&str>,
        rejects_part: Option<&str>,
    ) -> Result<(), StoreError> {
        for relative in [part, rejects_part].into_iter().flatten() {
            let path = self.path(relative);
            match self.location.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(StoreError::store("delete", path.as_ref(), source)),
            }
        }
        Ok(())
    }

    /// Removes attempt files (`parts/`, `rejects/`) that no commit marker references and plan
    /// chunks (`plan/`) that `job.json` does not list (a planner that lost the race to store
    /// the plan), older than `grace` (younger ones may belong to an attempt or a planner still
    /// running). Returns the
    /// removed files' paths relative to the job folder; `dry_run` only lists them.
    pub async fn gc(
        &self,
        grace: std::time::Duration,
        dry_run: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut referenced: std::collections::HashSet<String> = self
            .summaries(false)
            .await?
            .into_iter()
            .flat_map(|m| [m.part, m.rejects_part])
            .flatten()
            .collect();
        if let Some(manifest) = self.load_manifest().await? {
            referenced.extend(manifest.chunks.into_iter().map(|chunk| chunk.file));
        }
        let cutoff =
            Utc::now() - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let root = self.location.path.as_ref().to_owned();
        let mut removed = Vec::new();
        for folder in ["parts", "rejects", crate::plan::PLAN_FOLDER] {
            for meta in self.list(folder).await? {
                let full = meta.location.as_ref();
                let relative = full
                    .strip_prefix(&root)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_owned();
                if referenced.contains(&relative) || meta.last_modified > cutoff {
                    continue;
                }
                if !dry_run {
                    self.discard(Some(&relative), None).await?;
                }
                removed.push(relative);
            }
        }
        removed.extend(self.gc_staging_files(cutoff, dry_run).await?);
        removed.sort();
        Ok(removed)
    }

    /// Local stores write each file as `<name>#<n>` and rename it into place; a process killed
    /// in between leaves the staging file, which the store's own listing never shows. Removes
    /// those older than `cutoff` below the job folder.
    async fn gc_staging_files(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<String>, StoreError> {
        let Some(root) = self.location.local_path(&self.location.path) else {
            return Ok(Vec::new());
        };
        let found = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut folders = vec![root.clone()];
            while let Some(folder) = folders.pop() {
                let Ok(entries) = std::fs::read_dir(&folder) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    let path = entry.path();
                    if kind.is_dir() {
                        folders.push(path);
                        continue;
                    }
                    let name = entry.file_name();
                    let is_staging =
                        name.to_str()
                            .and_then(|n| n.rsplit_once('#'))
                            .is_some_and(|(_, n)| {
                                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                            });
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| DateTime::<Utc>::from(m) <= cutoff);
                    if kind.is_file() && is_staging && old {
                        let relative = path.strip_prefix(&root).unwrap_or(&path).to_owned();
                        found.push((path, relative));
                    }
                }
            }
            found
        })
        .await
        .map_err(|e| StoreError::io(&self.url(), std::io::Error::other(e)))?;
        let mut removed = Vec::new();
        for (path, relative) in found {
            if !dry_run {
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(StoreError::io(&path.display().to_string(), source));
                    }
                }
            }
            removed.push(relative.to_string_lossy().into_owned());
        }
        Ok(removed)
    }

    /// Reads a whole file of the job folder (parts, rejects).
    pub async fn read(&self, relative: &str) -> Result<Bytes, StoreError> {
        let path = self.path(relative);
        let result = self
            .location
            .store
            .get(&path)
            .await
            .map_err(|source| StoreError::store("get", path.as_ref(), source))?;
        result
            .bytes()
            .await
            .map_err(|source| StoreError::store("get", path.as_ref(), source))
    }
}
