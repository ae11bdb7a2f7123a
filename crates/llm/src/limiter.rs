//! Request and token rate limits with governor. A worker enforces its share of the job's
//! cluster-wide limits (share = 1 / live workers, set by the distributed mode; 1 when alone).
//!
//! Buckets are sized so the limiter never bursts past what a provider enforcing the same
//! per-minute limit at a finer granularity would accept: requests refill continuously with a
//! burst of one second's worth less one request (the spare absorbs arrival jitter on the way
//! to a server that enforces the same bucket), or, for a worker that shares the limit with
//! others, no burst and 2 % headroom; tokens with a burst of ten seconds' worth of the share.
//!
//! A rate limit never decides a row: a request reserving more tokens (input plus
//! `max_tokens`) than the share's burst borrows across windows, taking the burst again and
//! again until it holds all it needs, so it waits as long as its tokens take to refill. Only a
//! request larger than the job's whole `tokens_per_minute` is refused: no provider enforcing
//! that limit would ever serve it, however long it waited, and that does not depend on how
//! many workers share the limit. `validate` and the start of a job refuse a `max_tokens` that
//! could never fit.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::LlmError;

/// The job's limits before sharing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

/// The limits a provider announced in its answers' headers (`x-ratelimit-limit-*`,
/// `anthropic-ratelimit-*-limit`): per API key, so cluster-wide figures. `None`: not announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
}

