//! What the coordinator knows about one running job, kept current at a cost that grows with
//! what changed, not with the job's size: which shards are committed (by the attempt their
//! marker names), running sums of the committed figures (records, rows, rejects, usage, cost by
//! worker, input records still expected), the commits of the last minute (for the rate), the
//! spend of attempts that did not commit, and an inbox of what worker events reported since
//! the last reconcile.
//!
//! A commit enters once, from whichever source names it first: the progress log and the
//! listing when the job is first tracked, a worker's commit event (which carries the marker's
//! summary), or a marker read for a shard an event or a full listing named without one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use rubricmill_cluster::JobProgress;
use rubricmill_core::{JobManifest, MarkerSummary, ShardId, ShardSpec, StageCounts, Usage};
use rubricmill_queue::ShardEvent;
use rubricmill_store::{AttemptSpend, JobStore, RequestTally, UncommittedSpend};

use crate::RuntimeError;

/// The window the commit rate is measured over.
const RATE_WINDOW_S: i64 = 60;

/// The job's plan as the coordinator uses it: the records each shard is expected to hold, by a
/// compact key (16 bytes a shard, not the shard's spec), and where to read the shards
/// themselves for the rare sweep, a chunk at a time. The only place the coordinator walks the
/// shard list.
pub(super) struct PlanIndex {
    manifest: JobManifest,
    expected: HashMap<u128, u64>,
    expected_total: u64,
}

impl PlanIndex {
    /// Reads the plan's chunks once, keeping only each shard's expected records.
    pub(super) async fn load(
        store: &JobStore,
        manifest: JobManifest,
    ) -> Result<Self, RuntimeError> {
        let mut expected = HashMap::with_capacity(manifest.shard_count as usize);
        let mut chunks = std::pin::pin!(store.planned_shards(&manifest));
        while let Some(chunk) = chunks.next().await {
            for shard in chunk? {
                expected.insert(shard_key(shard.id.as_str()), shard.expected_records);
            }
        }
        let expected_total = expected.values().sum();
        Ok(Self {
            manifest: manifest.without_inline_shards(),
            expected,
            expected_total,
        })
    }

    pub(super) fn len(&self) -> u64 {
        self.expected.len() as u64
    }

    /// The input records a planned shard is expected to hold; `None` for a shard not planned.
    fn expected(&self, shard: &str) -> Option<u64> {
        self.expected.get(&shard_key(shard)).copied()
    }

    /// Planned shards neither committed nor failed (reads the plan again: for sweeps only).
    pub(super) async fn outstanding(
        &self,
        store: &JobStore,
        committed: &HashMap<String, String>,
        failed: &HashSet<String>,
    ) -> Result<Vec<ShardSpec>, RuntimeError> {
        let mut manifest = self.manifest.clone();
        if manifest.chunks.is_empty() {
            // A plan of an earlier version holds its shards inline in job.json.
            manifest = store.load_manifest().await?.unwrap_or(manifest);
        }
        let mut outstanding = Vec::new();
        let mut chunks = std::pin::pin!(store.planned_shards(&manifest));
        while let Some(chunk) = chunks.next().await {
            outstanding.extend(chunk?.into_iter().filter(|s| {
                !committed.contains_key(s.id.as_str()) && !failed.contains(s.id.as_str())
            }));
        }
        Ok(outstanding)
    }
}

/// A shard id as a number: ids are 24 hex digits (96 bits); anything else is hashed.
fn shard_key(shard: &str) -> u128 {
    u128::from_str_radix(shard, 16).unwrap_or_else(|_| {
        let hash = rubricmill_core::short_hash(shard.as_bytes(), 32);
        u128::from_str_radix(&hash, 16).expect("32 hex digits")
    })
}

