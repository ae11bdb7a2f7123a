//! Everything a worker needs to process the shards of one job, built from the planned job:
//! the pipeline with its LLM gateway, the input and output stores, the output-file metadata.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rubricmill_core::spec::{LlmSpec, llm_stages};
use rubricmill_core::{DiscoveredLimits, JobSpec, LlmMode, PipelineKind, ProviderKind};
use rubricmill_llm::azure::AzureTarget;
use rubricmill_llm::batch::BatchApi;
use rubricmill_llm::{
    AnthropicProvider, Budget, CacheStore, ChatProvider, EndpointConfig, Gateway, GatewayConfig,
    Limits, OpenAiProvider, SimulatedProvider, endpoint_identity,
};
use rubricmill_mine::{
    CrgPipeline, NuggetsPipeline, Pipeline, ReferencePipeline, ResearchQaPipeline, ScorePipeline,
    StageModel, Stages, Templates,
};
use rubricmill_store::{JobManifest, JobStore, ReadItem, StoreError, StoreLocation, read_shard};

use crate::RuntimeError;
use crate::batch::{BatchEndpoint, BatchSettings};
use crate::cache::ObjectCache;

/// Runtime choices about a job that are not part of its spec.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Call the model even when the response cache has the answer (and store nothing).
    pub no_cache: bool,
    /// The context only renders prompts and prices them (`validate`): nothing is sent, so batch
    /// mode needs neither the cache nor a batch API.
    pub estimate_only: bool,
}

/// Checks what a job needs from the environment before any work: every API key variable the
/// spec names must be set. The values are never printed.
pub fn preflight(spec: &JobSpec) -> Result<(), RuntimeError> {
    for stage in llm_stages(spec.pipeline) {
        let llm = spec.llm.for_stage(stage);
        if !llm.provider.is_remote() {
            continue;
        }
        if let Some(var) = &llm.api_key_env
            && std::env::var(var)
                .map(|v| v.trim().is_empty())
                .unwrap_or(true)
        {
            return Err(RuntimeError::Config(format!(
                "environment variable ${var} (named by llm.api_key_env for stage {stage}) is not set"
            )));
        }
    }
    Ok(())
}

/// One job, ready to have its shards processed.
pub struct JobContext {
    pub manifest: JobManifest,
    pub store: JobStore,
    pub inputs: StoreLocation,
    pub pipeline: Arc<dyn Pipeline>,
    /// One gateway per distinct endpoint; stages without overrides share the job's.
    pub gateways: BTreeMap<String, Arc<Gateway>>,
    /// Every distinct gateway with the key of the endpoint it calls (a hash of its URL and
    /// model): rate-limit pauses are shared across workers by that key.
    pub endpoints: Vec<(String, Arc<Gateway>)>,
    /// The job's spending limit, shared by its gateways.
    pub budget: Arc<Budget>,
    /// Key-value metadata written into every Parquet file of the job.
    pub file_metadata: BTreeMap<String, String>,
    /// Batch mode: the job's batch-mode endpoints by batch group (empty when every stage runs
    /// online), and how its shards wait for their batches.
    pub batch_endpoints: BTreeMap<String, BatchEndpoint>,
    pub batch: Option<BatchSettings>,
}

