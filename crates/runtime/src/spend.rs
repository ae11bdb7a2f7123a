//! The worker's side of the spend ledger (see `rubricmill_store::spend`): each attempt's paid
//! usage, written to `spend/<shard>/<attempt>.json` as its calls finish.
//!
//! Requests report to an in-memory tally when they are sent (at their estimate) and when they
//! come back (at what they cost); one writer task per attempt puts the latest tally whenever it
//! changed, one write at a time and at most one per 10 ms, so a burst of calls costs one write.
//! A request is sent only once a write holding it has landed ([`SpendLedger::recorded`]), so
//! however loaded the machine and however late the writer, a kill cannot lose a request the
//! provider saw: it is in the file, answered or at its estimate as cut off. What a kill can
//! lose is only the settling of answers that came back within the last write. When the attempt ends the writer is stopped after its current write and the file
//! is settled: the winner of the commit removes it (its marker has the same figures), every
//! other attempt writes its final tally.

use std::sync::Arc;

use chrono::Utc;
use rubricmill_core::{ShardId, Usage};
use rubricmill_llm::SpendLedger;
use rubricmill_store::{AttemptSpend, JobStore};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Answered calls and requests on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Tally {
    settled: Usage,
    in_flight: Usage,
    /// Reports taken so far: a write of the tally covers every report up to its count.
    reports: u64,
}

/// The spend ledger of one attempt.
pub struct AttemptLedger {
    totals: Arc<Totals>,
    stop: watch::Sender<bool>,
    writer: JoinHandle<Option<Tally>>,
    store: JobStore,
    template: AttemptSpend,
}

/// What calls report to, and how many reports are on storage.
struct Totals {
    tally: watch::Sender<Tally>,
    /// Reports covered by the last write (or given up on, when writing failed).
    stored: watch::Sender<u64>,
}

impl SpendLedger for Totals {
    fn sending(&self, estimate: &Usage) {
        self.tally.send_modify(|tally| {
            tally.in_flight.add(estimate);
            tally.reports += 1;
        });
    }

    fn settled(&self, estimate: &Usage, usage: &Usage) {
        self.tally.send_modify(|tally| {
            tally.in_flight = minus(&tally.in_flight, estimate);
            tally.settled.add(usage);
            tally.reports += 1;
        });
    }

    fn recorded(&self) -> futures::future::BoxFuture<'static, ()> {
        let wanted = self.tally.borrow().reports;
        let mut stored = self.stored.subscribe();
        Box::pin(async move {
            // A writer that stopped (the attempt ended) leaves nothing to wait for.
            let _ = stored.wait_for(|stored| *stored >= wanted).await;
        })
    }
}

/// `a - b` for the counters a request estimate carries.
fn minus(a: &Usage, b: &Usage) -> Usage {
    Usage {
        calls: a.calls.saturating_sub(b.calls),
        tokens_in: a.tokens_in.saturating_sub(b.tokens_in),
        tokens_out: a.tokens_out.saturating_sub(b.tokens_out),
        cost_usd: (a.cost_usd - b.cost_usd).max(0.0),
        ..*a
    }
}

/// How an attempt ended, for its spend file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// Its marker is the shard's: the marker carries its usage.
    Committed,
    /// Anything else: killed work handed back, a failure, a lost commit race.
    NotCommitted,
}

impl AttemptLedger {
    pub fn start(store: JobStore, shard: &ShardId, attempt: &str, worker: &str) -> Self {
        let (tally, updates) = watch::channel(Tally::default());
        let (stored, _) = watch::channel(0u64);
        let (stop, stopped) = watch::channel(false);
        let template = AttemptSpend {
            shard_id: shard.clone(),
            attempt_id: attempt.to_owned(),
            worker_id: worker.to_owned(),
            updated_at: Utc::now(),
            usage: Usage::default(),
            in_flight: Usage::default(),
        };
        let writer = tokio::spawn(write_changes(
            store.clone(),
            template.clone(),
            updates,
            stored.clone(),
            stopped,
        ));
        Self {
            totals: Arc::new(Totals { tally, stored }),
            stop,
            writer,
            store,
            template,
        }
    }

    /// The handle calls report their usage to.
    pub fn handle(&self) -> Arc<dyn SpendLedger> {
        self.totals.clone()
    }

    /// Stops the writer after its current write and settles the file for how the attempt
    /// ended. Failures are logged: the ledger must never fail a shard.
    pub async fn finish(self, end: AttemptEnd) {
        let _ = self.stop.send(true);
        let written = self.writer.await.unwrap_or_default();
        // Nothing is written from here on: no call may wait for it.
        self.totals.stored.send_replace(u64::MAX);
        let total = *self.totals.tally.borrow();
        let result = match end {
            AttemptEnd::Committed if written.is_some() => {
                self.store
                    .remove_spend(&self.template.shard_id, &self.template.attempt_id)
                    .await
            }
            AttemptEnd::Committed => Ok(()),
            AttemptEnd::NotCommitted if written == Some(total) || total == Tally::default() => {
                Ok(())
            }
            AttemptEnd::NotCommitted => self.store.put_spend(&spend(&self.template, total)).await,
        };
        if let Err(error) = result {
            tracing::warn!(shard = %self.template.shard_id, attempt = %self.template.attempt_id, error = %error, "cannot settle the attempt's spend file");
        }
    }
}

