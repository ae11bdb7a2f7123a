//! The two rubricmill pipelines and the input parsing they need: survey sections and references
//! (researchqa), preference-pair normalisation (crg), prompt templates and answer parsing.

pub mod pairs;
pub mod sections;
