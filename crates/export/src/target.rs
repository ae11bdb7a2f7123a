//! The export target as versions: data files are written under `.staging/<version>/`, moved to
//! `data/<version>/` when every partition is done, then the card (`README.md`, whose
//! `data_files` name `data/<version>/…` only), `schema.json` and the commit record
//! `export.json` are written, and only then are other versions and the staging area removed.
//! A failed or killed export leaves the previous version, its card and its record as they
//! were; its own leftovers sit in `.staging/` (outside every `data/` glob) or in a
//! `data/<version>/` the card does not name, and the next successful export removes them.
//!
//! `export.json` also marks a target as rubricmill's: a non-empty target without it is refused
//! unless forced, and a target that overlaps the job's own folder is always refused.

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rubricmill_store::{JobStore, StoreLocation};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::{ExportError, ExportReport};

/// The commit record of the version the card points to.
pub const COMMIT_FILE: &str = "export.json";
/// Where partitions write before the commit.
pub const STAGING: &str = ".staging";
/// Where committed versions live.
pub const DATA: &str = "data";
/// What `export.json` says it is.
const COMMIT_FORMAT: &str = "rubricmill-export/1";

/// `export.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Commit {
    pub format: String,
    pub job: String,
    pub fingerprint: String,
    pub version: String,
    pub committed_at: String,
    pub report: ExportReport,
}

/// What one partition wrote into the staging area: `.staging/<version>/p<index>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionDone {
    pub index: u32,
    pub count: u32,
    /// The decide pass's figures (every partition makes the same decisions).
    pub rows_read: u64,
    pub not_kept: u64,
    pub duplicate_ids: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Per split (in the order of the options): the staged file names, rows and bytes.
    pub splits: Vec<StagedSplit>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedSplit {
    pub split: String,
    pub files: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
}

/// An export target folder.
pub struct Target {
    pub location: StoreLocation,
    handle: Handle,
}

impl Target {
    pub fn new(location: StoreLocation, handle: Handle) -> Self {
        Self { location, handle }
    }

    pub fn url(&self) -> String {
        self.location.url_of(&self.location.path)
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.location.path.clone();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        path
    }

