//! Input records as readers hand them to pipelines, and the normalised shapes pipelines mine.

use serde::{Deserialize, Serialize};

/// Where a record came from: the input file and the position inside it. Every output row and
/// every reject row carries one, so any row can be traced back to its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// The input object's URL (`file:///…`, `s3://…`).
    pub file: String,
    pub location: Location,
}

impl SourceRef {
    pub fn new(file: impl Into<String>, location: Location) -> Self {
        Self {
            file: file.into(),
            location,
        }
    }
}

/// A position inside an input file, in the unit that suits its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Location {
    /// The whole file is one record (a Markdown survey, a single JSON object).
    Document,
    /// One-based line number in a JSONL file.
    Line(u64),
    /// Zero-based element index in a JSON array file.
    Element(u64),
    /// Zero-based row index in a Parquet file.
    Row(u64),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Document => f.write_str("document"),
            Location::Line(n) => write!(f, "line {n}"),
            Location::Element(n) => write!(f, "element {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.file, self.location)
    }
}

/// What a reader produced for one record, before any pipeline-specific parsing.
#[derive(Debug, Clone, PartialEq)]
pub enum RawPayload {
    /// A whole text document (Markdown survey).
    Text(String),
    /// One structured record (a JSONL line, a JSON array element, a Parquet row).
    Json(serde_json::Value),
}

/// One record read from an input file.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub source: SourceRef,
    pub payload: RawPayload,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A preference pair in normal form: the conversation so far (ending with the user's turn) and
/// the two competing assistant answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// Stable id: given by the input's id field, else derived from the content.
    pub pair_id: String,
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
}
