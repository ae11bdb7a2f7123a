//! The gateway every pipeline stage calls. In order, per call: a fatal error seen before fails
//! fast; the response cache answers if it can (never with another endpoint's answer); the
//! budget reserves the call's worst-case cost; then per attempt: [`Gateway::admit`] waits out
//! any provider-wide pause, takes an adaptive-concurrency slot and waits for the request and
//! token rate limits; the provider is called; the answer is accounted
//! ([`Gateway::account_answer`]), or a retryable failure backs off
//! ([`Gateway::after_retryable`]: full jitter, never sooner than the server's retry hint, which
//! also pauses every other call to this endpoint) within a per-request retry budget. What a
//! finished call cost goes to the budget and the attempt's spend ledger (see [`crate::scope`]).
//! After each answer the rate limits are lowered to those the provider announced in its
//! headers when they are lower than the spec's ([`Gateway::effective_limits`]), never raised.
//! The gateway's totals ([`Gateway::totals`]) move as things happen: an answer's tokens and cost
//! when it arrives, a retry or a 429 when it is seen, so a progress display can read them live;
//! once every call has returned they equal the sum of the usage the calls returned.
//!
//! [`Gateway::chat_parsed`] adds the structured-output loop: an answer cut off by `max_tokens`
//! is asked again with a larger limit (within a cap, and within the job's token limit); an
//! answer the parser refuses gets one repair request that shows the model its error; after
//! that the record is rejected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rubricmill_core::spec::Price;
use rubricmill_core::{Message, Usage};

use crate::cache::{CacheStore, cache_key};
use crate::concurrency::Slot;
use crate::concurrency::{AdaptiveConcurrency, Feedback};
use crate::limiter::{Limits, RateLimits};
use crate::tokens::TokenEstimator;
use crate::{ChatProvider, ChatRequest, ChatResponse, LlmError};
use futures::StreamExt;

/// A job's spending limit, shared by every gateway (stage) of the job.
pub struct Budget {
    max_usd: Option<f64>,
    spend: Mutex<Spend>,
}

#[derive(Default)]
struct Spend {
    spent: f64,
    reserved: f64,
    /// Spent by other workers of the job (the distributed mode keeps it current).
    elsewhere: f64,
}

impl Budget {
    /// `spent_before_usd` is what earlier runs of the job already spent.
    pub fn new(max_usd: Option<f64>, spent_before_usd: f64) -> Arc<Self> {
        Arc::new(Self {
            max_usd,
            spend: Mutex::new(Spend {
                spent: spent_before_usd,
                ..Spend::default()
            }),
        })
    }

    pub fn unlimited() -> Arc<Self> {
        Self::new(None, 0.0)
    }

    /// Reserves the worst-case cost of a call (estimated input plus `max_tokens` of output),
    /// so concurrent calls can never spend past the budget together.
    fn reserve(&self, worst_case: f64) -> Result<(), LlmError> {
        let Some(budget) = self.max_usd else {
            return Ok(());
        };
        let mut spend = self.spend.lock().expect("spend lock");
        if spend.spent + spend.elsewhere + spend.reserved + worst_case > budget {
            return Err(LlmError::BudgetExhausted {
                budget,
                spent: spend.spent + spend.elsewhere,
            });
        }
        spend.reserved += worst_case;
        Ok(())
    }

    /// Whether `usd` more would stay within the limit (a batch about to be submitted).
    pub fn check(&self, usd: f64) -> Result<(), LlmError> {
        self.reserve(usd)?;
        self.settle(usd, 0.0);
        Ok(())
    }

    fn settle(&self, reserved: f64, actual: f64) {
        let mut spend = self.spend.lock().expect("spend lock");
        spend.reserved = (spend.reserved - reserved).max(0.0);
        spend.spent += actual;
    }

    pub fn spent(&self) -> f64 {
        self.spend.lock().expect("spend lock").spent
    }

    /// What counts against the limit: this budget's own spend plus what was spent elsewhere.
    pub fn counted(&self) -> f64 {
        let spend = self.spend.lock().expect("spend lock");
        spend.spent + spend.elsewhere
    }

    /// Sets what other workers of the job have spent, counted against the same limit.
    pub fn set_spent_elsewhere(&self, usd: f64) {
        self.spend.lock().expect("spend lock").elsewhere = usd.max(0.0);
    }
}

#[derive(Clone)]
pub struct GatewayConfig {
    /// Model name, for the tokenizer.
    pub model: String,
    pub price_per_million: Option<Price>,
    pub budget: Arc<Budget>,
    pub limits: Limits,
    pub max_concurrency: usize,
    pub initial_concurrency: usize,
    /// Retries of one request before its shard is handed back.
    pub max_retries: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Largest `max_tokens` a truncated answer may be retried with.
    pub max_tokens_cap: u32,
    pub cache: Option<Arc<dyn CacheStore>>,
    /// The endpoint's identity in cache keys ([`crate::cache::endpoint_identity`]).
    pub endpoint: String,
    /// Batch mode: the batch group calls this gateway cannot answer from the cache are deferred
    /// to (inside a [`crate::BatchScope`]). `None`: online.
    pub batch_group: Option<String>,
    /// Batch mode: the batch price as a fraction of the online price.
    pub batch_price_factor: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            price_per_million: None,
            budget: Budget::unlimited(),
            limits: Limits::default(),
            max_concurrency: 64,
            initial_concurrency: 8,
            max_retries: 6,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_tokens_cap: 16_384,
            cache: None,
            endpoint: String::new(),
            batch_group: None,
            batch_price_factor: 1.0,
        }
    }
}

