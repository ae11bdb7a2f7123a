//! Batch mode for one shard attempt: collect the answers of the shard's finished provider
//! batches, run a pass that defers what the cache cannot answer, and submit the deferred calls
//! as the shard's next batches.
//!
//! The shard's record (`batches/<shard>.json`, [`ShardBatches`]) is the truth about its
//! batches. A round is written with its content-derived name *before* it is submitted and with
//! the provider's id after; an attempt that finds a round without an id asks the provider for
//! a batch of that name ([`BatchApi::find`]) before anything else, so a worker killed in between
//! neither loses the batch nor submits it again. Answers go into the response cache through
//! [`Gateway::accept_batch_answers`], so the next pass parses and validates them exactly as
//! online answers; what they cost is written with the round's collection, once. Items
//! that failed or expired are submitted again up to `llm.batch_resubmits` times, then sent
//! online.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rubricmill_core::{ShardSpec, Usage};
use rubricmill_llm::batch::{BatchApi, BatchItem, BatchState, BatchStatus, ItemResult};
use rubricmill_llm::{BatchScope, DeferredCall, Gateway, LlmError};
use rubricmill_store::{BatchRound, BatchRoundItem, ShardBatches};

use crate::job::JobContext;

/// How a batch-mode job's shards wait for their batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Time between looks at a submitted batch (`llm.batch_poll_s`).
    pub poll: Duration,
    /// Times a failed item is submitted again before it goes online (`llm.batch_resubmits`).
    pub resubmits: u32,
}

/// One batch-mode endpoint of a job: its batch API and the gateway whose calls go there.
pub struct BatchEndpoint {
    pub api: Arc<dyn BatchApi>,
    pub gateway: Arc<Gateway>,
    /// The model the endpoint's calls name, for the metrics.
    pub model: String,
}

/// Why an attempt stops short of a commit in batch mode.
#[derive(Debug)]
pub enum BatchStop {
    /// Batches are with the provider: release the shard for `delay`. `collected` is what the
    /// shard's collected rounds cost so far.
    Waiting {
        batches: u32,
        items: u64,
        delay: Duration,
        collected: Box<Usage>,
    },
    /// The provider or storage failed in a way a later attempt may not.
    Retryable(String),
    /// The job cannot go on (no batch API, refused key).
    Fatal(String),
    /// The next batch would pass the job's budget.
    Budget(String),
}

impl BatchStop {
    fn from_llm(what: &str, error: LlmError) -> Self {
        match error {
            LlmError::Fatal(reason) => BatchStop::Fatal(format!("{what}: {reason}")),
            LlmError::BudgetExhausted { .. } => BatchStop::Budget(error.to_string()),
            other => BatchStop::Retryable(format!("{what}: {other}")),
        }
    }

    fn storage(error: rubricmill_store::StoreError) -> Self {
        BatchStop::Retryable(format!("batch record: {error}"))
    }
}

/// One attempt's view of its shard's batches.
pub struct ShardBatchRun<'a> {
    context: &'a JobContext,
    shard: &'a ShardSpec,
    settings: BatchSettings,
    record: ShardBatches,
    /// Defers this attempt's calls; holds the keys that must go online.
    pub scope: BatchScope,
}

impl<'a> ShardBatchRun<'a> {
    /// Reads the shard's record and takes in the answers of its finished batches. Stops with
    /// [`BatchStop::Waiting`] while any batch is still with the provider.
    pub async fn begin(
        context: &'a JobContext,
        shard: &'a ShardSpec,
        settings: BatchSettings,
    ) -> Result<Self, BatchStop> {
        let record = context
            .store
            .shard_batches(&shard.id)
            .await
            .map_err(BatchStop::storage)?;
        let mut run = Self {
            context,
            shard,
            settings,
            record,
            scope: BatchScope::default(),
        };
        run.settle_unconfirmed().await?;
        let states = run.open_states().await?;
        let running: Vec<usize> = states
            .iter()
            .filter(|(_, state)| !state.is_final())
            .map(|(index, _)| *index)
            .collect();
        if !running.is_empty() {
            let items = running
                .iter()
                .map(|&i| run.record.rounds[i].items.len() as u64)
                .sum();
            return Err(BatchStop::Waiting {
                batches: running.len() as u32,
                items,
                delay: settings.poll,
                collected: Box::new(run.record.collected_usage()),
            });
        }
        run.collect(&states).await?;
        let online: BTreeSet<String> = run
            .record
            .failures
            .iter()
            .filter(|(_, failed)| **failed > settings.resubmits)
            .map(|(key, _)| key.clone())
            .collect();
        run.scope = BatchScope::new(online);
        Ok(run)
    }