impl ProviderLimits {
    /// Whether the provider announced anything.
    pub fn is_known(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// The latest limits a provider announced, updated from every answer without locking (0 means
/// not announced).
#[derive(Debug, Default)]
pub(crate) struct AnnouncedLimits {
    requests_per_minute: AtomicU32,
    tokens_per_minute: AtomicU32,
}

impl AnnouncedLimits {
    /// Records what one answer announced; a figure the answer left out keeps its last value.
    pub(crate) fn record(&self, seen: ProviderLimits) {
        if let Some(rpm) = seen.requests_per_minute {
            self.requests_per_minute.store(rpm, Ordering::Relaxed);
        }
        if let Some(tpm) = seen.tokens_per_minute {
            self.tokens_per_minute.store(tpm, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> ProviderLimits {
        let known = |value: u32| (value > 0).then_some(value);
        ProviderLimits {
            requests_per_minute: known(self.requests_per_minute.load(Ordering::Relaxed)),
            tokens_per_minute: known(self.tokens_per_minute.load(Ordering::Relaxed)),
        }
    }
}

/// A positive whole number from a header, if the header is there and holds one.
pub(crate) fn header_limit(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u32> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    let value = text
        .parse::<u64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|v| v as u64))?;
    (value > 0).then(|| u32::try_from(value).unwrap_or(u32::MAX))
}

struct Buckets {
    /// Requests a minute this worker paces at (its share, with headroom).
    request_rate: Option<f64>,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
    token_burst: u32,
}

pub struct RateLimits {
    /// The spec's limits: never exceeded.
    configured: Limits,
    state: RwLock<LimiterState>,
}

/// What the buckets are built from now.
struct LimiterState {
    /// The configured limits, lowered to what the provider announced.
    effective: Limits,
    /// The provider's latest announced limits.
    announced: ProviderLimits,
    share: f64,
    buckets: Arc<Buckets>,
}

/// Replenish at `per_minute`, with `burst_seconds` worth of burst less `spare` cells (at least
/// one cell).
fn quota(per_minute: f64, burst_seconds: f64, spare: f64) -> (Quota, u32) {
    let per_minute = per_minute.max(1e-3);
    let period = Duration::from_secs_f64(60.0 / per_minute);
    let burst = ((per_minute / 60.0) * burst_seconds - spare)
        .floor()
        .clamp(1.0, f64::from(u32::MAX)) as u32;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst);
    (quota, burst.get())
}

impl Buckets {
    fn new(limits: Limits, share: f64) -> Self {
        // Sharing the limit with other workers, a burst would be a catch-up after an idle
        // moment; several workers catching up at once overrun a server that is already at its
        // limit. So a share is paced strictly, one request at a time, at 98 % of the share:
        // independent pacers drift in and out of phase, and the server's bucket needs the
        // 2 % to refill between their coincidences.
        let (burst_seconds, headroom) = if share < 1.0 { (0.0, 0.98) } else { (1.0, 1.0) };
        let request_rate = limits
            .requests_per_minute
            .map(|rpm| f64::from(rpm) * share * headroom);
        let requests =
            request_rate.map(|rate| RateLimiter::direct(quota(rate, burst_seconds, 1.0).0));
        let (tokens, token_burst) = match limits.tokens_per_minute {
            Some(tpm) => {
                let (quota, burst) = quota(f64::from(tpm) * share, 10.0, 0.0);
                (Some(RateLimiter::direct(quota)), burst)
            }
            None => (None, u32::MAX),
        };
        Self {
            request_rate,
            requests,
            tokens,
            token_burst,
        }
    }
}

/// A configured limit lowered to the provider's: the smaller of the two, the provider's when
/// none is configured, the configured one while the provider announced none.
fn lowered(configured: Option<u32>, announced: Option<u32>) -> Option<u32> {
    match (configured, announced) {
        (Some(c), Some(a)) => Some(c.min(a)),
        (c, a) => c.or(a),
    }
}

impl RateLimits {
    pub fn new(limits: Limits) -> Self {
        Self {
            configured: limits,
            state: RwLock::new(LimiterState {
                effective: limits,
                announced: ProviderLimits::default(),
                share: 1.0,
                buckets: Arc::new(Buckets::new(limits, 1.0)),
            }),
        }
    }

    /// Takes `share` (0 < share ≤ 1) of the job's limits from now on.
    pub fn set_share(&self, share: f64) {
        let share = share.clamp(1e-6, 1.0);
        let mut state = self.state.write().expect("limiter lock");
        state.share = share;
        state.buckets = Arc::new(Buckets::new(state.effective, share));
    }

    /// Lowers the effective limits to what the provider announced (per API key, so a
    /// cluster-wide figure, of which this worker still takes its share). Never raises a limit
    /// above the configured one; a provider limit adopted when none is configured, or lowering
    /// a configured one, is logged. A later, higher announcement raises the effective limit
    /// again, up to the configured one. Returns the effective limits when they changed.
    pub fn lower_to(&self, announced: ProviderLimits) -> Option<Limits> {
        if !announced.is_known() || self.state.read().expect("limiter lock").announced == announced
        {
            return None;
        }
        let mut state = self.state.write().expect("limiter lock");
        state.announced = announced;
        let effective = Limits {
            requests_per_minute: lowered(
                self.configured.requests_per_minute,
                announced.requests_per_minute,
            ),
            tokens_per_minute: lowered(
                self.configured.tokens_per_minute,
                announced.tokens_per_minute,
            ),
        };
        if effective == state.effective {
            return None;
        }
        state.effective = effective;
        state.buckets = Arc::new(Buckets::new(effective, state.share));
        if effective != self.configured {
            tracing::info!(
                configured_rpm = ?self.configured.requests_per_minute,
                configured_tpm = ?self.configured.tokens_per_minute,
                provider_rpm = ?announced.requests_per_minute,
                provider_tpm = ?announced.tokens_per_minute,
                rpm = ?effective.requests_per_minute,
                tpm = ?effective.tokens_per_minute,
                paced_rpm = ?state.buckets.request_rate,
                "provider announced lower rate limits than configured, keeping to them"
            );
        }
        Some(effective)
    }

    /// The limits in force: the configured ones lowered to the provider's (before sharing).
    pub fn effective(&self) -> Limits {
        self.state.read().expect("limiter lock").effective
    }

    /// The provider's latest announced limits.
    pub fn announced(&self) -> ProviderLimits {
        self.state.read().expect("limiter lock").announced
    }

    /// The most tokens (input plus `max_tokens`) one request may reserve: the job's whole
    /// configured token limit, `None` without one. A provider's announced limit lowers the
    /// pace, never this: a rate limit read from headers does not decide a row.
    pub fn max_request_tokens(&self) -> Option<u64> {
        self.configured.tokens_per_minute.map(u64::from)
    }

    /// Waits until one request of `tokens` tokens may be sent; says whether it had to wait.
    /// Refuses only a request larger than the job's whole token limit.
    pub async fn acquire(&self, tokens: u64) -> Result<bool, LlmError> {
        if let Some(limit) = self.max_request_tokens()
            && tokens > limit
        {
            return Err(LlmError::BadRecord(format!(
                "request needs about {tokens} tokens (input + max_tokens), more than the job's whole \
                 llm.tokens_per_minute of {limit}: no provider enforcing that limit would serve it; \
                 shorten the input, lower llm.max_tokens or raise llm.tokens_per_minute"
            )));
        }
        let buckets = self.state.read().expect("limiter lock").buckets.clone();
        let mut waited = false;
        if let Some(bucket) = &buckets.tokens {
            let mut needed = u32::try_from(tokens.max(1)).unwrap_or(u32::MAX);
            // Borrow across windows: a request larger than the burst takes whole bursts until
            // what is left fits in one.
            while needed > 0 {
                let take = needed.min(buckets.token_burst);
                let n = NonZeroU32::new(take).expect("take is at least one");
                if !matches!(bucket.check_n(n), Ok(Ok(()))) {
                    waited = true;
                    bucket
                        .until_n_ready(n)
                        .await
                        .expect("a take never exceeds the burst");
                }
                needed -= take;
            }
        }
        if let Some(bucket) = &buckets.requests
            && bucket.check().is_err()
        {
            waited = true;
            bucket.until_ready().await;
        }
        Ok(waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u32>) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    fn announced(rpm: Option<u32>, tpm: Option<u32>) -> ProviderLimits {
        ProviderLimits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
        }
    }

    #[test]
    fn provider_limits_lower_the_configured_ones_and_never_raise_them() {
        let limiter = RateLimits::new(limits(Some(600), Some(100_000)));
        assert_eq!(limiter.lower_to(ProviderLimits::default()), None);
        assert_eq!(
            limiter.lower_to(announced(Some(60), Some(500_000))),
            Some(limits(Some(60), Some(100_000)))
        );
        assert_eq!(limiter.effective(), limits(Some(60), Some(100_000)));
        assert_eq!(limiter.announced(), announced(Some(60), Some(500_000)));
        // The same announcement again changes nothing.
        assert_eq!(limiter.lower_to(announced(Some(60), Some(500_000))), None);
        // A higher one raises the effective limit back, never above the spec.
        assert_eq!(
            limiter.lower_to(announced(Some(6000), None)),
            Some(limits(Some(600), Some(100_000)))
        );
        assert_eq!(limiter.max_request_tokens(), Some(100_000));
        // Nothing configured: the provider's limits are adopted.
        let open = RateLimits::new(Limits::default());
        open.lower_to(announced(Some(120), None));
        assert_eq!(open.effective(), limits(Some(120), None));
        assert_eq!(open.max_request_tokens(), None);
    }

    #[test]
    fn a_lowered_limit_is_still_shared_between_workers() {
        // The provider's 120 rpm is per key, so the whole cluster's: a worker with half the
        // share paces at half of it, strictly (no burst).
        let limiter = RateLimits::new(limits(Some(1200), None));
        let rate = |limiter: &RateLimits| limiter.state.read().unwrap().buckets.request_rate;
        limiter.set_share(0.5);
        assert_eq!(rate(&limiter), Some(1200.0 * 0.5 * 0.98));
        limiter.lower_to(announced(Some(120), None));
        assert_eq!(rate(&limiter), Some(120.0 * 0.5 * 0.98));
        // The lowered limit survives a change of share.
        limiter.set_share(1.0);
        assert_eq!(limiter.effective(), limits(Some(120), None));
        assert_eq!(rate(&limiter), Some(120.0));
        limiter.set_share(0.25);
        assert_eq!(rate(&limiter), Some(120.0 * 0.25 * 0.98));
    }

    #[test]
    fn a_shared_request_limit_has_no_burst() {
        let alone = Buckets::new(
            Limits {
                requests_per_minute: Some(1200),
                tokens_per_minute: None,
            },
            1.0,
        );
        let shared = Buckets::new(
            Limits {
                requests_per_minute: Some(1200),
                tokens_per_minute: None,
            },
            0.25,
        );
        let take_at_once = |buckets: &Buckets| {
            let bucket = buckets.requests.as_ref().unwrap();
            (0..100).take_while(|_| bucket.check().is_ok()).count()
        };
        assert_eq!(take_at_once(&alone), 19);
        assert_eq!(take_at_once(&shared), 1);
    }

    #[test]
    fn bursts_are_one_second_of_requests_and_ten_of_tokens() {
        assert_eq!(quota(1200.0, 1.0, 1.0).1, 19);
        assert_eq!(quota(30.0, 1.0, 1.0).1, 1);
        assert_eq!(quota(60_000.0, 10.0, 0.0).1, 10_000);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_shares_burst_waits_for_its_tokens_instead_of_failing() {
        // Two workers share 12,000 tokens a minute: a share refills 100 tokens a second with
        // a burst of 1,000, below one request of 1,200, which must still go through once the
        // 200 tokens it borrows from the next window have refilled.
        let limits = RateLimits::new(Limits {
            requests_per_minute: None,
            tokens_per_minute: Some(12_000),
        });
        limits.set_share(0.5);
        let start = std::time::Instant::now();
        assert!(limits.acquire(1200).await.unwrap(), "had to wait");
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        // The bucket is now in debt: the next request waits for its tokens too.
        assert!(limits.acquire(50).await.unwrap());
    }

    #[tokio::test]
    async fn only_a_request_larger_than_the_whole_limit_is_refused() {
        let limits = RateLimits::new(Limits {
            requests_per_minute: None,
            tokens_per_minute: Some(6000),
        });
        limits.set_share(0.1);
        let error = limits.acquire(6001).await.unwrap_err();
        assert!(
            matches!(&error, LlmError::BadRecord(reason) if reason.contains("llm.tokens_per_minute of 6000")),
            "{error}"
        );
    }
}