pub struct Gateway {
    provider: Arc<dyn ChatProvider>,
    config: GatewayConfig,
    limits: RateLimits,
    concurrency: AdaptiveConcurrency,
    tokens: TokenEstimator,
    totals: Mutex<Usage>,
    paused_until: Mutex<Option<Instant>>,
    fatal: OnceLock<String>,
    /// Calls that waited for a rate-limit permit or a pause.
    rate_limit_waits: AtomicU64,
    /// Told about every pause a 429 with a retry hint caused (the distributed mode broadcasts it).
    throttle_observer: OnceLock<ThrottleObserver>,
    /// Told about every attempt (the worker's metrics).
    call_observer: OnceLock<Arc<dyn CallObserver>>,
}

/// Receives the pause a provider's 429 asked for.
pub type ThrottleObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// How one attempt of a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The provider answered.
    Ok,
    /// Answered from the response cache; nothing was sent.
    Cached,
    /// The provider pushed back (429 or 503).
    Throttled,
    /// Any other failure: a 5xx, a timeout, a broken connection, a refused request.
    Error,
}

impl CallOutcome {
    /// The label value: `ok`, `cached`, `throttled`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Cached => "cached",
            CallOutcome::Throttled => "throttled",
            CallOutcome::Error => "error",
        }
    }
}

/// One attempt of a call, as a [`CallObserver`] sees it.
#[derive(Debug, Clone)]
pub struct CallReport<'a> {
    /// The pipeline stage the call was made for ([`crate::scope::NO_STAGE`] when unknown).
    pub stage: &'a str,
    pub model: &'a str,
    pub outcome: CallOutcome,
    /// From sending to the answer or the failure; `None` for a cached answer.
    pub latency: Option<Duration>,
    /// Tokens and cost of this attempt (nothing for a failed one).
    pub usage: Usage,
    /// Whether the call is sent again after this failed attempt.
    pub retried: bool,
}

/// Told about every attempt of every call of a gateway: the metrics by stage, model and outcome.
pub trait CallObserver: Send + Sync {
    fn observe(&self, report: &CallReport<'_>);
}

impl Gateway {
    pub fn new(provider: Arc<dyn ChatProvider>, config: GatewayConfig) -> Self {
        let concurrency = AdaptiveConcurrency::new(
            config.initial_concurrency,
            config.max_concurrency,
            Duration::from_millis(500),
        );
        Self {
            limits: RateLimits::new(config.limits),
            tokens: TokenEstimator::for_model(&config.model),
            provider,
            concurrency,
            config,
            totals: Mutex::new(Usage::default()),
            paused_until: Mutex::new(None),
            fatal: OnceLock::new(),
            rate_limit_waits: AtomicU64::new(0),
            throttle_observer: OnceLock::new(),
            call_observer: OnceLock::new(),
        }
    }

    pub fn provider_kind(&self) -> &'static str {
        self.provider.kind()
    }

