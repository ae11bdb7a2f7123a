//! Interchange formats for training teams. `rubricmill export --format …` reads committed rows
//! as JSON objects (one per row, columns as fields, as Arrow's JSON writer renders our Parquet
//! schemas) and converts each with [`convert`]. Each format lives in the module of the pipeline
//! it serves.

use rubricmill_core::PipelineKind;
use serde_json::Value;

mod crg;
mod researchqa;

/// An interchange format `export` can write besides Parquet and plain JSONL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterchangeFormat {
    /// The released ResearchQA JSON layout, readable by its evaluation loader.
    ResearchqaJson,
    /// OpenRubrics v2: `instruction, response_a, response_b, winner, rubric`.
    Openrubric,
    /// HealthBench / verl rubric rows: `prompt`, `rubrics: [{criterion, points, tags}]`.
    Healthbench,
}

/// How converted rows are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON value per line.
    JsonLines,
    /// One JSON array holding every value.
    JsonArray,
}

impl InterchangeFormat {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "researchqa-json" => Some(Self::ResearchqaJson),
            "openrubric" => Some(Self::Openrubric),
            "healthbench" => Some(Self::Healthbench),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ResearchqaJson => "researchqa-json",
            Self::Openrubric => "openrubric",
            Self::Healthbench => "healthbench",
        }
    }

    /// The pipeline whose rows this format holds.
    pub fn pipeline(self) -> PipelineKind {
        match self {
            Self::ResearchqaJson => PipelineKind::Researchqa,
            Self::Openrubric | Self::Healthbench => PipelineKind::Crg,
        }
    }

    pub fn layout(self) -> Layout {
        match self {
            Self::ResearchqaJson => researchqa::LAYOUT,
            Self::Openrubric => crg::OPENRUBRIC_LAYOUT,
            Self::Healthbench => crg::HEALTHBENCH_LAYOUT,
        }
    }

    /// File extension of a converted split.
    pub fn extension(self) -> &'static str {
        match self.layout() {
            Layout::JsonLines => "jsonl",
            Layout::JsonArray => "json",
        }
    }
}

/// Converts one output row; `Ok(None)` leaves the row out of this format (e.g. a CRG rubric
/// the consistency filter dropped).
pub fn convert(format: InterchangeFormat, row: &Value) -> Result<Option<Value>, String> {
    match format {
        InterchangeFormat::ResearchqaJson => researchqa::to_researchqa_json(row),
        InterchangeFormat::Openrubric => crg::to_openrubric(row),
        InterchangeFormat::Healthbench => crg::to_healthbench(row),
    }
}
