//! Rate limits of the mock server: GCRA buckets for requests (per second with a burst, per
//! minute) and tokens (per minute), checked together so that a refused request consumes
//! nothing, and the OpenAI-style headers (`Retry-After`, `retry-after-ms`, `x-ratelimit-*`)
//! that describe them, or their Anthropic equivalents (`anthropic-ratelimit-*`).

use std::time::Duration;

use crate::config::MockConfig;

/// Slack for floating-point sums (nanoseconds).
const EPSILON_NS: f64 = 1.0;

/// A generic cell rate algorithm bucket: `capacity` units, refilled at a steady rate.
#[derive(Debug, Clone)]
struct Bucket {
    /// Nanoseconds per unit.
    interval_ns: f64,
    /// How far ahead of now the theoretical arrival time may run (capacity × interval).
    tau_ns: f64,
    capacity: u64,
    /// Theoretical arrival time, nanoseconds since server start.
    tat_ns: f64,
}

impl Bucket {
    /// A bucket refilled by one unit every `interval_ns`.
    fn new(interval_ns: f64, capacity: u64) -> Self {
        Self {
            interval_ns,
            tau_ns: interval_ns * capacity as f64,
            capacity,
            tat_ns: 0.0,
        }
    }

    /// Nanoseconds to wait until `cost` units fit (0 when they fit now); `None` when they never
    /// fit because `cost` exceeds the capacity.
    fn wait_ns(&self, now_ns: f64, cost: u64) -> Option<f64> {
        let cost_ns = cost as f64 * self.interval_ns;
        if cost_ns > self.tau_ns + EPSILON_NS {
            return None;
        }
        let wait = self.tat_ns.max(now_ns) + cost_ns - self.tau_ns - now_ns;
        Some(if wait <= EPSILON_NS { 0.0 } else { wait })
    }

    fn commit(&mut self, now_ns: f64, cost: u64) {
        self.tat_ns = self.tat_ns.max(now_ns) + cost as f64 * self.interval_ns;
    }

    fn view(&self, now_ns: f64) -> BucketView {
        let backlog_ns = (self.tat_ns - now_ns).max(0.0);
        let remaining = ((self.tau_ns - backlog_ns) / self.interval_ns + 1e-6).floor();
        BucketView {
            limit: self.capacity,
            remaining: remaining.clamp(0.0, self.capacity as f64) as u64,
            reset: Duration::from_nanos(backlog_ns.ceil() as u64),
        }
    }
}

/// What a bucket tells a client: its capacity, what is left, and when it is full again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketView {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admitted; the buckets were charged.
    Allowed,
    /// Refused; nothing was charged. Retry after this long.
    Limited(Duration),
    /// The request needs more tokens than the token bucket holds: it can never pass.
    TooLarge { tokens: u64, limit: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub verdict: Verdict,
    /// The binding request bucket (per second or per minute), when one is configured.
    pub requests: Option<BucketView>,
    pub tokens: Option<BucketView>,
    /// The request limit as a per-minute figure, the unit providers announce it in: `rpm`,
    /// else `rps` × 60.
    pub requests_per_minute: Option<u64>,
}

/// All configured limits of one server.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    /// The request limit per minute as announced (see [`Decision::requests_per_minute`]).
    requests_per_minute: Option<u64>,
    per_second: Option<Bucket>,
    per_minute: Option<Bucket>,
    tokens_per_minute: Option<Bucket>,
}

impl Limiter {
    /// The limiter of a configuration, or `None` when it sets no limit.
    pub fn from_config(config: &MockConfig) -> Option<Self> {
        let per_second = config.rps.map(|rps| {
            let burst = config
                .burst
                .map_or_else(|| rps.ceil().max(1.0) as u64, u64::from);
            Bucket::new(1e9 / rps, burst)
        });
        let per_minute = config
            .rpm
            .map(|rpm| Bucket::new(60e9 / f64::from(rpm), u64::from(rpm)));
        let tokens_per_minute = config
            .tpm
            .map(|tpm| Bucket::new(60e9 / f64::from(tpm), u64::from(tpm)));
        if per_second.is_none() && per_minute.is_none() && tokens_per_minute.is_none() {
            return None;
        }
        let requests_per_minute = config
            .rpm
            .map(u64::from)
            .or_else(|| config.rps.map(|rps| (rps * 60.0).floor().max(1.0) as u64));
        Some(Self {
            requests_per_minute,
            per_second,
            per_minute,
            tokens_per_minute,
        })
    }

