//! The spend ledger: what each attempt paid its provider, kept where it survives the attempt.
//!
//! A commit marker carries the usage of the attempt that won. Attempts that never commit —
//! killed, handed back, failed, or beaten to the marker by a redelivery — paid for their calls
//! too, and their answers are then replayed from the response cache at no cost, so markers
//! alone under-report what the provider billed. Every attempt therefore keeps its paid usage in
//! `spend/<shard>/<attempt>.json`, rewritten as its calls finish. The winner removes its file
//! after committing (its marker has the same figures); whatever remains belongs to attempts
//! that did not commit. The job's true spend is the markers' usage plus those files, each
//! counted once: a file whose attempt is the shard's committed one is skipped, so a winner that
//! died before removing its file is not counted twice.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::ObjectMeta;
use rubricmill_core::{ShardId, Usage};
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::commit::JobStore;

/// What one attempt has paid so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptSpend {
    pub shard_id: ShardId,
    pub attempt_id: String,
    pub worker_id: String,
    pub updated_at: DateTime<Utc>,
    /// Calls that came back: their tokens and cost as the provider reported them.
    pub usage: Usage,
    /// Requests on the wire when this was written, at their estimated cost. A file left by an
    /// attempt that died holds the requests its death cut off, which the provider may still
    /// have served and billed.
    #[serde(default)]
    pub in_flight: Usage,
}

/// The spend of attempts that did not commit (or not yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UncommittedSpend {
    pub attempts: u64,
    /// What they paid: their answered calls, as the provider reported them.
    pub usage: Usage,
    /// Requests that were on the wire when their attempt ended, at their estimated cost.
    /// Whether a provider bills a request whose client went away is the provider's business:
    /// these are not in `usage`, but budgets count them, so a budget is never overshot.
    pub cut_off: Usage,
    /// What budgets count ([`UncommittedSpend::budgeted_usd`]) by worker.
    pub cost_by_worker: BTreeMap<String, f64>,
}

impl UncommittedSpend {
    /// Sums the attempts in `spends` that are not their shard's committed attempt
    /// (`committed` maps a shard to the attempt its marker names).
    pub fn of<'a>(
        spends: impl IntoIterator<Item = &'a AttemptSpend>,
        committed: &HashMap<String, String>,
    ) -> Self {
        let mut total = Self::default();
        for spend in spends {
            if committed.get(spend.shard_id.as_str()) == Some(&spend.attempt_id) {
                continue;
            }
            total.attempts += 1;
            total.usage.add(&spend.usage);
            total.cut_off.add(&spend.in_flight);
            *total
                .cost_by_worker
                .entry(spend.worker_id.clone())
                .or_insert(0.0) += spend.usage.cost_usd + spend.in_flight.cost_usd;
        }
        total
    }

    /// What counts against a budget: `usage` and the cut-off requests.
    pub fn budgeted_usd(&self) -> f64 {
        self.usage.cost_usd + self.cut_off.cost_usd
    }
}

impl JobStore {
    fn spend_relative(shard: &ShardId, attempt: &str) -> String {
        format!("spend/{shard}/{attempt}.json")
    }

    /// Writes (or rewrites) an attempt's spend.
    pub async fn put_spend(&self, spend: &AttemptSpend) -> Result<(), StoreError> {
        let json = serde_json::to_vec(spend).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.put(
            &Self::spend_relative(&spend.shard_id, &spend.attempt_id),
            Bytes::from(json),
        )
        .await
    }

    /// Removes an attempt's spend file (a missing one is fine).
    pub async fn remove_spend(&self, shard: &ShardId, attempt: &str) -> Result<(), StoreError> {
        let relative = Self::spend_relative(shard, attempt);
        self.discard(Some(&relative), None).await
    }