impl JobContext {
    /// Builds the context of a planned job. `spent_before_usd` is what committed shards already
    /// cost, counted against the budget.
    pub fn new(
        manifest: JobManifest,
        spent_before_usd: f64,
        options: &ContextOptions,
    ) -> Result<Self, RuntimeError> {
        let spec = &manifest.spec;
        preflight(spec)?;
        let store = JobStore::open(&spec.output.url, &spec.name)?;
        let inputs = StoreLocation::parse(&manifest.input_root)?;
        // The simulated provider's answers cost nothing: caching them would only write files.
        let cache: Option<Arc<dyn CacheStore>> = if options.no_cache || !bills(spec) {
            None
        } else {
            let url = match &spec.llm.cache_url {
                Some(url) => url.clone(),
                None => format!("{}/_cache/llm", spec.output.url.trim_end_matches('/')),
            };
            Some(Arc::new(ObjectCache::new(StoreLocation::parse(&url)?)))
        };
        let budget = Budget::new(spec.llm.max_cost_usd, spent_before_usd);
        let mut by_endpoint: BTreeMap<String, Arc<Gateway>> = BTreeMap::new();
        let mut gateways = BTreeMap::new();
        let mut endpoints = Vec::new();
        let mut batch_endpoints = BTreeMap::new();
        for stage in llm_stages(spec.pipeline) {
            let llm = spec.llm.for_stage(stage);
            if llm.mode == LlmMode::Batch && cache.is_none() && !options.estimate_only {
                return Err(RuntimeError::Config(format!(
                    "llm.mode = \"batch\" (stage {stage}) needs the response cache, where batch \
                     answers wait for the shard's next pass; run without --no-cache"
                )));
            }
            let identity = serde_json::to_string(&llm).unwrap_or_default();
            let gateway = match by_endpoint.get(&identity) {
                Some(gateway) => gateway.clone(),
                None => {
                    let gateway = Arc::new(gateway_for(&llm, budget.clone(), cache.clone())?);
                    by_endpoint.insert(identity, gateway.clone());
                    endpoints.push((endpoint_key(&llm), gateway.clone()));
                    if let Some(group) = gateway.batch_group().filter(|_| !options.estimate_only) {
                        let endpoint = BatchEndpoint {
                            api: batch_api_for(&llm)?,
                            gateway: gateway.clone(),
                            model: llm.model.clone(),
                        };
                        batch_endpoints.insert(group.to_owned(), endpoint);
                    }
                    gateway
                }
            };
            gateways.insert((*stage).to_owned(), gateway);
        }
        let batch = (!batch_endpoints.is_empty()).then(|| BatchSettings {
            poll: Duration::from_secs(spec.llm.batch_poll_s),
            resubmits: spec.llm.batch_resubmits,
        });
        let stage_map = gateways
            .iter()
            .map(|(stage, gateway)| {
                let llm = spec.llm.for_stage(stage);
                let model = StageModel {
                    model: llm.model.clone(),
                    temperature: llm.temperature,
                    max_tokens: llm.max_tokens,
                    seed: llm.seed,
                };
                (stage.clone(), (gateway.clone(), model))
            })
            .collect();
        let templates = Templates::new(manifest.templates.clone()).map_err(RuntimeError::Config)?;
        let stages = Stages::new(stage_map, templates);
        let pipeline: Arc<dyn Pipeline> = match spec.pipeline {
            PipelineKind::Researchqa => {
                Arc::new(ResearchQaPipeline::new(&stages, spec.researchqa.clone()))
            }
            PipelineKind::Crg => Arc::new(CrgPipeline::new(
                &stages,
                spec.crg.clone(),
                spec.input.layout,
                &spec.input.fields,
            )),
            PipelineKind::Reference => Arc::new(ReferencePipeline::new(
                &stages,
                spec.reference.clone(),
                &spec.input.fields,
            )),
            PipelineKind::Nuggets => Arc::new(NuggetsPipeline::new(
                &stages,
                spec.nuggets.clone(),
                &spec.input.fields,
            )),
            PipelineKind::Score => Arc::new(ScorePipeline::new(
                &stages,
                spec.score.clone(),
                &spec.input.fields,
            )),
        };
        let file_metadata = file_metadata(&manifest, pipeline.as_ref());
        Ok(Self {
            manifest,
            store,
            inputs,
            pipeline,
            gateways,
            endpoints,
            budget,
            file_metadata,
            batch_endpoints,
            batch,
        })
    }

    /// Sum of the usage of every gateway of the job.
    pub fn usage(&self) -> rubricmill_core::Usage {
        let mut total = rubricmill_core::Usage::default();
        for (_, gateway) in &self.endpoints {
            total.add(&gateway.totals());
        }
        total
    }