/// What worker events reported since the last reconcile.
#[derive(Default)]
pub(super) struct Inbox {
    /// Commits with their marker's summary.
    pub(super) commits: Vec<MarkerSummary>,
    /// Shards reported committed without a summary: their markers are read.
    pub(super) unread: HashSet<ShardId>,
    /// Shards one of whose attempts ended without committing: their spend files are read.
    pub(super) spend: HashSet<ShardId>,
    /// Batch mode, in event order: a shard now waits for `(batches, items)`, or (`None`) no
    /// longer does.
    pub(super) waiting: Vec<(String, Option<(u32, u64)>)>,
    /// Batch mode, in event order: what a waiting shard's collected batches cost, or (`None`)
    /// the shard committed or failed (its marker carries the cost, or the job gave it up).
    pub(super) batch_paid: Vec<(String, Option<Usage>)>,
}

impl Inbox {
    pub(super) fn note(&mut self, event: ShardEvent) {
        let shard = ShardId(event.shard().to_owned());
        let waits = match &event {
            ShardEvent::Waiting { batches, items, .. } => Some((*batches, *items)),
            _ => None,
        };
        self.waiting.push((shard.0.clone(), waits));
        match &event {
            ShardEvent::Waiting { collected, .. } => {
                self.batch_paid.push((shard.0.clone(), Some(**collected)));
            }
            ShardEvent::Committed { .. }
            | ShardEvent::AlreadyCommitted { .. }
            | ShardEvent::Failed { .. } => self.batch_paid.push((shard.0.clone(), None)),
            _ => {}
        }
        match event {
            ShardEvent::Committed {
                summary: Some(summary),
                ..
            } => self.commits.push(*summary),
            ShardEvent::Committed { summary: None, .. } => {
                self.unread.insert(shard);
            }
            ShardEvent::AlreadyCommitted { .. } => {
                // The attempt that lost the race paid for its calls too.
                self.unread.insert(shard.clone());
                self.spend.insert(shard);
            }
            ShardEvent::Retrying { .. }
            | ShardEvent::Failed { .. }
            | ShardEvent::BudgetExhausted { .. }
            | ShardEvent::Fatal { .. }
            | ShardEvent::Waiting { .. }
            | ShardEvent::HandedBack { .. } => {
                // A waiting attempt may have paid for online calls (fallbacks of failed items).
                self.spend.insert(shard);
            }
            ShardEvent::Started { .. } => {}
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.commits.is_empty()
            && self.unread.is_empty()
            && self.spend.is_empty()
            && self.waiting.is_empty()
            && self.batch_paid.is_empty()
    }
}

/// Running sums over the committed shards.
#[derive(Default)]
struct Totals {
    records: u64,
    rows: u64,
    rejects: u64,
    usage: Usage,
    /// Score jobs: the committed `agreement` stage.
    agreement: Option<StageCounts>,
    cost_by_worker: BTreeMap<String, f64>,
    /// Input records expected in planned shards not yet committed.
    expected_remaining: u64,
}

pub(super) struct Tracker {
    pub(super) store: JobStore,
    pub(super) plan: PlanIndex,
    /// Committed shard → the attempt its marker names.
    pub(super) committed: HashMap<String, String>,
    totals: Totals,
    /// Commit time and input records of the commits in the rate window, oldest first.
    recent: VecDeque<(DateTime<Utc>, u64)>,
    /// Summaries not yet in the progress log (written after a full listing confirms them).
    pub(super) unsaved: Vec<MarkerSummary>,
    pub(super) inbox: Inbox,
    /// Spend files by path, with the version (size, modification time, e-tag) last read.
    spends: HashMap<String, (String, AttemptSpend)>,
    pub(super) idle_rounds: u32,
    /// When the markers were last listed in full.
    pub(super) listed_at: Option<tokio::time::Instant>,
    /// Set when the job completed: its spend is followed until then.
    pub(super) settle_until: Option<tokio::time::Instant>,
    /// The progress last published.
    pub(super) published: Option<JobProgress>,
    /// Batch mode: shards waiting for provider batches, with their open batches and items.
    waiting: HashMap<String, (u32, u64)>,
    /// Batch mode: what the collected batches of shards not yet committed cost.
    batch_paid: HashMap<String, Usage>,
    /// The store's request counts last reported to the metrics.
    pub(super) requests_reported: RequestTally,
}

impl Tracker {
    pub(super) fn new(store: JobStore, plan: PlanIndex) -> Self {
        let totals = Totals {
            expected_remaining: plan.expected_total,
            ..Totals::default()
        };
        Self {
            store,
            plan,
            committed: HashMap::new(),
            totals,
            recent: VecDeque::new(),
            unsaved: Vec::new(),
            inbox: Inbox::default(),
            waiting: HashMap::new(),
            batch_paid: HashMap::new(),
            spends: HashMap::new(),
            idle_rounds: 0,
            listed_at: None,
            settle_until: None,
            published: None,
            requests_reported: RequestTally::default(),
        }
    }

