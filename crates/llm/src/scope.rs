//! Who a call is made for. The worker runs each shard attempt inside an [`AttemptScope`] and
//! each record inside a [`RecordScope`] (tokio task-locals, so pipelines need not pass them to
//! every gateway call). The gateway reports to them:
//!
//! - every request goes to the attempt's [`SpendLedger`] when it is sent, with an estimate of
//!   its cost, and again when it comes back, with what it cost; so what a provider billed
//!   survives an attempt that is killed, loses its commit race or fails, and is counted once,
//!   and a request cut off on the wire (which the provider may well bill) is counted at its
//!   estimate;
//! - every answer stored in the response cache is labelled with the attempt that paid for it
//!   ([`AttemptScope::origin`]);
//! - every answer served from the cache is noted in the record's scope with that label, so the
//!   record's rows say which run paid for the answers they were made from.
//!
//! Pipelines run each call of a stage inside [`in_stage`], so the gateway can tell its call
//! observer (the metrics) which stage a call was for, also when stages share an endpoint.
//!
//! In batch mode the worker also runs the attempt inside a [`BatchScope`]: a gateway whose stage
//! runs in batch mode hands each call the cache cannot answer to the scope instead of sending
//! it ([`crate::LlmError::Deferred`]), and the worker submits what the scope collected as the
//! shard's next provider batch.
//!
//! Outside any scope (unit tests, `validate`) the gateway works the same and reports nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use rubricmill_core::Usage;

/// Keeps what one attempt paid, where it survives the attempt.
pub trait SpendLedger: Send + Sync {
    /// A request is on its way; `estimate` is what it will likely cost (one call, estimated
    /// tokens and cost).
    fn sending(&self, estimate: &Usage);
    /// The request sent with `estimate` came back, having cost `usage` (nothing when it
    /// failed).
    fn settled(&self, estimate: &Usage, usage: &Usage);
    /// Resolves once everything reported so far is on storage (or writing it failed): the
    /// gateway sends a request only after its `sending` is recorded, so whatever a kill cuts
    /// short, every request a provider saw is in the ledger.
    fn recorded(&self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// The attempt calls are made for.
#[derive(Clone)]
pub struct AttemptScope {
    /// `<job>/<shard>/<attempt id>`: the label of answers this attempt pays for.
    pub origin: String,
    pub ledger: Option<Arc<dyn SpendLedger>>,
}

/// What one record's calls were answered from.
#[derive(Clone, Default)]
pub struct RecordScope {
    cached_from: Arc<Mutex<BTreeSet<String>>>,
}

/// A call a batch-mode gateway did not send: the shard's next batch carries it.
#[derive(Debug, Clone)]
pub struct DeferredCall {
    /// The response-cache key its answer will be stored under.
    pub key: String,
    /// The stage it was made for.
    pub stage: String,
    pub request: crate::ChatRequest,
}

/// Collects the calls one attempt defers to provider batches, by batch group (the endpoint of
/// the gateway that deferred them).
#[derive(Clone, Default)]
pub struct BatchScope {
    inner: Arc<Mutex<BatchCollector>>,
}

#[derive(Default)]
struct BatchCollector {
    /// Group → cache key → call; a key asked twice is deferred once.
    deferred: BTreeMap<String, BTreeMap<String, DeferredCall>>,
    /// Keys sent online even in batch mode (their batch items failed too often).
    online: BTreeSet<String>,
}

impl BatchScope {
    /// A scope whose calls with a key in `online` are sent online, not deferred.
    pub fn new(online: BTreeSet<String>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(BatchCollector {
                deferred: BTreeMap::new(),
                online,
            })),
        }
    }

    /// Runs `work` with batch-mode gateway calls inside it deferred to this scope.
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        BATCH.scope(self.clone(), work).await
    }

    /// The calls deferred so far, by group, each group in key order.
    pub fn take(&self) -> BTreeMap<String, Vec<DeferredCall>> {
        let deferred = std::mem::take(&mut self.inner.lock().expect("batch scope lock").deferred);
        deferred
            .into_iter()
            .map(|(group, calls)| (group, calls.into_values().collect()))
            .collect()
    }
}

tokio::task_local! {
    static ATTEMPT: AttemptScope;
    static RECORD: RecordScope;
    static STAGE: Arc<str>;
    static BATCH: BatchScope;
}