    /// The structured-output mode the endpoint settled on so far, when it has modes.
    pub fn structured_output(&self) -> Option<&'static str> {
        self.provider.structured_output()
    }

    /// Usage of every call made through this gateway so far, including the answers, retries
    /// and 429s of calls still going on.
    pub fn totals(&self) -> Usage {
        *self.totals.lock().expect("usage lock")
    }

    /// Current adaptive concurrency limit.
    pub fn concurrency_limit(&self) -> usize {
        self.concurrency.limit()
    }

    /// The rate limits the provider announced in its latest answers (per key, cluster-wide).
    pub fn discovered_limits(&self) -> crate::ProviderLimits {
        self.limits.announced()
    }

    /// The rate limits in force: the configured ones lowered to the provider's, before
    /// sharing between workers.
    pub fn effective_limits(&self) -> Limits {
        self.limits.effective()
    }

    /// Takes `share` of the job's rate limits (the distributed mode sets 1 / live workers).
    pub fn set_share(&self, share: f64) {
        self.limits.set_share(share);
    }

    /// Calls that had to wait for a rate-limit permit or a pause so far.
    pub fn rate_limit_waits(&self) -> u64 {
        self.rate_limit_waits.load(Ordering::Relaxed)
    }

    /// Sets the observer of pauses caused by 429s (once; later calls are ignored).
    pub fn observe_throttling(&self, observer: ThrottleObserver) {
        let _ = self.throttle_observer.set(observer);
    }

    /// Sets the observer of every attempt (once; later calls are ignored).
    pub fn observe_calls(&self, observer: Arc<dyn CallObserver>) {
        let _ = self.call_observer.set(observer);
    }

    /// Tells the call observer, if any, about one attempt.
    fn report(
        &self,
        request: &ChatRequest,
        outcome: CallOutcome,
        latency: Option<Duration>,
        usage: Usage,
        retried: bool,
    ) {
        let Some(observer) = self.call_observer.get() else {
            return;
        };
        let stage = crate::scope::stage();
        observer.observe(&CallReport {
            stage: &stage,
            model: &request.model,
            outcome,
            latency,
            usage,
            retried,
        });
    }

    /// Holds every call to this endpoint until `duration` from now has passed.
    pub fn pause(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut paused = self.paused_until.lock().expect("pause lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Waits out any pause; says whether there was one.
    async fn wait_for_pause(&self) -> bool {
        let mut waited = false;
        loop {
            let until = *self.paused_until.lock().expect("pause lock");
            match until {
                Some(until) if until > Instant::now() => {
                    waited = true;
                    tokio::time::sleep_until(until.into()).await
                }
                _ => return waited,
            }
        }
    }

    /// Estimated prompt tokens of a request.
    pub fn estimate_prompt_tokens(&self, messages: &[Message]) -> u64 {
        self.tokens.messages(messages)
    }

    fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.config.price_per_million.map_or(0.0, |price| {
            (prompt_tokens as f64 * price.input + completion_tokens as f64 * price.output)
                / 1_000_000.0
        })
    }

    fn account(&self, usage: &Usage) {
        self.totals.lock().expect("usage lock").add(usage);
    }

    /// Sends one request (or answers it from the cache); returns the answer and the usage of
    /// this call alone, retries included.
    pub async fn chat(&self, request: &ChatRequest) -> Result<(ChatResponse, Usage), LlmError> {
        let (result, usage) = self.chat_accounted(request).await;
        result.map(|answer| (answer, usage))
    }

    /// Like [`Gateway::chat`], but the usage comes back whatever the outcome, so failed calls
    /// are accounted to the record that made them.
    pub async fn chat_accounted(
        &self,
        request: &ChatRequest,
    ) -> (Result<ChatResponse, LlmError>, Usage) {
        if let Some(reason) = self.fatal.get() {
            return (Err(LlmError::Fatal(reason.clone())), Usage::default());
        }
        // The simulated provider's answers cost nothing and must never stand in for a model's.
        let cache = self
            .config
            .cache
            .as_ref()
            .filter(|_| self.provider.kind() != "simulated");
        let key = cache.map(|_| cache_key(&self.config.endpoint, request));
        if let (Some(cache), Some(key)) = (cache, &key)
            && let Some(cached) = cache
                .get(key)
                .await
                .and_then(|bytes| crate::cache::decode(&bytes, &self.config.endpoint))
        {
            crate::scope::served_from_cache(cached.origin.as_deref());
            let usage = Usage {
                cache_hits: 1,
                ..Usage::default()
            };
            self.account(&usage);
            self.report(request, CallOutcome::Cached, None, usage, false);
            return (Ok(cached.answer), usage);
        }
        if let (Some(group), Some(key)) = (&self.config.batch_group, &key)
            && crate::scope::defer(group, key, request)
        {
            return (Err(LlmError::Deferred), Usage::default());
        }
        let prompt_estimate = self.tokens.messages(&request.messages);
        let worst_case = self.cost(prompt_estimate, u64::from(request.max_tokens));
        if let Err(error) = self.config.budget.reserve(worst_case) {
            return (Err(error), Usage::default());
        }
        // send_with_retries accounts each answer and retry to the totals as it happens.
        let (result, usage) = self.send_with_retries(request, prompt_estimate).await;
        self.config.budget.settle(worst_case, usage.cost_usd);
        if let (Ok(answer), Some(cache), Some(key)) = (&result, cache, &key) {
            let entry = crate::cache::encode(answer, &self.config.endpoint, crate::scope::origin());
            cache.put(key, entry).await;
        }
        (result, usage)
    }

    /// Whether this gateway defers calls to provider batches.
    pub fn batch_group(&self) -> Option<&str> {
        self.config.batch_group.as_deref()
    }

    /// What `calls` would cost at the batch price, by their estimated prompts and typical
    /// answers (for the budget check before a batch is submitted).
    pub fn estimate_batch_cost(&self, calls: &[crate::DeferredCall]) -> f64 {
        calls
            .iter()
            .map(|call| {
                let prompt = self.tokens.messages(&call.request.messages);
                self.estimate_call(&call.request, prompt).cost_usd
            })
            .sum::<f64>()
            * self.config.batch_price_factor
    }

    /// Takes in the answers of a provider batch, each `(cache key, stage, answer)`: stores them
    /// in the response cache, where the shard's next pass finds them, and returns what they
    /// cost at the batch price. The caller records that cost once, with the batch's collection
    /// (`store::batches`): an attempt that dies after storing answers and before recording
    /// leaves the batch uncollected, and the next one takes the same answers in and records the
    /// same cost. So the cost goes to this process's totals, budget and call observer, but not
    /// to the attempt's spend ledger.
    pub async fn accept_batch_answers(
        &self,
        model: &str,
        answers: Vec<(String, String, ChatResponse)>,
    ) -> Usage {
        let Some(cache) = &self.config.cache else {
            return Usage::default();
        };
        let mut total = Usage::default();
        let mut entries = Vec::with_capacity(answers.len());
        for (key, stage, mut answer) in answers {
            if answer.usage.completion_tokens == 0 && !answer.content.is_empty() {
                answer.usage.completion_tokens = self.tokens.text(&answer.content);
            }
            let online = self.cost(answer.usage.prompt_tokens, answer.usage.completion_tokens);
            let cost = online * self.config.batch_price_factor;
            let usage = Usage {
                calls: 1,
                tokens_in: answer.usage.prompt_tokens,
                tokens_out: answer.usage.completion_tokens,
                cost_usd: cost,
                batch_calls: 1,
                batch_saved_usd: online - cost,
                ..Usage::default()
            };
            self.config.budget.settle(0.0, cost);
            self.account(&usage);
            if let Some(observer) = self.call_observer.get() {
                observer.observe(&CallReport {
                    stage: &stage,
                    model,
                    outcome: CallOutcome::Ok,
                    latency: None,
                    usage,
                    retried: false,
                });
            }
            total.add(&usage);
            let origin = crate::scope::origin();
            entries.push((
                key,
                crate::cache::encode(&answer, &self.config.endpoint, origin),
            ));
        }
        futures::stream::iter(entries)
            .for_each_concurrent(16, |(key, entry)| async move {
                cache.put(&key, entry).await;
            })
            .await;
        total
    }

    /// Sends `request` until it is answered, fails for good or runs out of retries.
    async fn send_with_retries(
        &self,
        request: &ChatRequest,
        prompt_estimate: u64,
    ) -> (Result<ChatResponse, LlmError>, Usage) {
        let mut usage = Usage::default();
        let reservation = prompt_estimate + u64::from(request.max_tokens);
        let mut attempt = 0u32;
        loop {
            let slot = match self.admit(reservation).await {
                Ok(slot) => slot,
                Err(error) => return (Err(error), usage),
            };
            let started = Instant::now();
            let estimate = self.estimate_call(request, prompt_estimate);
            crate::scope::sending(&estimate);
            crate::scope::recorded().await;
            let error = match self.provider.chat(request).await {
                Ok(answer) => {
                    self.concurrency.release(slot, Feedback::Success);
                    // Keep to the limits the provider announced, when lower than the spec's.
                    self.limits.lower_to(self.provider.provider_limits());
                    let mut paid = Usage::default();
                    let answer =
                        self.account_answer(request, answer, prompt_estimate, started, &mut paid);
                    crate::scope::settled(&estimate, &paid);
                    self.account(&paid);
                    let latency = Some(started.elapsed());
                    self.report(request, CallOutcome::Ok, latency, paid, false);
                    usage.add(&paid);
                    return (Ok(answer), usage);
                }
                Err(error) => {
                    crate::scope::settled(&estimate, &Usage::default());
                    error
                }
            };
            let LlmError::Retryable {
                reason,
                retry_after,
                throttled,
            } = error
            else {
                self.concurrency.release(slot, Feedback::Neutral);
                let latency = Some(started.elapsed());
                self.report(
                    request,
                    CallOutcome::Error,
                    latency,
                    Usage::default(),
                    false,
                );
                return (Err(self.settle_failure(error)), usage);
            };
            let latency = Some(started.elapsed());
            let feedback = if throttled {
                Feedback::PushBack
            } else {
                Feedback::Neutral
            };
            self.concurrency.release(slot, feedback);
            attempt += 1;
            let next = self.after_retryable(attempt, &reason, retry_after, throttled, &mut usage);
            let outcome = if throttled {
                CallOutcome::Throttled
            } else {
                CallOutcome::Error
            };
            self.report(request, outcome, latency, Usage::default(), next.is_some());
            match next {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    let reason = format!("gave up after {attempt} attempts: {reason}");
                    tracing::warn!(request_model = %request.model, attempts = attempt, reason = %reason, "llm call failed for good");
                    let error = LlmError::Retryable {
                        reason,
                        retry_after,
                        throttled,
                    };
                    return (Err(error), usage);
                }
            }
        }
    }

    /// Waits until one attempt may be sent: any provider-wide pause, an adaptive-concurrency
    /// slot, then the request and token rate limits. Fails when another call hit a fatal error
    /// meanwhile, or when the request can never fit the job's token limit.
    async fn admit(&self, reservation: u64) -> Result<Slot, LlmError> {
        let paused = self.wait_for_pause().await;
        let slot = self.concurrency.acquire().await;
        if let Some(reason) = self.fatal.get() {
            self.concurrency.release(slot, Feedback::Neutral);
            return Err(LlmError::Fatal(reason.clone()));
        }
        match self.limits.acquire(reservation).await {
            Ok(limited) => {
                if paused || limited {
                    self.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(slot)
            }
            Err(error) => {
                self.concurrency.release(slot, Feedback::Neutral);
                Err(error)
            }
        }
    }

    /// What one request will likely cost: its estimated prompt, and the completion tokens
    /// answers of this gateway have averaged so far (`max_tokens` before the first answer).
    fn estimate_call(&self, request: &ChatRequest, prompt_estimate: u64) -> Usage {
        let totals = self.totals();
        let completion = totals
            .tokens_out
            .checked_div(totals.calls)
            .map_or(u64::from(request.max_tokens), |average| {
                average.min(u64::from(request.max_tokens))
            });
        Usage {
            calls: 1,
            tokens_in: prompt_estimate,
            tokens_out: completion,
            cost_usd: self.cost(prompt_estimate, completion),
            ..Usage::default()
        }
    }

    /// Counts an answer's tokens and cost into `usage`, estimating what the provider left out,
    /// and teaches the token estimator from what it reported.
    fn account_answer(
        &self,
        request: &ChatRequest,
        mut answer: ChatResponse,
        prompt_estimate: u64,
        started: Instant,
        usage: &mut Usage,
    ) -> ChatResponse {
        usage.latency.record(started.elapsed());
        if answer.usage.prompt_tokens == 0 {
            answer.usage.prompt_tokens = prompt_estimate;
        } else {
            self.tokens
                .observe(&request.messages, answer.usage.prompt_tokens);
        }
        if answer.usage.completion_tokens == 0 && !answer.content.is_empty() {
            answer.usage.completion_tokens = self.tokens.text(&answer.content);
        }
        usage.calls += 1;
        usage.tokens_in += answer.usage.prompt_tokens;
        usage.tokens_out += answer.usage.completion_tokens;
        usage.cost_usd += self.cost(answer.usage.prompt_tokens, answer.usage.completion_tokens);
        answer
    }

    /// After the `attempt`-th retryable failure: shares the server's pause with every other
    /// call (a 429 or 503 with a hint), then returns how long to back off, or `None` when the
    /// request's retries are spent. Every retry is logged at info with its reason.
    fn after_retryable(
        &self,
        attempt: u32,
        reason: &str,
        retry_after: Option<Duration>,
        throttled: bool,
        usage: &mut Usage,
    ) -> Option<Duration> {
        let mut seen = Usage::default();
        if throttled {
            seen.throttled = 1;
        }
        if let Some(hint) = retry_after.filter(|_| throttled) {
            self.pause(hint);
            if let Some(observer) = self.throttle_observer.get() {
                observer(hint);
            }
        }
        if attempt > self.config.max_retries {
            self.account(&seen);
            usage.add(&seen);
            return None;
        }
        seen.retries = 1;
        self.account(&seen);
        usage.add(&seen);
        let delay = full_jitter(self.config.base_backoff, self.config.max_backoff, attempt)
            .max(retry_after.unwrap_or_default());
        tracing::info!(
            attempt,
            max_retries = self.config.max_retries,
            delay_ms = delay.as_millis() as u64,
            reason = %reason,
            "llm call failed, retrying"
        );
        Some(delay)
    }

    /// A non-retryable failure: a fatal one stops every later call of this gateway.
    fn settle_failure(&self, error: LlmError) -> LlmError {
        let LlmError::Fatal(reason) = error else {
            return error;
        };
        let reason = self.fatal.get_or_init(|| reason).clone();
        tracing::error!(reason = %reason, "llm endpoint unusable, stopping calls");
        LlmError::Fatal(reason)
    }

    /// Sends a request whose answer `parse` must accept: a truncated answer is asked again with
    /// a larger `max_tokens` (up to twice, within the cap), a refused answer gets one repair
    /// request showing the model the parser's complaint; a record whose answer still fails is
    /// rejected. The usage of every call made comes back whatever the outcome.
    pub async fn chat_parsed<T>(
        &self,
        request: &ChatRequest,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> (Result<T, LlmError>, Usage) {
        let mut total = Usage::default();
        let result = self.parse_loop(request, &parse, &mut total).await;
        (result, total)
    }

    async fn parse_loop<T>(
        &self,
        request: &ChatRequest,
        parse: &impl Fn(&str) -> Result<T, String>,
        total: &mut Usage,
    ) -> Result<T, LlmError> {
        let mut request = request.clone();
        let mut answer = self.counted(&request, total).await?;
        let mut growths = 0;
        // A grown request must still fit the job's whole token limit, or it could never be sent.
        let room = self.limits.max_request_tokens().map(|limit| {
            let room = limit.saturating_sub(self.tokens.messages(&request.messages));
            u32::try_from(room).unwrap_or(u32::MAX)
        });
        while answer.finish_reason == "length" {
            let grown = request
                .max_tokens
                .saturating_mul(2)
                .min(self.config.max_tokens_cap)
                .min(room.unwrap_or(u32::MAX));
            if growths == 2 || grown <= request.max_tokens {
                return Err(LlmError::BadRecord(format!(
                    "answer cut off at max_tokens = {}",
                    request.max_tokens
                )));
            }
            request.max_tokens = grown;
            growths += 1;
            self.count_retry(total);
            answer = self.counted(&request, total).await?;
        }
        let complaint = match parse(&answer.content) {
            Ok(parsed) => return Ok(parsed),
            Err(complaint) => complaint,
        };
        let mut repair = request.clone();
        repair
            .messages
            .push(Message::new("assistant", answer.content.clone()));
        repair.messages.push(Message::new(
            "user",
            format!(
                "That answer cannot be used: {complaint}. Reply again with only the corrected JSON object, following the \
                 requested format exactly."
            ),
        ));
        self.count_retry(total);
        let repaired = self.counted(&repair, total).await?;
        if repaired.finish_reason == "length" {
            return Err(LlmError::BadRecord(format!(
                "repaired answer cut off at max_tokens = {}",
                repair.max_tokens
            )));
        }
        parse(&repaired.content).map_err(|complaint| {
            LlmError::Unusable(format!("unusable answer after one repair: {complaint}"))
        })
    }

    /// A request sent again for its answer's sake (truncated or unparsable), counted in the
    /// record's usage and the gateway's totals alike.
    fn count_retry(&self, total: &mut Usage) {
        let retry = Usage {
            retries: 1,
            ..Usage::default()
        };
        self.account(&retry);
        total.add(&retry);
    }

    async fn counted(
        &self,
        request: &ChatRequest,
        total: &mut Usage,
    ) -> Result<ChatResponse, LlmError> {
        let (result, usage) = self.chat_accounted(request).await;
        total.add(&usage);
        result
    }
}

/// Full-jitter exponential backoff: uniform in `[0, min(max, base × 2^(attempt-1))]`.
pub fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max);
    let random = uuid::Uuid::new_v4().as_u128() as u64 % 1_000_001;
    ceiling.mul_f64(random as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimulatedProvider, TokenUsage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn request() -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", "hello there, general question")],
            temperature: 0.0,
            max_tokens: 100,
            seed: None,
            response_format: None,
        }
    }

    /// Answers from a script, one entry per call, then repeats the last.
    struct Scripted {
        answers: Vec<Result<ChatResponse, LlmError>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(answers: Vec<Result<ChatResponse, LlmError>>) -> Arc<Self> {
            Arc::new(Self {
                answers,
                calls: AtomicUsize::new(0),
            })
        }
    }

    fn answer(content: &str, finish: &str) -> Result<ChatResponse, LlmError> {
        Ok(ChatResponse {
            content: content.into(),
            finish_reason: finish.into(),
            usage: TokenUsage {
                prompt_tokens: 10,
                completion_tokens: 5,
            },
        })
    }

    #[async_trait::async_trait]
    impl ChatProvider for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn chat(&self, _request: &ChatRequest) -> Result<ChatResponse, LlmError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            self.answers[call.min(self.answers.len() - 1)].clone()
        }
    }

    fn fast() -> GatewayConfig {
        GatewayConfig {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..GatewayConfig::default()
        }
    }

    #[tokio::test]
    async fn budget_stops_new_calls_once_spent() {
        let config = GatewayConfig {
            price_per_million: Some(Price {
                input: 1_000.0,
                output: 0.0,
            }),
            budget: Budget::new(Some(0.1), 0.0),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(Arc::new(SimulatedProvider::new(0)), config);
        let mut calls = 0;
        let error = loop {
            match gateway.chat(&request()).await {
                Ok(_) => calls += 1,
                Err(error) => break error,
            }
            assert!(calls < 100, "budget never stopped the calls");
        };
        assert!(matches!(error, LlmError::BudgetExhausted { .. }), "{error}");
        assert!(calls >= 5, "{calls} calls");
        assert!(
            gateway.totals().cost_usd <= 0.1 + 1e-12,
            "spent {}",
            gateway.totals().cost_usd
        );
        assert_eq!(gateway.totals().calls, calls);
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_within_the_budget() {
        let retry = || {
            Err(LlmError::Retryable {
                reason: "503".into(),
                retry_after: None,
                throttled: true,
            })
        };
        let provider = Scripted::new(vec![retry(), retry(), answer("ok", "stop")]);
        let gateway = Gateway::new(provider.clone(), fast());
        let (answered, usage) = gateway.chat(&request()).await.unwrap();
        assert_eq!(answered.content, "ok");
        assert_eq!((usage.calls, usage.retries, usage.throttled), (1, 2, 2));
        assert_eq!(
            gateway.totals(),
            usage,
            "the totals count retries and 429s too"
        );
        let always = Scripted::new(vec![retry()]);
        let gateway = Gateway::new(
            always.clone(),
            GatewayConfig {
                max_retries: 3,
                ..fast()
            },
        );
        assert!(matches!(
            gateway.chat(&request()).await,
            Err(LlmError::Retryable { .. })
        ));
        assert_eq!(always.calls.load(Ordering::SeqCst), 4);
    }

    /// A report as `(stage, model, outcome, has latency, tokens in, retried)`.
    type Seen = (String, String, &'static str, bool, u64, bool);

    /// Keeps every report.
    #[derive(Default)]
    struct Reports(Mutex<Vec<Seen>>);

    impl CallObserver for Reports {
        fn observe(&self, report: &CallReport<'_>) {
            self.0.lock().unwrap().push((
                report.stage.to_owned(),
                report.model.to_owned(),
                report.outcome.as_str(),
                report.latency.is_some(),
                report.usage.tokens_in,
                report.retried,
            ));
        }
    }

    #[tokio::test]
    async fn the_call_observer_sees_every_attempt_with_its_stage() {
        let throttled = Err(LlmError::Retryable {
            reason: "429".into(),
            retry_after: None,
            throttled: true,
        });
        let failed = Err(LlmError::Retryable {
            reason: "500".into(),
            retry_after: None,
            throttled: false,
        });
        let provider = Scripted::new(vec![throttled, failed, answer("ok", "stop")]);
        let gateway = Gateway::new(provider, fast());
        let reports = Arc::new(Reports::default());
        gateway.observe_calls(reports.clone());
        crate::scope::in_stage("judge", gateway.chat(&request()))
            .await
            .unwrap();
        gateway.chat(&request()).await.unwrap();
        let seen = reports.0.lock().unwrap().clone();
        let judge = |outcome, latency, tokens, retried| {
            (
                "judge".to_owned(),
                "m".to_owned(),
                outcome,
                latency,
                tokens,
                retried,
            )
        };
        assert_eq!(
            seen,
            vec![
                judge("throttled", true, 0, true),
                judge("error", true, 0, true),
                judge("ok", true, 10, false),
                ("none".to_owned(), "m".to_owned(), "ok", true, 10, false),
            ]
        );
    }

    /// A response cache in memory.
    #[derive(Default)]
    struct MemoryCache(Mutex<std::collections::HashMap<String, bytes::Bytes>>);

    #[async_trait::async_trait]
    impl CacheStore for MemoryCache {
        async fn get(&self, key: &str) -> Option<bytes::Bytes> {
            self.0.lock().unwrap().get(key).cloned()
        }
        async fn put(&self, key: &str, value: bytes::Bytes) {
            self.0.lock().unwrap().insert(key.to_owned(), value);
        }
    }

    #[tokio::test]
    async fn a_cached_answer_is_reported_as_cached_without_latency() {
        let provider = Scripted::new(vec![answer("ok", "stop")]);
        let config = GatewayConfig {
            cache: Some(Arc::new(MemoryCache::default())),
            ..fast()
        };
        let gateway = Gateway::new(provider.clone(), config);
        let reports = Arc::new(Reports::default());
        gateway.observe_calls(reports.clone());
        for _ in 0..2 {
            crate::scope::in_stage("generate", gateway.chat(&request()))
                .await
                .unwrap();
        }
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
        let seen = reports.0.lock().unwrap().clone();
        let generate = |outcome, latency, tokens| {
            (
                "generate".to_owned(),
                "m".to_owned(),
                outcome,
                latency,
                tokens,
                false,
            )
        };
        assert_eq!(
            seen,
            vec![generate("ok", true, 10), generate("cached", false, 0)]
        );
    }

    #[tokio::test]
    async fn totals_show_a_429_while_its_call_waits_to_retry() {
        let provider = Scripted::new(vec![
            Err(LlmError::Retryable {
                reason: "429".into(),
                retry_after: Some(Duration::from_secs(3600)),
                throttled: true,
            }),
            answer("ok", "stop"),
        ]);
        let gateway = Arc::new(Gateway::new(provider.clone(), fast()));
        let call = tokio::spawn({
            let gateway = gateway.clone();
            async move { gateway.chat(&request()).await }
        });
        // The call now waits out the hour-long hint; the totals already show what happened.
        let mut seen = Usage::default();
        for _ in 0..10_000 {
            seen = gateway.totals();
            if seen.throttled > 0 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!call.is_finished(), "the call should still be waiting");
        assert_eq!((seen.throttled, seen.retries, seen.calls), (1, 1, 0));
        call.abort();
    }

    #[tokio::test]
    async fn fatal_errors_stop_every_later_call_without_sending_it() {
        let provider = Scripted::new(vec![
            Err(LlmError::Fatal("bad key".into())),
            answer("ok", "stop"),
        ]);
        let gateway = Gateway::new(provider.clone(), fast());
        assert!(matches!(
            gateway.chat(&request()).await,
            Err(LlmError::Fatal(_))
        ));
        assert!(
            matches!(gateway.chat(&request()).await, Err(LlmError::Fatal(m)) if m == "bad key")
        );
        assert_eq!(provider.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn truncated_answers_grow_max_tokens_and_bad_ones_get_one_repair() {
        let provider = Scripted::new(vec![
            answer("{\"a\": ", "length"),
            answer("nonsense", "stop"),
            answer("{\"a\": 1}", "stop"),
        ]);
        let gateway = Gateway::new(provider.clone(), fast());
        let parse = |text: &str| crate::structured::extract_json(text);
        let (value, usage) = gateway.chat_parsed(&request(), parse).await;
        assert_eq!(value.unwrap()["a"], 1);
        assert_eq!(usage.calls, 3);
        assert_eq!(usage.retries, 2);
        assert_eq!(
            gateway.totals(),
            usage,
            "the totals count growth and repair requests as retries"
        );
        let stubborn = Scripted::new(vec![answer("nonsense", "stop")]);
        let gateway = Gateway::new(stubborn.clone(), fast());
        let (result, usage) = gateway.chat_parsed(&request(), parse).await;
        let error = result.unwrap_err();
        assert_eq!(
            usage.calls, 2,
            "the failed record's calls are still accounted"
        );
        assert!(
            matches!(&error, LlmError::Unusable(m) if m.contains("after one repair")),
            "{error}"
        );
        assert_eq!(
            stubborn.calls.load(Ordering::SeqCst),
            2,
            "exactly one repair"
        );
    }

    #[test]
    fn full_jitter_stays_under_the_growing_ceiling() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 1..10 {
            let ceiling = base.saturating_mul(1 << (attempt - 1)).min(max);
            for _ in 0..50 {
                assert!(full_jitter(base, max, attempt) <= ceiling);
            }
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::TokenUsage;

    /// Records when each call reached it.
    struct Clocked {
        start: Instant,
        arrivals: Mutex<Vec<Duration>>,
    }

    #[async_trait::async_trait]
    impl ChatProvider for Clocked {
        fn kind(&self) -> &'static str {
            "clocked"
        }
        async fn chat(&self, _request: &ChatRequest) -> Result<ChatResponse, LlmError> {
            self.arrivals.lock().unwrap().push(self.start.elapsed());
            Ok(ChatResponse {
                content: "{}".into(),
                finish_reason: "stop".into(),
                usage: TokenUsage::default(),
            })
        }
    }

    /// Most arrivals in any window `[t, t + window)`.
    fn max_in_window(arrivals: &[Duration], window: Duration) -> usize {
        arrivals
            .iter()
            .map(|start| {
                arrivals
                    .iter()
                    .filter(|t| **t >= *start && **t < *start + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    async fn run(limits: Limits, max_tokens: u32, calls: usize) -> Vec<Duration> {
        let provider = Arc::new(Clocked {
            start: Instant::now(),
            arrivals: Mutex::new(Vec::new()),
        });
        let config = GatewayConfig {
            model: "gpt-4o".into(),
            limits,
            max_concurrency: 64,
            initial_concurrency: 64,
            ..GatewayConfig::default()
        };
        let gateway = Arc::new(Gateway::new(provider.clone(), config));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let gateway = gateway.clone();
            tasks.spawn(async move {
                let request = ChatRequest {
                    model: "gpt-4o".into(),
                    messages: vec![Message::new("user", "hi")],
                    temperature: 0.0,
                    max_tokens,
                    seed: None,
                    response_format: None,
                };
                gateway.chat(&request).await.unwrap();
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut arrivals = provider.arrivals.lock().unwrap().clone();
        arrivals.sort();
        // Relative to the first call: loading the tokenizer tables delays the start.
        let first = arrivals[0];
        arrivals.iter().map(|t| *t - first).collect()
    }

    #[tokio::test]
    async fn request_limit_holds_in_every_window() {
        // 1,200 a minute: 20 a second, a burst of 19.
        let arrivals = run(
            Limits {
                requests_per_minute: Some(1200),
                tokens_per_minute: None,
            },
            10,
            50,
        )
        .await;
        assert_eq!(arrivals.len(), 50);
        assert!(max_in_window(&arrivals, Duration::from_millis(500)) <= 19 + 10 + 1);
        // 50 calls at 20 a second after a burst of 19 take at least 31 / 20 s.
        assert!(
            *arrivals.last().unwrap() >= Duration::from_millis(1500),
            "{:?}",
            arrivals.last()
        );
    }

    #[tokio::test]
    async fn token_limit_holds_in_every_window() {
        // 60,000 tokens a minute: 1,000 a second, a burst of 10,000. Each call reserves about
        // 200 tokens (a few prompt tokens plus max_tokens 192): 50 go at once, then 5 a second.
        let arrivals = run(
            Limits {
                requests_per_minute: None,
                tokens_per_minute: Some(60_000),
            },
            192,
            60,
        )
        .await;
        assert_eq!(arrivals.len(), 60);
        let burst = arrivals
            .iter()
            .filter(|t| **t < Duration::from_millis(100))
            .count();
        assert!(
            (45..=51).contains(&burst),
            "{burst} calls in the initial burst"
        );
        assert!(
            *arrivals.last().unwrap() >= Duration::from_millis(1800),
            "{:?}",
            arrivals.last()
        );
        assert!(max_in_window(&arrivals[burst..], Duration::from_secs(1)) <= 6);
    }
}