    fn endpoint(&self, group: &str) -> Result<&'a BatchEndpoint, BatchStop> {
        self.context.batch_endpoints.get(group).ok_or_else(|| {
            BatchStop::Fatal(format!(
                "shard {} has a provider batch at an endpoint the job no longer sends batches \
                 to (llm.base_url, llm.model or llm.mode changed): restore the setting to collect \
                 it, or remove the job's batches/ folder to give its batches up",
                self.shard.id
            ))
        })
    }

    async fn save(&self) -> Result<(), BatchStop> {
        self.context
            .store
            .put_shard_batches(&self.shard.id, &self.record)
            .await
            .map_err(BatchStop::storage)
    }

    /// Rounds written before their submission was confirmed: the provider either has the batch
    /// under its name (record the id) or never got it (drop the round; the next pass defers the
    /// same calls and submits them under the same name).
    async fn settle_unconfirmed(&mut self) -> Result<(), BatchStop> {
        let mut changed = false;
        let mut kept = Vec::with_capacity(self.record.rounds.len());
        for mut round in std::mem::take(&mut self.record.rounds) {
            if round.id.is_none() && round.collected_at.is_none() {
                let api = &self.endpoint(&round.group)?.api;
                let found = api
                    .find(&round.name)
                    .await
                    .map_err(|e| BatchStop::from_llm("looking up a batch", e))?;
                changed = true;
                match found {
                    Some(id) => {
                        tracing::info!(shard = %self.shard.id, batch = %round.name, id = %id, "found a submitted batch its submitter did not record");
                        round.id = Some(id);
                    }
                    None => continue,
                }
            }
            kept.push(round);
        }
        self.record.rounds = kept;
        if changed {
            self.save().await?;
        }
        Ok(())
    }

    /// The provider's state of every open round, by the round's index.
    async fn open_states(&self) -> Result<Vec<(usize, BatchState)>, BatchStop> {
        let mut states = Vec::new();
        for (index, round) in self.record.rounds.iter().enumerate() {
            let (None, Some(id)) = (round.collected_at, &round.id) else {
                continue;
            };
            let api = &self.endpoint(&round.group)?.api;
            let status = match api.status(id).await {
                Ok(status) => status,
                // The provider no longer knows the batch (its ids do not live for ever): its
                // items failed, and are submitted again.
                Err(LlmError::BadRecord(reason)) => BatchStatus {
                    state: BatchState::Failed,
                    total: round.items.len() as u64,
                    completed: 0,
                    failed: round.items.len() as u64,
                    reason: Some(reason),
                },
                Err(error) => return Err(BatchStop::from_llm("looking at a batch", error)),
            };
            if status.state == BatchState::Failed {
                tracing::warn!(shard = %self.shard.id, batch = %id, reason = ?status.reason, "provider batch failed as a whole");
            } else if !status.state.is_final() {
                tracing::debug!(shard = %self.shard.id, batch = %id, completed = status.completed, total = status.total, "batch still running");
            }
            states.push((index, status.state));
        }
        Ok(states)
    }

    /// Takes the results of the rounds in `states` (all final) into the cache, counts the
    /// items that failed, and marks the rounds collected.
    async fn collect(&mut self, states: &[(usize, BatchState)]) -> Result<(), BatchStop> {
        for &(index, state) in states {
            let round = &self.record.rounds[index];
            let id = round.id.clone().expect("open states have ids");
            let endpoint = self.endpoint(&round.group)?;
            let mut results: BTreeMap<String, ItemResult> = if state == BatchState::Failed {
                BTreeMap::new()
            } else {
                endpoint
                    .api
                    .results(&id)
                    .await
                    .map_err(|e| BatchStop::from_llm("reading a batch's results", e))?
                    .into_iter()
                    .collect()
            };
            let mut answers = Vec::new();
            let mut failed = Vec::new();
            for item in &round.items {
                match results.remove(&item.custom_id) {
                    Some(ItemResult::Answered { answer }) => {
                        answers.push((item.key.clone(), item.stage.clone(), answer));
                    }
                    Some(ItemResult::Failed { reason }) => failed.push((item.key.clone(), reason)),
                    None => failed.push((item.key.clone(), "no result".to_owned())),
                }
            }
            let answered = answers.len();
            let usage = endpoint
                .gateway
                .accept_batch_answers(&endpoint.model, answers)
                .await;
            tracing::info!(shard = %self.shard.id, batch = %id, answered, failed = failed.len(), state = ?state, "collected a provider batch");
            for (key, reason) in failed {
                tracing::debug!(shard = %self.shard.id, key = %key, reason = %reason, "batch item failed");
                *self.record.failures.entry(key).or_default() += 1;
            }
            let round = &mut self.record.rounds[index];
            round.collected_at = Some(Utc::now());
            round.usage = usage;
        }
        if !states.is_empty() {
            self.save().await?;
        }
        Ok(())
    }

    /// Submits the calls this attempt's pass deferred, one batch per endpoint, and says how
    /// long the shard waits.
    pub async fn submit(mut self) -> Result<BatchStop, BatchStop> {
        let deferred = self.scope.take();
        let mut batches = 0u32;
        let mut items = 0u64;
        for (group, calls) in deferred {
            let endpoint = self.endpoint(&group)?;
            let estimate = endpoint.gateway.estimate_batch_cost(&calls);
            self.context
                .budget
                .check(estimate)
                .map_err(|e| BatchStop::from_llm("submitting a batch", e))?;
            let name = self.batch_name(&group, &calls);
            let round = BatchRound {
                name: name.clone(),
                group: group.clone(),
                id: None,
                created_at: Utc::now(),
                items: calls
                    .iter()
                    .enumerate()
                    .map(|(index, call)| BatchRoundItem {
                        custom_id: custom_id(index),
                        key: call.key.clone(),
                        stage: call.stage.clone(),
                    })
                    .collect(),
                estimate_usd: estimate,
                collected_at: None,
                usage: Usage::default(),
            };
            self.record.rounds.push(round);
            // The intent is stored before the provider hears of the batch.
            self.save().await?;
            let api = &endpoint.api;
            let found = api
                .find(&name)
                .await
                .map_err(|e| BatchStop::from_llm("looking up a batch", e))?;
            let id = match found {
                Some(id) => id,
                None => {
                    let items: Vec<BatchItem> = calls
                        .into_iter()
                        .enumerate()
                        .map(|(index, call)| BatchItem {
                            custom_id: custom_id(index),
                            request: call.request,
                        })
                        .collect();
                    api.submit(&name, &items)
                        .await
                        .map_err(|e| BatchStop::from_llm("submitting a batch", e))?
                }
            };
            let round = self.record.rounds.last_mut().expect("pushed above");
            tracing::info!(shard = %self.shard.id, batch = %name, id = %id, items = round.items.len(), estimate_usd = estimate, "submitted a provider batch");
            round.id = Some(id);
            batches += 1;
            items += round.items.len() as u64;
            self.save().await?;
        }
        Ok(BatchStop::Waiting {
            batches,
            items,
            delay: self.settings.poll,
            collected: Box::new(self.record.collected_usage()),
        })
    }

    /// What every collected round of the shard cost: the marker carries it when the shard
    /// commits.
    pub fn collected(&self) -> Usage {
        self.record.collected_usage()
    }

    /// Derived from the job, the shard, the endpoint, the round's position and the calls'
    /// cache keys: a submission repeated after a crash has the same name, a later round
    /// (resubmitted failures) another.
    fn batch_name(&self, group: &str, calls: &[DeferredCall]) -> String {
        let mut content = format!(
            "{}\n{}\n{group}\n{}",
            self.context.manifest.name,
            self.shard.id,
            self.record.rounds.len()
        );
        for call in calls {
            content.push('\n');
            content.push_str(&call.key);
        }
        format!(
            "rubricmill-{}",
            rubricmill_core::short_hash(content.as_bytes(), 32)
        )
    }
}

/// The custom id of a round's `index`-th item.
fn custom_id(index: usize) -> String {
    format!("c{index}")
}
