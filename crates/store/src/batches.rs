//! Batch records: where a shard of a batch-mode job stands with its provider batches, kept in
//! `batches/<shard>.json` so any worker can pick the shard up where another left it.
//!
//! A shard in batch mode runs in passes. A pass answers what it can from the response cache and
//! defers the rest; the deferred calls go to the provider as one batch per endpoint, recorded
//! here as a [`BatchRound`] *before* the batch is submitted (with its content-derived name) and
//! again after (with the provider's id). The shard is then released to the queue. A later
//! delivery looks at the open rounds, takes the answers of finished ones into the cache and runs
//! the next pass. A worker killed between submitting and recording finds the batch again by
//! its name, so a batch is never submitted twice and never lost.
//!
//! A round's cost is written with its collection, in one put: an attempt that dies before that
//! put leaves the round uncollected, and the next one takes the same answers in again and
//! records the same cost, so a batch is paid once whoever dies when. Until the shard commits,
//! its collected rounds are where its batch spend is; the commit marker then carries it.
//!
//! Only the attempt holding the shard's delivery writes the record, so plain puts suffice.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rubricmill_core::{ShardId, Usage};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::commit::JobStore;

/// A shard's provider batches, oldest first, and how often each call's batch item failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardBatches {
    pub rounds: Vec<BatchRound>,
    /// Cache key → batch items of that call that failed or expired: past the job's
    /// `llm.batch_resubmits`, the call is sent online.
    #[serde(default)]
    pub failures: BTreeMap<String, u32>,
}

/// One provider batch of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRound {
    /// Content-derived: the same calls of the same shard always make the same name.
    pub name: String,
    /// The endpoint group the batch went to (the gateway's endpoint key).
    pub group: String,
    /// The provider's batch id; `None` while the submission is not confirmed.
    pub id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Its items: custom id, cache key and stage of each call.
    pub items: Vec<BatchRoundItem>,
    /// What the batch was estimated to cost when it was submitted.
    pub estimate_usd: f64,
    /// Set once its answers are in the response cache (or its failures counted).
    pub collected_at: Option<DateTime<Utc>>,
    /// What its answers cost, recorded in the same write as `collected_at`: the one place a
    /// batch's cost is counted until the shard commits (its marker then carries the cost of
    /// all its rounds).
    #[serde(default)]
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRoundItem {
    pub custom_id: String,
    pub key: String,
    pub stage: String,
}

impl ShardBatches {
    /// Rounds submitted (or being submitted) whose answers are not collected yet.
    pub fn open(&self) -> impl Iterator<Item = &BatchRound> {
        self.rounds.iter().filter(|r| r.collected_at.is_none())
    }

    /// Items of open rounds.
    pub fn pending_items(&self) -> u64 {
        self.open().map(|r| r.items.len() as u64).sum()
    }

    /// What the answers of every collected round cost.
    pub fn collected_usage(&self) -> Usage {
        let mut total = Usage::default();
        for round in self.rounds.iter().filter(|r| r.collected_at.is_some()) {
            total.add(&round.usage);
        }
        total
    }
}

impl JobStore {
    fn batches_relative(shard: &ShardId) -> String {
        format!("batches/{shard}.json")
    }

    /// The shard's batch record; empty when it never sent a batch.
    pub async fn shard_batches(&self, shard: &ShardId) -> Result<ShardBatches, StoreError> {
        Ok(self
            .get_json(&Self::batches_relative(shard))
            .await?
            .unwrap_or_default())
    }

    /// Stores the shard's batch record.
    pub async fn put_shard_batches(
        &self,
        shard: &ShardId,
        batches: &ShardBatches,
    ) -> Result<(), StoreError> {
        let json =
            serde_json::to_vec_pretty(batches).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.put(&Self::batches_relative(shard), Bytes::from(json))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_record_round_trips_and_a_missing_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = JobStore::open(&url, "job").unwrap();
        let shard = ShardId("00112233445566778899aabb".into());
        assert_eq!(
            store.shard_batches(&shard).await.unwrap(),
            ShardBatches::default()
        );
        let mut batches = ShardBatches::default();
        batches.rounds.push(BatchRound {
            name: "n1".into(),
            group: "g".into(),
            id: None,
            created_at: Utc::now(),
            items: vec![BatchRoundItem {
                custom_id: "0".into(),
                key: "k".into(),
                stage: "generate".into(),
            }],
            estimate_usd: 0.5,
            collected_at: None,
            usage: Usage::default(),
        });
        batches.failures.insert("k".into(), 1);
        store.put_shard_batches(&shard, &batches).await.unwrap();
        let read = store.shard_batches(&shard).await.unwrap();
        assert_eq!(read, batches);
        assert_eq!(read.pending_items(), 1);
        assert_eq!(read.open().count(), 1);
        assert_eq!(read.collected_usage(), Usage::default());
    }
}