    /// The spend files of the job (one listing, no reads); staging files of a local store,
    /// left by a write a kill interrupted, are not spend files.
    pub async fn spend_files(&self) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut files = self.list("spend").await?;
        files.retain(|meta| {
            meta.location
                .filename()
                .is_some_and(|name| name.ends_with(".json"))
        });
        Ok(files)
    }

    /// The spend files of one shard's attempts (one listing of `spend/<shard>/`, no reads).
    pub async fn spend_files_of(&self, shard: &ShardId) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut files = self.list(&format!("spend/{shard}")).await?;
        files.retain(|meta| {
            meta.location
                .filename()
                .is_some_and(|name| name.ends_with(".json"))
        });
        Ok(files)
    }

    /// Reads one spend file found by [`JobStore::spend_files`]; `None` when it is gone.
    pub async fn read_spend(&self, meta: &ObjectMeta) -> Result<Option<AttemptSpend>, StoreError> {
        let root = self.location().path.as_ref().to_owned();
        let full = meta.location.as_ref();
        let relative = full
            .strip_prefix(&root)
            .unwrap_or(full)
            .trim_start_matches('/');
        self.get_json(relative).await
    }

    /// What attempts that did not commit paid: the spend files, less those of attempts their
    /// shard's marker names. Reads the spend files and the markers of their shards only.
    pub async fn uncommitted_spend(&self) -> Result<UncommittedSpend, StoreError> {
        let spends = self.spends().await?;
        let mut committed = HashMap::new();
        for shard in spends.iter().map(|s| &s.shard_id) {
            if committed.contains_key(shard.as_str()) {
                continue;
            }
            if let Some(marker) = self.marker(shard).await? {
                committed.insert(shard.to_string(), marker.attempt_id);
            }
        }
        Ok(UncommittedSpend::of(&spends, &committed))
    }

    /// Every attempt's spend file, read.
    pub async fn spends(&self) -> Result<Vec<AttemptSpend>, StoreError> {
        let mut spends = Vec::new();
        for meta in self.spend_files().await? {
            if let Some(spend) = self.read_spend(&meta).await? {
                spends.push(spend);
            }
        }
        Ok(spends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(shard: &str, attempt: &str, worker: &str, calls: u64) -> AttemptSpend {
        AttemptSpend {
            shard_id: ShardId(shard.into()),
            attempt_id: attempt.into(),
            worker_id: worker.into(),
            updated_at: Utc::now(),
            usage: Usage {
                calls,
                cost_usd: calls as f64,
                ..Usage::default()
            },
            in_flight: Usage::default(),
        }
    }

    #[tokio::test]
    async fn spend_of_committed_attempts_is_counted_once_by_their_markers() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        let killed = spend("s1", "a1", "w1", 3);
        let winner = spend("s1", "a2", "w2", 4);
        let other = spend("s2", "a3", "w1", 5);
        for s in [&killed, &winner, &other] {
            store.put_spend(s).await.unwrap();
        }
        // A rewrite replaces the attempt's figures; requests cut off count at their estimate.
        let mut other = spend("s2", "a3", "w1", 5);
        other.in_flight = Usage {
            calls: 1,
            cost_usd: 1.0,
            ..Usage::default()
        };
        store.put_spend(&other).await.unwrap();
        // A staging file a kill left behind is not a spend file.
        std::fs::write(dir.path().join("job/spend/s2/a9.json#1"), b"{").unwrap();
        let mut spends = store.spends().await.unwrap();
        spends.sort_by(|a, b| a.attempt_id.cmp(&b.attempt_id));
        assert_eq!(spends, vec![killed, winner, other]);
        let committed = HashMap::from([("s1".to_owned(), "a2".to_owned())]);
        let uncommitted = UncommittedSpend::of(&spends, &committed);
        assert_eq!((uncommitted.attempts, uncommitted.usage.calls), (2, 8));
        assert_eq!(uncommitted.cut_off.calls, 1);
        assert!((uncommitted.budgeted_usd() - 9.0).abs() < 1e-9);
        assert_eq!(
            uncommitted.cost_by_worker,
            BTreeMap::from([("w1".to_owned(), 9.0)])
        );
        store
            .remove_spend(&ShardId("s1".into()), "a2")
            .await
            .unwrap();
        store
            .remove_spend(&ShardId("s1".into()), "a2")
            .await
            .unwrap();
        assert_eq!(store.spends().await.unwrap().len(), 2);
    }
}