    fn store_error(&self, relative: &str) -> impl Fn(object_store::Error) -> ExportError + '_ {
        let path = self.location.url_of(&self.path(relative));
        move |source| ExportError::ObjectStore {
            path: path.clone(),
            source,
        }
    }

    /// Refuses a target that overlaps the job's folder, or that holds files rubricmill export
    /// did not write (unless `force`); returns the version committed there, if any.
    pub fn check(&self, job: &JobStore, force: bool) -> Result<Option<Commit>, ExportError> {
        let job_location = job.location();
        if self.location.same_store(job_location)
            && (self.location.path.prefix_matches(&job_location.path)
                || job_location.path.prefix_matches(&self.location.path))
        {
            return Err(ExportError::Target(format!(
                "--target {} overlaps the job's own output folder {}: export into a folder of its own",
                self.url(),
                job.url()
            )));
        }
        let commit = self.commit()?;
        if commit.is_none() && !force {
            let prefix = self.location.path.clone();
            let foreign = self.handle.block_on(async {
                let mut listing = self.location.store.list(Some(&prefix));
                while let Some(meta) = listing.next().await {
                    match meta {
                        Ok(meta) => {
                            let staging = self.path(STAGING);
                            if !meta.location.prefix_matches(&staging) {
                                return Ok(Some(meta.location));
                            }
                        }
                        Err(object_store::Error::NotFound { .. }) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                Ok(None)
            });
            if let Some(found) = foreign.map_err(self.store_error(""))? {
                return Err(ExportError::Target(format!(
                    "--target {} is not empty and has no {COMMIT_FILE}, so rubricmill export did not write it (it holds {}); \
                     choose an empty folder, or pass --force to let this export replace its data/, README.md and schema.json",
                    self.url(),
                    self.location.url_of(&found)
                )));
            }
        }
        Ok(commit)
    }

    /// The committed version's record.
    pub fn commit(&self) -> Result<Option<Commit>, ExportError> {
        let Some(bytes) = self.get(COMMIT_FILE)? else {
            return Ok(None);
        };
        let commit: Commit = serde_json::from_slice(&bytes).map_err(|e| ExportError::Read {
            path: self.location.url_of(&self.path(COMMIT_FILE)),
            reason: e.to_string(),
        })?;
        Ok((commit.format == COMMIT_FORMAT).then_some(commit))
    }

    fn get(&self, relative: &str) -> Result<Option<Bytes>, ExportError> {
        let path = self.path(relative);
        let result = self.handle.block_on(async {
            match self.location.store.get(&path).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result.map_err(self.store_error(relative))
    }

    /// Writes one small file whole.
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), ExportError> {
        let path = self.path(relative);
        self.handle
            .block_on(self.location.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(self.store_error(relative))
    }

    /// The folder a partition stages its files in.
    pub fn partition_folder(&self, version: &str, index: u32) -> StoreLocation {
        self.location
            .child(STAGING)
            .child(version)
            .child(&format!("p{index}"))
    }

    fn done_file(version: &str, index: u32) -> String {
        format!("{STAGING}/{version}/p{index}.json")
    }

    pub fn write_done(&self, version: &str, done: &PartitionDone) -> Result<(), ExportError> {
        let json = serde_json::to_vec_pretty(done).map_err(|e| ExportError::Write {
            path: Self::done_file(version, done.index),
            reason: e.to_string(),
        })?;
        self.put(&Self::done_file(version, done.index), json)
    }

    /// The done records of partitions `0..count` of a version, and the indexes missing.
    pub fn partitions_done(
        &self,
        version: &str,
        count: u32,
    ) -> Result<(Vec<PartitionDone>, Vec<u32>), ExportError> {
        let mut done = Vec::new();
        let mut missing = Vec::new();
        for index in 0..count {
            let relative = Self::done_file(version, index);
            match self.get(&relative)? {
                None => missing.push(index),
                Some(bytes) => {
                    let record: PartitionDone =
                        serde_json::from_slice(&bytes).map_err(|e| ExportError::Read {
                            path: self.location.url_of(&self.path(&relative)),
                            reason: e.to_string(),
                        })?;
                    done.push(record);
                }
            }
        }
        Ok((done, missing))
    }

    /// Moves a staged file to its committed name; a file already moved (by an earlier or a
    /// concurrent merge of the same version) is fine.
    pub fn promote(&self, staged: &str, committed: &str) -> Result<(), ExportError> {
        let (from, to) = (self.path(staged), self.path(committed));
        let result = self.handle.block_on(async {
            match self.location.store.rename(&from, &to).await {
                Err(object_store::Error::NotFound { .. }) => {
                    self.location.store.head(&to).await.map(|_| ())
                }
                other => other,
            }
        });
        result.map_err(self.store_error(staged))
    }

    /// After a commit: removes every file under `data/` that is not in `data/<version>/`, and
    /// the staging area.
    pub fn remove_other_versions(&self, version: &str) -> Result<u64, ExportError> {
        let keep = self.path(&format!("{DATA}/{version}"));
        let mut removed = 0;
        for folder in [DATA, STAGING] {
            let prefix = self.path(folder);
            let paths: Vec<Path> = self
                .handle
                .block_on(async {
                    let mut paths = Vec::new();
                    let mut listing = self.location.store.list(Some(&prefix));
                    while let Some(meta) = listing.next().await {
                        match meta {
                            Ok(meta) => paths.push(meta.location),
                            Err(object_store::Error::NotFound { .. }) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(paths)
                })
                .map_err(self.store_error(folder))?;
            for path in paths.into_iter().filter(|p| !p.prefix_matches(&keep)) {
                let result = self.handle.block_on(self.location.store.delete(&path));
                match result {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(source) => {
                        return Err(ExportError::ObjectStore {
                            path: self.location.url_of(&path),
                            source,
                        });
                    }
                }
            }
            // local folders: the emptied directories (and staging files of killed writers)
            if let Some(local) = self.location.local_path(&prefix)
                && let Ok(entries) = std::fs::read_dir(&local)
            {
                for entry in entries.flatten() {
                    let is_kept = folder == DATA && entry.file_name().to_str() == Some(version);
                    if !is_kept && entry.path().is_dir() {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
                if folder == STAGING {
                    let _ = std::fs::remove_dir_all(&local);
                }
            }
        }
        Ok(removed)
    }
}