    /// Admits one request costing `tokens` at `now` (since server start) or says how long to wait.
    /// A refused request charges no bucket.
    pub fn check(&mut self, now: Duration, tokens: u64) -> Decision {
        let now_ns = now.as_nanos() as f64;
        let request_waits = [
            self.per_second.as_ref().map(|b| b.wait_ns(now_ns, 1)),
            self.per_minute.as_ref().map(|b| b.wait_ns(now_ns, 1)),
        ];
        let token_wait = self
            .tokens_per_minute
            .as_ref()
            .map(|b| b.wait_ns(now_ns, tokens));

        if let (Some(None), Some(bucket)) = (token_wait, &self.tokens_per_minute) {
            return Decision {
                verdict: Verdict::TooLarge {
                    tokens,
                    limit: bucket.capacity,
                },
                requests: self.binding_requests_view(now_ns, None),
                tokens: Some(bucket.view(now_ns)),
                requests_per_minute: self.requests_per_minute,
            };
        }
        let wait_ns = request_waits
            .iter()
            .chain(std::iter::once(&token_wait))
            .flatten()
            .flatten()
            .fold(0.0_f64, |a, &b| a.max(b));
        if wait_ns > 0.0 {
            let waits = [request_waits[0].flatten(), request_waits[1].flatten()];
            return Decision {
                verdict: Verdict::Limited(Duration::from_nanos(wait_ns.ceil() as u64)),
                requests: self.binding_requests_view(now_ns, Some(waits)),
                tokens: self.tokens_per_minute.as_ref().map(|b| b.view(now_ns)),
                requests_per_minute: self.requests_per_minute,
            };
        }
        for bucket in [&mut self.per_second, &mut self.per_minute]
            .into_iter()
            .flatten()
        {
            bucket.commit(now_ns, 1);
        }
        if let Some(bucket) = &mut self.tokens_per_minute {
            bucket.commit(now_ns, tokens);
        }
        Decision {
            verdict: Verdict::Allowed,
            requests: self.binding_requests_view(now_ns, None),
            tokens: self.tokens_per_minute.as_ref().map(|b| b.view(now_ns)),
            requests_per_minute: self.requests_per_minute,
        }
    }

    /// The request bucket a client should look at: the one that refused for longest, else the
    /// one with the fewest requests left.
    fn binding_requests_view(
        &self,
        now_ns: f64,
        waits: Option<[Option<f64>; 2]>,
    ) -> Option<BucketView> {
        let buckets = [&self.per_second, &self.per_minute];
        let mut best: Option<(f64, BucketView)> = None;
        for (i, bucket) in buckets.iter().enumerate() {
            let Some(bucket) = bucket else { continue };
            let view = bucket.view(now_ns);
            // Rank: a longer wait first, then fewer remaining.
            let rank = match waits {
                Some(w) => w[i].unwrap_or(0.0) * 1e6 - view.remaining as f64,
                None => -(view.remaining as f64),
            };
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((rank, view));
            }
        }
        best.map(|(_, view)| view)
    }
}

/// A duration in OpenAI's header format: `20ms`, `1.5s`, `6m0s`, `1h2m3s` (rounded up to the
/// millisecond).
pub(crate) fn format_reset(duration: Duration) -> String {
    let ms = duration.as_nanos().div_ceil(1_000_000) as u64;
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = |ms: u64| {
        let whole = ms / 1000;
        let frac = ms % 1000;
        if frac == 0 {
            format!("{whole}s")
        } else {
            let digits = format!("{frac:03}");
            format!("{whole}.{}s", digits.trim_end_matches('0'))
        }
    };
    if ms < 60_000 {
        return seconds(ms);
    }
    let hours = ms / 3_600_000;
    let minutes = (ms % 3_600_000) / 60_000;
    let rest = seconds(ms % 60_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{rest}")
    } else {
        format!("{minutes}m{rest}")
    }
}

/// `Retry-After` (whole seconds, rounded up, at least 1) and `retry-after-ms` (rounded up, at
/// least 1) for a wait.
pub(crate) fn retry_after_values(wait: Duration) -> (u64, u64) {
    let ms = (wait.as_nanos().div_ceil(1_000_000) as u64).max(1);
    (ms.div_ceil(1000), ms)
}

