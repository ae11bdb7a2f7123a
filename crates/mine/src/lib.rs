//! The rubricmill pipelines and the input parsing they need: survey sections and references
//! (researchqa), preference-pair normalisation (crg), prompt-and-reference records
//! (reference), prompt templates and answer parsing.

pub mod crg;
pub mod formats;
pub mod grading;
pub mod nuggets;
pub mod pairs;
pub mod pipeline;
pub mod prompt;
pub mod reference;
pub mod researchqa;
pub mod rubric_filters;
pub mod score;
pub mod sections;

pub use crg::CrgPipeline;
pub use nuggets::NuggetsPipeline;
pub use pipeline::{
    Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, StageModel, Stages,
};
pub use prompt::Templates;
pub use reference::ReferencePipeline;
pub use researchqa::ResearchQaPipeline;
pub use score::ScorePipeline;