    /// Counts a commit into the sums once; returns false for a shard already counted or not
    /// planned. `unsaved` marks a summary the progress log does not hold yet.
    pub(super) fn add(&mut self, summary: MarkerSummary, unsaved: bool) -> bool {
        let shard = summary.shard_id.as_str();
        if self.committed.contains_key(shard) {
            return false;
        }
        let Some(expected) = self.plan.expected(shard) else {
            return false;
        };
        self.committed
            .insert(shard.to_owned(), summary.attempt_id.clone());
        let totals = &mut self.totals;
        totals.records += summary.records;
        totals.rows += summary.rows;
        totals.rejects += summary.rejects;
        totals.usage.add(&summary.usage);
        if let Some(agreement) = &summary.agreement {
            totals.agreement.get_or_insert_default().add(agreement);
        }
        *totals
            .cost_by_worker
            .entry(summary.worker_id.clone())
            .or_insert(0.0) += summary.usage.cost_usd;
        totals.expected_remaining = totals.expected_remaining.saturating_sub(expected);
        if summary.committed_at >= Utc::now() - chrono::Duration::seconds(RATE_WINDOW_S) {
            // Commits come in about in time order; one out of order only blurs the rate.
            self.recent
                .push_back((summary.committed_at, summary.records));
        }
        if unsaved {
            self.unsaved.push(summary);
        }
        true
    }

