//! Everything a worker needs to process the shards of one job, built from the planned job:
//! the pipeline with its LLM gateway, the input and output stores, the output-file metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use rubricmill_core::{JobSpec, PipelineKind, ProviderKind};
use rubricmill_llm::{ChatProvider, Gateway, GatewayConfig, SimulatedProvider};
use rubricmill_mine::{CrgPipeline, Pipeline, ResearchQaPipeline, StageModel};
use rubricmill_store::{JobManifest, JobStore, StoreLocation};

use crate::RuntimeError;

/// One job, ready to have its shards processed.
pub struct JobContext {
    pub manifest: JobManifest,
    pub store: JobStore,
    pub inputs: StoreLocation,
    pub pipeline: Arc<dyn Pipeline>,
    pub gateway: Arc<Gateway>,
    /// Key-value metadata written into every Parquet file of the job.
    pub file_metadata: BTreeMap<String, String>,
}

impl JobContext {
    /// Builds the context of a planned job. `spent_before_usd` is what committed shards already
    /// cost, counted against the budget.
    pub fn new(manifest: JobManifest, spent_before_usd: f64) -> Result<Self, RuntimeError> {
        let spec = &manifest.spec;
        let store = JobStore::open(&spec.output.url, &spec.name)?;
        let inputs = StoreLocation::parse(&manifest.input_root)?;
        let provider = provider_for(spec)?;
        let gateway = Arc::new(Gateway::new(
            provider,
            GatewayConfig {
                price_per_million: spec.llm.price_per_million,
                max_cost_usd: spec.llm.max_cost_usd,
                spent_before_usd,
            },
        ));
        let model = StageModel {
            model: spec.llm.model.clone(),
            temperature: spec.llm.temperature,
            max_tokens: spec.llm.max_tokens,
            seed: spec.llm.seed,
        };
        let pipeline: Arc<dyn Pipeline> = match spec.pipeline {
            PipelineKind::Researchqa => Arc::new(ResearchQaPipeline::new(
                gateway.clone(),
                model,
                spec.researchqa.clone(),
            )),
            PipelineKind::Crg => Arc::new(CrgPipeline::new(
                gateway.clone(),
                model,
                spec.crg.clone(),
                spec.input.layout,
                &spec.input.fields,
            )),
        };
        let file_metadata = file_metadata(&manifest, pipeline.as_ref());
        Ok(Self {
            manifest,
            store,
            inputs,
            pipeline,
            gateway,
            file_metadata,
        })
    }

    pub fn spec(&self) -> &JobSpec {
        &self.manifest.spec
    }
}

fn provider_for(spec: &JobSpec) -> Result<Arc<dyn ChatProvider>, RuntimeError> {
    match spec.llm.provider {
        ProviderKind::Simulated => Ok(Arc::new(SimulatedProvider::new(spec.llm.simulated_latency_ms))),
        ProviderKind::Openai => Err(RuntimeError::Unsupported(
            "provider \"openai\" needs the LLM gateway, which this build does not have yet; use provider = \"simulated\" for a dry run"
                .into(),
        )),
    }
}

fn file_metadata(manifest: &JobManifest, pipeline: &dyn Pipeline) -> BTreeMap<String, String> {
    let spec = &manifest.spec;
    let simulated = spec.llm.provider == ProviderKind::Simulated;
    BTreeMap::from([
        ("rubricmill.job".into(), spec.name.clone()),
        ("rubricmill.pipeline".into(), spec.pipeline.as_str().into()),
        (
            "rubricmill.pipeline_version".into(),
            rubricmill_core::PIPELINE_VERSION.into(),
        ),
        (
            "rubricmill.fingerprint".into(),
            manifest.fingerprint.clone(),
        ),
        (
            "rubricmill.provider".into(),
            spec.llm.provider.as_str().into(),
        ),
        ("rubricmill.model".into(), spec.llm.model.clone()),
        ("rubricmill.simulated".into(), simulated.to_string()),
        (
            "rubricmill.prompt_hashes".into(),
            serde_json::to_string(&pipeline.prompt_hashes()).unwrap_or_default(),
        ),
    ])
}
