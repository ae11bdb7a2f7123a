//! The nuggets pipeline (being built).

use std::collections::BTreeMap;

use rubricmill_core::spec::NuggetsSpec;
use rubricmill_core::{PipelineKind, RawRecord};

use crate::pairs::FieldMap;
use crate::pipeline::{Estimate, Pipeline, PipelineError, RecordContext, RecordOutcome, Stages};

pub struct NuggetsPipeline {
    #[allow(dead_code)]
    spec: NuggetsSpec,
    #[allow(dead_code)]
    fields: FieldMap,
}

impl NuggetsPipeline {
    pub fn new(_stages: &Stages, spec: NuggetsSpec, fields: &BTreeMap<String, String>) -> Self {
        Self {
            spec,
            fields: FieldMap::new(fields),
        }
    }
}

#[async_trait::async_trait]
impl Pipeline for NuggetsPipeline {
    fn kind(&self) -> PipelineKind {
        PipelineKind::Nuggets
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