/// Hands a call to the current batch scope; false when there is none or the key must go
/// online.
pub(crate) fn defer(group: &str, key: &str, request: &crate::ChatRequest) -> bool {
    BATCH
        .try_with(|scope| {
            let mut inner = scope.inner.lock().expect("batch scope lock");
            if inner.online.contains(key) {
                return false;
            }
            let call = DeferredCall {
                key: key.to_owned(),
                stage: stage().to_string(),
                request: request.clone(),
            };
            inner
                .deferred
                .entry(group.to_owned())
                .or_default()
                .entry(key.to_owned())
                .or_insert(call);
            true
        })
        .unwrap_or(false)
}

/// The stage label of calls made outside [`in_stage`].
pub const NO_STAGE: &str = "none";

/// Runs `work` with every gateway call inside it made for the pipeline stage `stage`
/// (`generate`, `judge`, `classify`).
pub async fn in_stage<F: Future>(stage: &str, work: F) -> F::Output {
    STAGE.scope(Arc::from(stage), work).await
}

/// The stage of the current call, [`NO_STAGE`] outside [`in_stage`].
pub fn stage() -> Arc<str> {
    STAGE
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(NO_STAGE))
}

impl AttemptScope {
    /// Runs `work` with every gateway call inside it made for this attempt.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        ATTEMPT.scope(self, work).await
    }
}

impl RecordScope {
    /// Runs `work` with every gateway call inside it made for this record.
    pub async fn run<F: Future>(&self, work: F) -> F::Output {
        RECORD.scope(self.clone(), work).await
    }

    /// The origins of the cached answers the record used, sorted and distinct.
    pub fn cached_from(&self) -> Vec<String> {
        self.cached_from
            .lock()
            .expect("record scope lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// Tells the current attempt's ledger about a request on its way.
pub(crate) fn sending(estimate: &Usage) {
    let _ = ATTEMPT.try_with(|attempt| {
        if let Some(ledger) = &attempt.ledger {
            ledger.sending(estimate);
        }
    });
}

/// Waits until the current attempt's ledger has stored what it was told so far.
pub(crate) async fn recorded() {
    let waiting = ATTEMPT
        .try_with(|attempt| attempt.ledger.as_ref().map(|ledger| ledger.recorded()))
        .ok()
        .flatten();
    if let Some(waiting) = waiting {
        waiting.await;
    }
}

/// Tells the current attempt's ledger what a request sent with `estimate` cost.
pub(crate) fn settled(estimate: &Usage, usage: &Usage) {
    let _ = ATTEMPT.try_with(|attempt| {
        if let Some(ledger) = &attempt.ledger {
            ledger.settled(estimate, usage);
        }
    });
}

/// The label of the current attempt, for answers it stores in the cache.
pub(crate) fn origin() -> Option<String> {
    ATTEMPT.try_with(|attempt| attempt.origin.clone()).ok()
}

/// Notes that the current record used a cached answer paid for by `origin`.
pub(crate) fn served_from_cache(origin: Option<&str>) {
    let _ = RECORD.try_with(|record| {
        record
            .cached_from
            .lock()
            .expect("record scope lock")
            .insert(origin.unwrap_or("unknown").to_owned());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Usage>);

    impl SpendLedger for Collect {
        fn sending(&self, _estimate: &Usage) {}
        fn settled(&self, _estimate: &Usage, usage: &Usage) {
            self.0.lock().unwrap().add(usage);
        }
    }

    #[tokio::test]
    async fn scopes_reach_nested_futures_and_nothing_outside() {
        let ledger = Arc::new(Collect(Mutex::new(Usage::default())));
        let attempt = AttemptScope {
            origin: "job/s1/a1".into(),
            ledger: Some(ledger.clone()),
        };
        let first = RecordScope::default();
        let second = RecordScope::default();
        attempt
            .run(async {
                assert_eq!(origin().as_deref(), Some("job/s1/a1"));
                first
                    .run(async {
                        settled(
                            &Usage::default(),
                            &Usage {
                                calls: 1,
                                ..Usage::default()
                            },
                        );
                        served_from_cache(Some("job/s1/a0"));
                    })
                    .await;
                second.run(async { served_from_cache(None) }).await;
            })
            .await;
        settled(
            &Usage::default(),
            &Usage {
                calls: 5,
                ..Usage::default()
            },
        );
        served_from_cache(Some("outside"));
        assert_eq!(origin(), None);
        assert_eq!(ledger.0.lock().unwrap().calls, 1);
        assert_eq!(first.cached_from(), vec!["job/s1/a0".to_owned()]);
        assert_eq!(second.cached_from(), vec!["unknown".to_owned()]);
    }
}
