//! The shared vocabulary of rubricmill: the job spec, input records, shards, output rows and
//! the error kinds every other crate speaks. Nothing here does I/O, so every crate can depend on
//! it and tests can build these values by hand.

pub mod hash;
pub mod limits;
pub mod marker;
pub mod plan;
pub mod record;
pub mod row;
pub mod secret;
pub mod shard;
pub mod spec;
pub mod spec_reference;
pub mod text;
pub mod usage;

pub use hash::{content_hash, short_hash};
pub use limits::DiscoveredLimits;
pub use marker::MarkerSummary;
pub use plan::{JobManifest, PlanChunk};
pub use record::{Location, Message, PreferencePair, RawPayload, RawRecord, SourceRef};
pub use row::{
    CitationMetadata, CitedReference, CrgAttempt, CrgRow, CrgRubricItem, CriterionVerdict,
    JudgeVerdict, Nugget, NuggetPassage, NuggetRow, OutputRow, Provenance, ReferenceCriterion,
    ReferenceRow, RejectRow, ResearchQaRow, RubricItem, ScoreCriterion, ScoreRow, ScoredResponse,
};
pub use shard::{FileRef, ShardId, ShardSpec, ShardUnit};
pub use spec::{InputFormat, JobSpec, LlmMode, PairLayout, PipelineKind, ProviderKind, SpecError};
pub use usage::{StageCounts, Usage};

/// Version of the row layout and pipeline logic, written into every output file's metadata so
/// readers can tell which code made a dataset.
pub const PIPELINE_VERSION: &str = concat!("rubricmill/", env!("CARGO_PKG_VERSION"));
