//! The score pipeline (being built).

use std::collections::BTreeMap;

use rubricmill_core::spec::ScoreSpec;
use rubricmill_core::{PipelineKind, RawRecord};

use crate::pairs::FieldMap;
use crate::pipeline::{Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, Stages};

pub struct ScorePipeline {
    #[allow(dead_code)]
    spec: ScoreSpec,
    #[allow(dead_code)]
    fields: FieldMap,
}

impl ScorePipeline {
    pub fn new(_stages: &Stages, spec: ScoreSpec, fields: &BTreeMap<String, String>) -> Self {
        Self {
            spec,
            fields: FieldMap::new(fields),
        }
    }
}

#[async_trait::async_trait]
impl Pipeline for ScorePipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Score
    }

    fn prompt_hashes(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn estimate(&self, _record: &RawRecord) -> Estimate {
        Estimate::default()
    }

    async fn process(
        &self,
        record: RawRecord,
        ctx: &RecordContext,
    ) -> Result<RecordOutcome, PipelineError> {
        let mut outcome = RecordOutcome::default();
        outcome.enter("parse");
        outcome.reject(ctx, &record.source, "parse", "not built yet", "");
        Ok(outcome)
    }
}