    /// Reads the listed markers this tracker has not counted ([`JobStore::read_markers`]:
    /// a bounded window of reads) and counts them.
    pub(super) async fn read_new_markers(
        &mut self,
        shards: impl IntoIterator<Item = ShardId>,
    ) -> Result<u64, RuntimeError> {
        let unknown: Vec<ShardId> = shards
            .into_iter()
            .filter(|s| !self.committed.contains_key(s.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        for marker in self.store.read_markers(unknown).await? {
            added += u64::from(self.add(marker.summary(), true));
        }
        Ok(added)
    }

    /// Applies what events reported: their commits, the markers of commits reported without a
    /// summary, and the spend files of attempts that ended without committing.
    pub(super) async fn apply_inbox(&mut self) -> Result<(), RuntimeError> {
        let inbox = std::mem::take(&mut self.inbox);
        for (shard, waits) in inbox.waiting {
            match waits {
                Some(waits) => self.waiting.insert(shard, waits),
                None => self.waiting.remove(&shard),
            };
        }
        for (shard, paid) in inbox.batch_paid {
            match paid {
                Some(paid) => self.batch_paid.insert(shard, paid),
                None => self.batch_paid.remove(&shard),
            };
        }
        for summary in inbox.commits {
            self.add(summary, true);
        }
        self.read_new_markers(inbox.unread).await?;
        for shard in inbox.spend {
            self.refresh_spend_of(&shard).await?;
        }
        Ok(())
    }

    /// Brings every spend file up to date: one listing, then a read of each file that is new
    /// or changed since the last time.
    pub(super) async fn refresh_spends(&mut self) -> Result<(), RuntimeError> {
        let files = self.store.spend_files().await?;
        self.take_spend_files(files, |_| true).await
    }

    /// Brings one shard's spend files up to date.
    async fn refresh_spend_of(&mut self, shard: &ShardId) -> Result<(), RuntimeError> {
        let files = self.store.spend_files_of(shard).await?;
        let prefix = format!("/spend/{shard}/");
        self.take_spend_files(files, |path| path.contains(&prefix))
            .await
    }

    /// Takes a listing of spend files: entries within `covers` that the listing lacks are gone.
    async fn take_spend_files(
        &mut self,
        files: Vec<object_store::ObjectMeta>,
        covers: impl Fn(&str) -> bool,
    ) -> Result<(), RuntimeError> {
        let present: HashSet<String> = files.iter().map(|f| f.location.to_string()).collect();
        self.spends
            .retain(|path, _| !covers(&format!("/{path}")) || present.contains(path));
        for meta in files {
            let path = meta.location.to_string();
            let version = format!(
                "{}|{}|{}",
                meta.size,
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                meta.e_tag.as_deref().unwrap_or("")
            );
            if self
                .spends
                .get(&path)
                .is_some_and(|(seen, _)| *seen == version)
            {
                continue;
            }
            match self.store.read_spend(&meta).await? {
                Some(spend) => {
                    self.spends.insert(path, (version, spend));
                }
                None => {
                    self.spends.remove(&path);
                }
            }
        }
        Ok(())
    }

    /// The progress record from the running sums: constant work but for the commits that
    /// leave the rate window and the spend files of attempts that did not commit.
    pub(super) fn progress(&mut self, failed: u64, outstanding: u64) -> JobProgress {
        let now = Utc::now();
        let window_start = now - chrono::Duration::seconds(RATE_WINDOW_S);
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at < window_start)
        {
            self.recent.pop_front();
        }
        let totals = &self.totals;
        let mut progress = JobProgress {
            planned: self.plan.len(),
            committed: self.committed.len() as u64,
            failed,
            records: totals.records,
            rows: totals.rows,
            rejects: totals.rejects,
            usage: totals.usage,
            agreement: totals.agreement,
            batches_pending: self.waiting.values().map(|(b, _)| u64::from(*b)).sum(),
            batch_items_pending: self.waiting.values().map(|(_, i)| i).sum(),
            updated_at: Some(now),
            ..JobProgress::default()
        };
        let first_commit = self.recent.iter().map(|(at, _)| *at).min();
        if let Some(first) = first_commit {
            let recent_records: u64 = self.recent.iter().map(|(_, records)| records).sum();
            let seconds = (now - first).num_milliseconds().max(1000) as f64 / 1000.0;
            progress.records_per_s = recent_records as f64 / seconds.min(RATE_WINDOW_S as f64);
        }
        if outstanding == 0 {
            progress.eta_s = Some(0.0);
            progress.completed_at = Some(now);
        } else if progress.records_per_s > 0.0 {
            progress.eta_s = Some(totals.expected_remaining as f64 / progress.records_per_s);
        }
        self.add_spend(&mut progress);
        progress
    }

    /// Fills the spend of attempts that did not commit into `progress`, and the cost by worker.
    pub(super) fn add_spend(&self, progress: &mut JobProgress) {
        let spends = self.spends.values().map(|(_, spend)| spend);
        let uncommitted = UncommittedSpend::of(spends, &self.committed);
        progress.uncommitted = uncommitted.usage;
        // Batches collected for shards that have not committed are paid too; their records
        // hold the cost until the marker does.
        for paid in self.batch_paid.values() {
            progress.uncommitted.add(paid);
        }
        progress.uncommitted_attempts = uncommitted.attempts;
        progress.cut_off = uncommitted.cut_off;
        let mut by_worker = uncommitted.cost_by_worker;
        for (worker, cost) in &self.totals.cost_by_worker {
            *by_worker.entry(worker.clone()).or_insert(0.0) += cost;
        }
        progress.cost_by_worker = by_worker;
    }
}