/// The `x-ratelimit-*` headers of a decision. The limits are per minute, as OpenAI announces
/// them (a per-second limit is announced as its per-minute equivalent); remaining and reset
/// describe the bucket that binds.
pub(crate) fn ratelimit_headers(decision: &Decision) -> Vec<(&'static str, String)> {
    let mut headers = Vec::with_capacity(6);
    if let Some(view) = decision.requests {
        let limit = decision.requests_per_minute.unwrap_or(view.limit);
        headers.push(("x-ratelimit-limit-requests", limit.to_string()));
        headers.push(("x-ratelimit-remaining-requests", view.remaining.to_string()));
        headers.push(("x-ratelimit-reset-requests", format_reset(view.reset)));
    }
    if let Some(view) = decision.tokens {
        headers.push(("x-ratelimit-limit-tokens", view.limit.to_string()));
        headers.push(("x-ratelimit-remaining-tokens", view.remaining.to_string()));
        headers.push(("x-ratelimit-reset-tokens", format_reset(view.reset)));
    }
    headers
}

/// The `anthropic-ratelimit-*` headers of a decision, from its OpenAI-style ones.
pub(crate) fn anthropic_headers(openai: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    openai
        .iter()
        .filter_map(|(name, value)| {
            let renamed = match *name {
                "x-ratelimit-limit-requests" => "anthropic-ratelimit-requests-limit",
                "x-ratelimit-remaining-requests" => "anthropic-ratelimit-requests-remaining",
                "x-ratelimit-limit-tokens" => "anthropic-ratelimit-tokens-limit",
                "x-ratelimit-remaining-tokens" => "anthropic-ratelimit-tokens-remaining",
                "retry-after" => "retry-after",
                "retry-after-ms" => "retry-after-ms",
                _ => return None,
            };
            Some((renamed, value.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(
        rps: Option<f64>,
        burst: Option<u32>,
        rpm: Option<u32>,
        tpm: Option<u32>,
    ) -> Limiter {
        Limiter::from_config(&MockConfig {
            rps,
            burst,
            rpm,
            tpm,
            ..MockConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn no_limit_means_no_limiter() {
        assert!(Limiter::from_config(&MockConfig::default()).is_none());
    }

    #[test]
    fn burst_then_steady_rate_and_refusals_charge_nothing() {
        let mut limiter = limiter(Some(20.0), Some(20), None, None);
        let t0 = Duration::from_secs(5);
        for i in 0..20 {
            let decision = limiter.check(t0, 0);
            assert_eq!(decision.verdict, Verdict::Allowed, "request {i}");
            assert_eq!(decision.requests.unwrap().remaining, 19 - i);
        }
        let refused = limiter.check(t0, 0);
        assert_eq!(refused.verdict, Verdict::Limited(Duration::from_millis(50)));
        assert_eq!(refused.requests.unwrap().remaining, 0);
        assert_eq!(refused.requests.unwrap().reset, Duration::from_secs(1));
        // Many refusals later, the same wait still suffices: refusals consumed nothing.
        for _ in 0..100 {
            assert!(matches!(limiter.check(t0, 0).verdict, Verdict::Limited(_)));
        }
        assert_eq!(
            limiter.check(t0 + Duration::from_millis(50), 0).verdict,
            Verdict::Allowed
        );
        assert!(matches!(
            limiter.check(t0 + Duration::from_millis(50), 0).verdict,
            Verdict::Limited(_)
        ));
    }

    #[test]
    fn per_minute_requests_and_tokens() {
        let mut limiter = limiter(None, None, Some(2), Some(1000));
        let t0 = Duration::ZERO;
        assert_eq!(limiter.check(t0, 400).verdict, Verdict::Allowed);
        let second = limiter.check(t0, 400);
        assert_eq!(second.verdict, Verdict::Allowed);
        assert_eq!(second.tokens.unwrap().remaining, 200);
        assert_eq!(second.requests.unwrap().remaining, 0);
        // Both the request and the token bucket refuse; the longer wait (30 s for a request,
        // 12 s for 200 more tokens) wins.
        assert_eq!(
            limiter.check(t0, 400).verdict,
            Verdict::Limited(Duration::from_secs(30))
        );
        assert_eq!(
            limiter.check(t0, 2000).verdict,
            Verdict::TooLarge {
                tokens: 2000,
                limit: 1000
            }
        );
    }

    #[test]
    fn reset_format_follows_openai() {
        assert_eq!(format_reset(Duration::ZERO), "0s");
        assert_eq!(format_reset(Duration::from_micros(19_100)), "20ms");
        assert_eq!(format_reset(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_reset(Duration::from_secs(2)), "2s");
        assert_eq!(format_reset(Duration::from_millis(59_294)), "59.294s");
        assert_eq!(format_reset(Duration::from_secs(360)), "6m0s");
        assert_eq!(format_reset(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(retry_after_values(Duration::from_micros(50_001)), (1, 51));
        assert_eq!(retry_after_values(Duration::from_millis(2000)), (2, 2000));
        assert_eq!(retry_after_values(Duration::from_millis(2001)), (3, 2001));
    }
}