    pub fn spec(&self) -> &JobSpec {
        &self.manifest.spec
    }

    /// The structured-output mode each stage's endpoint settled on (`json_schema`,
    /// `json_object`, `none`), for stages whose provider has such modes.
    pub fn structured_output_modes(&self) -> BTreeMap<String, String> {
        self.gateways
            .iter()
            .filter_map(|(stage, gateway)| {
                let mode = gateway.structured_output()?;
                Some((stage.clone(), mode.to_owned()))
            })
            .collect()
    }

    /// The rate limits each stage's provider announced, beside the stage's configured ones;
    /// only stages whose provider announced any.
    pub fn discovered_limits(&self) -> BTreeMap<String, DiscoveredLimits> {
        self.gateways
            .iter()
            .map(|(stage, gateway)| (stage.clone(), self.limits_of(stage, gateway)))
            .filter(|(_, limits)| limits.is_known())
            .collect()
    }

    /// [`Self::discovered_limits`] by endpoint key (as rate-limit pauses are shared), with the
    /// stages calling each endpoint.
    pub fn endpoint_limits(&self) -> BTreeMap<String, DiscoveredLimits> {
        self.endpoints
            .iter()
            .filter_map(|(key, gateway)| {
                let stages: Vec<String> = self
                    .gateways
                    .iter()
                    .filter(|(_, g)| Arc::ptr_eq(g, gateway))
                    .map(|(stage, _)| stage.clone())
                    .collect();
                let mut limits = self.limits_of(stages.first()?, gateway);
                limits.stages = stages;
                limits.is_known().then(|| (key.clone(), limits))
            })
            .collect()
    }

    fn limits_of(&self, stage: &str, gateway: &Gateway) -> DiscoveredLimits {
        let llm = self.spec().llm.for_stage(stage);
        let announced = gateway.discovered_limits();
        DiscoveredLimits {
            provider_rpm: announced.requests_per_minute,
            provider_tpm: announced.tokens_per_minute,
            configured_rpm: llm.requests_per_minute,
            configured_tpm: llm.tokens_per_minute,
            stages: Vec::new(),
        }
    }

    /// The records of one shard, read with the job's input settings.
    pub fn read_shard(
        &self,
        shard: &rubricmill_core::ShardSpec,
    ) -> futures::stream::BoxStream<'static, Result<ReadItem, StoreError>> {
        let input = &self.spec().input;
        read_shard(&self.inputs, shard, input.format, input.max_record_bytes)
    }

    /// Whether any stage calls a provider that bills: only then do attempts keep a spend
    /// ledger.
    pub fn bills(&self) -> bool {
        bills(self.spec())
    }
}

/// Whether any stage of `spec` calls a provider that bills (anything but the simulated one).
fn bills(spec: &JobSpec) -> bool {
    llm_stages(spec.pipeline)
        .iter()
        .any(|stage| spec.llm.for_stage(stage).provider != ProviderKind::Simulated)
}

/// Identifies the endpoint a stage calls, without its key: a 429 from it concerns every
/// gateway with the same key, in every worker. Built on the identity the response cache keys
/// answers by, so spellings of one URL share their pauses too.
fn endpoint_key(llm: &LlmSpec) -> String {
    let endpoint = identity(llm);
    rubricmill_core::short_hash(format!("{endpoint}|{}", llm.model).as_bytes(), 16)
}

/// The endpoint identity of a stage's settings (provider kind and normalised base URL).
fn identity(llm: &LlmSpec) -> String {
    endpoint_identity(llm.provider.as_str(), llm.base_url.as_deref())
}

