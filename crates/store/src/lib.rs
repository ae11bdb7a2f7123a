//! Everything rubricmill reads from and writes to object storage: URLs and globs, input readers
//! and shard planning, Parquet encoding of the output tables, and the commit protocol that makes
//! output exactly once. One code path serves `file://`, `s3://`, `gs://` and `az://`.

pub mod batches;
mod cloud;
pub mod commit;
pub mod input;
mod lines;
pub mod location;
pub mod output;
mod parquet_input;
pub mod part;
pub mod plan;
pub mod progress;
pub mod requests;
pub mod spend;

pub use batches::{BatchRound, BatchRoundItem, ShardBatches};
pub use commit::{AttemptFiles, CommitMarker, CommitOutcome, JobStore, MARKER_READS_IN_FLIGHT};
pub use input::{
    InputFile, Inputs, ReadItem, list_inputs, list_inputs_with, plan_shards, plan_shards_into,
    read_shard,
};
pub use location::{StoreLocation, to_url};
pub use plan::{PlanIndex, PlanWriter, SHARDS_PER_CHUNK};
pub use progress::{PROGRESS_FILES_BEFORE_COMPACTION, ProgressLog};
pub use requests::{LIST_PAGE, RequestTally};
pub use rubricmill_core::JobManifest;
pub use rubricmill_core::MarkerSummary;
pub use spend::{AttemptSpend, UncommittedSpend};

/// Failures of storage operations. Record-level problems are not errors: they become rejects.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad location {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("no input files match {pattern}")]
    NoInputs { pattern: String },
    #[error("cannot tell the format of {file}: set input.format")]
    UnknownFormat { file: String },
    #[error("object store {op} {path}: {source}")]
    ObjectStore {
        op: &'static str,
        path: String,
        source: object_store::Error,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot decode {path}: {reason}")]
    Decode { path: String, reason: String },
    #[error("cannot encode output: {0}")]
    Encode(String),
}

impl StoreError {
    pub(crate) fn store(op: &'static str, path: &str, source: object_store::Error) -> Self {
        StoreError::ObjectStore {
            op,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn io(path: &str, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn parquet(path: &str, source: parquet::errors::ParquetError) -> Self {
        StoreError::Parquet {
            path: path.to_owned(),
            source,
        }
    }

    /// True for failures that may pass on a later attempt (network, throttling, stalls), false
    /// for ones that will not (bad URLs, undecodable files, encoding bugs).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::ObjectStore { source, .. } => !matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            StoreError::Io { .. } => true,
            _ => false,
        }
    }
}