fn spend(template: &AttemptSpend, tally: Tally) -> AttemptSpend {
    AttemptSpend {
        updated_at: Utc::now(),
        usage: tally.settled,
        in_flight: tally.in_flight,
        ..template.clone()
    }
}

/// The least time between two writes of one attempt's spend file: what a kill can lose is at
/// most the calls that came back within one interval.
const WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Writes the latest total whenever it changed, at most once per [`WRITE_INTERVAL`], until told
/// to stop, telling `stored` how many reports each write covered; returns the last total
/// written, if any.
async fn write_changes(
    store: JobStore,
    template: AttemptSpend,
    mut updates: watch::Receiver<Tally>,
    stored: watch::Sender<u64>,
    mut stopped: watch::Receiver<bool>,
) -> Option<Tally> {
    let mut written = None;
    let mut next_write = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return written,
            changed = updates.changed() => if changed.is_err() { return written },
        }
        // Changes within one interval share a write: at thousands of calls a second, a write
        // per call would cost more CPU than the calls themselves.
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return written,
            () = tokio::time::sleep_until(next_write) => {}
        }
        next_write = tokio::time::Instant::now() + WRITE_INTERVAL;
        let total = *updates.borrow_and_update();
        match store.put_spend(&spend(&template, total)).await {
            Ok(()) => written = Some(total),
            Err(error) => {
                // The ledger must never stop the calls: they go on unrecorded.
                tracing::warn!(shard = %template.shard_id, attempt = %template.attempt_id, error = %error, "cannot write the attempt's spend file");
            }
        }
        stored.send_replace(total.reports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(calls: u64) -> Usage {
        Usage {
            calls,
            tokens_in: calls * 10,
            cost_usd: calls as f64 * 0.5,
            ..Usage::default()
        }
    }

    async fn settle_with(end: AttemptEnd) -> (JobStore, Vec<AttemptSpend>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        let ledger = AttemptLedger::start(store.clone(), &ShardId("s1".into()), "a1", "w1");
        let handle = ledger.handle();
        for _ in 0..50 {
            handle.sending(&paid(1));
            tokio::task::yield_now().await;
            handle.settled(&paid(1), &paid(1));
        }
        // Two requests cut off on the wire.
        handle.sending(&paid(2));
        ledger.finish(end).await;
        let spends = store.spends().await.unwrap();
        (store, spends, dir)
    }

    #[tokio::test]
    async fn an_attempt_that_did_not_commit_leaves_its_whole_spend() {
        let (_store, spends, _dir) = settle_with(AttemptEnd::NotCommitted).await;
        assert_eq!(spends.len(), 1);
        assert_eq!(spends[0].usage, paid(50));
        assert_eq!(spends[0].in_flight, paid(2));
        assert_eq!(spends[0].worker_id, "w1");
    }

    #[tokio::test]
    async fn the_committed_attempt_removes_its_file() {
        let (_store, spends, _dir) = settle_with(AttemptEnd::Committed).await;
        assert_eq!(spends, vec![]);
    }

    #[tokio::test]
    async fn a_request_is_on_storage_once_recorded_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        let ledger = AttemptLedger::start(store.clone(), &ShardId("s1".into()), "a1", "w1");
        let handle = ledger.handle();
        for calls in 1..=20u64 {
            handle.sending(&paid(1));
            handle.recorded().await;
            // No waiting and no polling: the write that holds the request has landed.
            let spends = store.spends().await.unwrap();
            assert_eq!(spends.len(), 1);
            assert_eq!(spends[0].in_flight.calls + spends[0].usage.calls, calls);
            handle.settled(&paid(1), &paid(1));
        }
        ledger.finish(AttemptEnd::NotCommitted).await;
        // A call that asks after the attempt ended is not held up.
        handle.sending(&paid(1));
        handle.recorded().await;
    }

    #[tokio::test]
    async fn spend_is_on_storage_while_the_attempt_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(dir.path().to_str().unwrap(), "job").unwrap();
        let ledger = AttemptLedger::start(store.clone(), &ShardId("s1".into()), "a1", "w1");
        ledger.handle().sending(&paid(1));
        ledger.handle().settled(&paid(1), &paid(2));
        // A killed worker never calls finish: the writer alone must have put it down.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let spends = store.spends().await.unwrap();
            if spends.first().map(|s| s.usage) == Some(paid(2)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "spend never written: {spends:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(ledger);
    }
}