fn gateway_for(
    llm: &LlmSpec,
    budget: Arc<Budget>,
    cache: Option<Arc<dyn CacheStore>>,
) -> Result<Gateway, RuntimeError> {
    let provider: Arc<dyn ChatProvider> = match llm.provider {
        ProviderKind::Simulated => Arc::new(SimulatedProvider::with_options(
            llm.simulated_latency_ms,
            rubricmill_llm::simulated::SimulatedOptions {
                judge_error_rate: llm.simulated_judge_error_rate,
            },
        )),
        ProviderKind::Openai | ProviderKind::Anthropic | ProviderKind::Azure => {
            let (endpoint, azure) = endpoint_config(llm)?;
            let config_error = |e: rubricmill_llm::LlmError| RuntimeError::Config(e.to_string());
            match (llm.provider, azure) {
                (ProviderKind::Anthropic, _) => {
                    Arc::new(AnthropicProvider::new(endpoint).map_err(config_error)?)
                }
                (ProviderKind::Azure, Some(target)) => {
                    Arc::new(OpenAiProvider::azure(endpoint, &target).map_err(config_error)?)
                }
                _ => Arc::new(OpenAiProvider::new(endpoint).map_err(config_error)?),
            }
        }
    };
    let max_concurrency = llm.max_concurrency as usize;
    let config = GatewayConfig {
        model: llm.model.clone(),
        price_per_million: llm.price_per_million,
        budget,
        limits: Limits {
            requests_per_minute: llm.requests_per_minute,
            tokens_per_minute: llm.tokens_per_minute,
        },
        max_concurrency,
        initial_concurrency: max_concurrency.min(8),
        max_retries: llm.max_retries,
        cache,
        // An Azure deployment decides the model that answers: answers of one are never
        // served for another.
        endpoint: match llm.provider {
            ProviderKind::Azure => format!("{}|{}", identity(llm), llm.deployment_name()),
            _ => identity(llm),
        },
        batch_group: (llm.mode == LlmMode::Batch).then(|| batch_group(llm)),
        batch_price_factor: llm.batch_price_factor,
        ..GatewayConfig::default()
    };
    Ok(Gateway::new(provider, config))
}

/// The batch group of a batch-mode stage: stages with the same endpoint and model share their
/// shard's batches.
fn batch_group(llm: &LlmSpec) -> String {
    endpoint_key(llm)
}

/// How a stage's HTTP provider is reached (online and batch clients alike), with its Azure
/// deployment when the provider is Azure. The key is read from the environment here.
fn endpoint_config(llm: &LlmSpec) -> Result<(EndpointConfig, Option<AzureTarget>), RuntimeError> {
    let base_url = llm.endpoint_url().ok_or_else(|| {
        RuntimeError::Config(format!(
            "llm.base_url is not set (required for provider {})",
            llm.provider.as_str()
        ))
    })?;
    let api_key = llm
        .api_key_env
        .as_ref()
        .and_then(|var| std::env::var(var).ok());
    let endpoint = EndpointConfig {
        base_url,
        api_key,
        api_key_env: llm.api_key_env.clone(),
        headers: llm
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        timeout: Duration::from_secs(llm.timeout_s),
        max_connections: llm.max_concurrency as usize,
        structured_output: llm.structured_output,
        max_response_bytes: u64::from(llm.max_response_mb) << 20,
    };
    let azure = match llm.provider {
        ProviderKind::Azure => Some(AzureTarget {
            deployment: llm.deployment_name().to_owned(),
            api_version: llm.api_version.clone().ok_or_else(|| {
                RuntimeError::Config(
                    "llm.api_version is not set (required for provider azure)".into(),
                )
            })?,
        }),
        _ => None,
    };
    Ok((endpoint, azure))
}

/// The batch API of a batch-mode stage's provider.
fn batch_api_for(llm: &LlmSpec) -> Result<Arc<dyn BatchApi>, RuntimeError> {
    let (endpoint, azure) = endpoint_config(llm)?;
    rubricmill_llm::batch::batch_api(llm.provider, &endpoint, azure.as_ref())
        .map_err(|e| RuntimeError::Config(format!("llm.mode = \"batch\": {e}")))
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
