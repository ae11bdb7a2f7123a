//! Shards: the unit of work, commit and retry. A shard's id is derived from the identity of the
//! input files it covers and the range inside them, never from cluster layout, so planning the
//! same inputs twice yields the same shards and a re-run skips what is committed.

use serde::{Deserialize, Serialize};

use crate::hash::short_hash;

/// Content-derived shard id: 24 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub String);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl ShardId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The identity of one input object as the object store reported it at planning time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Full URL of the object.
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
    /// RFC 3339 modification time.
    pub last_modified: String,
}

impl FileRef {
    /// The part of the identity that changes when the file's content changes.
    fn identity(&self) -> String {
        let version = self.etag.as_deref().unwrap_or(&self.last_modified);
        format!("{}|{}|{}", self.url, self.size, version)
    }
}

/// What slice of the input a shard covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShardUnit {
    /// Whole files, each read as one document or one JSON value (Markdown, JSON).
    Files { files: Vec<FileRef> },
    /// Lines `[first_line, first_line + line_count)` of a JSONL file (one-based). For an
    /// uncompressed file `byte_range` locates them so the reader fetches only that range.
    Lines {
        file: FileRef,
        first_line: u64,
        line_count: u64,
        byte_range: Option<(u64, u64)>,
    },
    /// Whole row groups of a Parquet file; `first_row` is the index of their first row.
    RowGroups {
        file: FileRef,
        row_groups: Vec<usize>,
        first_row: u64,
    },
    /// A file, or its part from `first_line` on, that planning found it cannot read (a FIFO, a
    /// corrupt Parquet footer, a truncated compressed stream): reading this unit yields one
    /// reject with `reason`, so the file is accounted for instead of blocking the job.
    Unreadable {
        file: FileRef,
        /// The first line not readable, for a JSONL file whose stream broke part way.
        first_line: Option<u64>,
        reason: String,
    },
}

impl ShardUnit {
    /// Files this unit reads.
    pub fn files(&self) -> Vec<&FileRef> {
        match self {
            ShardUnit::Files { files } => files.iter().collect(),
            ShardUnit::Lines { file, .. }
            | ShardUnit::RowGroups { file, .. }
            | ShardUnit::Unreadable { file, .. } => vec![file],
        }
    }

    fn identity(&self) -> String {
        match self {
            ShardUnit::Files { files } => {
                let ids: Vec<String> = files.iter().map(FileRef::identity).collect();
                format!("files:{}", ids.join(";"))
            }
            ShardUnit::Lines {
                file,
                first_line,
                line_count,
                ..
            } => {
                format!("lines:{}:{first_line}+{line_count}", file.identity())
            }
            ShardUnit::RowGroups {
                file, row_groups, ..
            } => {
                format!("row_groups:{}:{row_groups:?}", file.identity())
            }
            ShardUnit::Unreadable {
                file, first_line, ..
            } => format!("unreadable:{}:{}", file.identity(), first_line.unwrap_or(0)),
        }
    }
}

/// One planned shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub id: ShardId,
    /// Records the planner expects in this shard (files for Markdown): used for progress only.
    pub expected_records: u64,
    pub unit: ShardUnit,
}

impl ShardSpec {
    pub fn new(unit: ShardUnit, expected_records: u64) -> Self {
        let id = ShardId(short_hash(unit.identity().as_bytes(), 24));
        Self {
            id,
            expected_records,
            unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(url: &str, size: u64) -> FileRef {
        FileRef {
            url: url.into(),
            size,
            etag: None,
            last_modified: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn shard_id_depends_on_content_identity_and_range_only() {
        let a = ShardSpec::new(
            ShardUnit::Lines {
                file: file("file:///a.jsonl", 10),
                first_line: 1,
                line_count: 5,
                byte_range: None,
            },
            5,
        );
        let same = ShardSpec::new(
            ShardUnit::Lines {
                file: file("file:///a.jsonl", 10),
                first_line: 1,
                line_count: 5,
                byte_range: Some((0, 9)),
            },
            99,
        );
        let other_range = ShardSpec::new(
            ShardUnit::Lines {
                file: file("file:///a.jsonl", 10),
                first_line: 6,
                line_count: 5,
                byte_range: None,
            },
            5,
        );
        let changed_file = ShardSpec::new(
            ShardUnit::Lines {
                file: file("file:///a.jsonl", 11),
                first_line: 1,
                line_count: 5,
                byte_range: None,
            },
            5,
        );
        assert_eq!(a.id, same.id);
        assert_ne!(a.id, other_range.id);
        assert_ne!(a.id, changed_file.id);
        assert_eq!(a.id.as_str().len(), 24);
    }
}
