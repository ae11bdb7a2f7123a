//! What the mock server saw: lock-free counters for `/stats`, the record of every chat request
//! (kept in a few shards so concurrent connections rarely share a lock) for tests, and the
//! sliding-window maxima that let a test assert "never more than RPM in any 60 s window".

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rubricmill_llm::wire::WireRequest;
use serde::{Deserialize, Serialize};

/// One `POST /v1/chat/completions` the server answered (or whose client went away: status 499).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// Arrival time since the server started.
    pub at: Duration,
    pub status: u16,
    /// The request body. Requests whose body did not parse are counted but not recorded.
    pub body: WireRequest,
    /// Estimated prompt tokens of the request (counted whatever the answer).
    pub prompt_tokens: u64,
    /// Completion tokens of the content returned (0 for errors).
    pub completion_tokens: u64,
    /// The `retry-after-ms` of a 429.
    pub retry_after_ms: Option<u64>,
}

/// Counters of the server, as served by `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Chat completion requests finished (every status, including 499: client went away).
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Prompt tokens of 2xx answers and of answered batch items.
    pub prompt_tokens: u64,
    /// Completion tokens of 2xx answers and of answered batch items.
    pub completion_tokens: u64,
    /// Chat requests being answered now.
    pub in_flight: u64,
    pub peak_concurrency: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Seconds since the server started.
    pub elapsed_s: f64,
    /// Seconds from the first request's arrival to the last one's answer.
    pub active_s: f64,
    /// `requests / active_s`.
    pub requests_per_second: f64,
    /// Requests kept for `requests()` and the window maxima (at most the record limit).
    pub recorded: u64,
    /// What the batch endpoints did.
    #[serde(default)]
    pub batches: BatchStats,
    /// Sliding-window maxima, when `/stats?window_ms=N` asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowMaxima>,
}

/// Counters of the batch endpoints (OpenAI, Azure and Anthropic alike). Batch items are not
/// chat requests: they count here, not in `requests`; their tokens count in the token totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Files uploaded with `POST /v1/files` (or Azure's).
    pub files_uploaded: u64,
    /// Batches created (OpenAI, Azure and Anthropic).
    pub batches_created: u64,
    /// Batch items answered.
    pub items_answered: u64,
    /// Batch items that failed: faults, `batch_item_failure_rate`, expiry, cancellation.
    pub items_failed: u64,
    /// Batches that expired.
    pub batches_expired: u64,
    /// Batches created by name: an OpenAI or Azure batch by its `metadata.rubricmill_batch`
    /// (`-` when it has none), an Anthropic one by the prefix of its first item's `custom_id`
    /// up to the first `_` (`-` when there is none). A name counted twice was submitted twice.
    pub batches_by_name: BTreeMap<String, u64>,
}

/// The most requests and tokens (prompt + completion) seen in any window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowMaxima {
    pub window_ms: u64,
    pub ok_requests: u64,
    pub ok_tokens: u64,
    pub all_requests: u64,
    pub all_tokens: u64,
}

/// The most requests, and separately the most tokens (prompt + completion), that arrived in any
/// half-open window `[t, t + window)` among the requests whose status `count_status` accepts.
pub fn max_in_window(
    requests: &[RecordedRequest],
    window: Duration,
    count_status: impl Fn(u16) -> bool,
) -> (u64, u64) {
    let points: Vec<(Duration, u64)> = requests
        .iter()
        .filter(|r| count_status(r.status))
        .map(|r| (r.at, r.prompt_tokens + r.completion_tokens))
        .collect();
    window_maxima(points, window)
}

/// Sliding-window maxima of (arrival, tokens) points, in any order.
pub(crate) fn window_maxima(mut points: Vec<(Duration, u64)>, window: Duration) -> (u64, u64) {
    points.sort_unstable_by_key(|p| p.0);
    let (mut max_requests, mut max_tokens) = (0u64, 0u64);
    let (mut start, mut tokens) = (0usize, 0u64);
    for end in 0..points.len() {
        tokens += points[end].1;
        while points[end].0 - points[start].0 >= window {
            tokens -= points[start].1;
            start += 1;
        }
        max_requests = max_requests.max((end + 1 - start) as u64);
        max_tokens = max_tokens.max(tokens);
    }
    (max_requests, max_tokens)
}

const STATUS_SLOTS: usize = 600;

/// Lock-free counters updated once per request.
#[derive(Debug)]
pub(crate) struct Counters {
    by_status: Box<[AtomicU64]>,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub in_flight: AtomicU64,
    pub peak_concurrency: AtomicU64,
    pub connections: AtomicU64,
    /// Nanoseconds since start of the first arrival (u64::MAX before any).
    first_arrival_ns: AtomicU64,
    last_done_ns: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        Self {
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_concurrency: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            first_arrival_ns: AtomicU64::new(u64::MAX),
            last_done_ns: AtomicU64::new(0),
        }
    }

    /// A chat request arrived.
    pub fn begin(&self, at: Duration) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_concurrency.fetch_max(now, Ordering::Relaxed);
        self.first_arrival_ns
            .fetch_min(at.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A chat request finished with `status`.
    pub fn finish(&self, done: Duration, status: u16, prompt_tokens: u64, completion_tokens: u64) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.by_status[usize::from(status).min(STATUS_SLOTS - 1)].fetch_add(1, Ordering::Relaxed);
        if (200..300).contains(&status) {
            self.prompt_tokens
                .fetch_add(prompt_tokens, Ordering::Relaxed);
            self.completion_tokens
                .fetch_add(completion_tokens, Ordering::Relaxed);
        }
        self.last_done_ns
            .fetch_max(done.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self, elapsed: Duration, recorded: u64) -> Stats {
        let by_status: BTreeMap<u16, u64> = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(status, count)| {
                let count = count.load(Ordering::Relaxed);
                (count > 0).then_some((status as u16, count))
            })
            .collect();
        let requests = by_status.values().sum();
        let first = self.first_arrival_ns.load(Ordering::Relaxed);
        let last = self.last_done_ns.load(Ordering::Relaxed);
        let active_s = if requests == 0 || first == u64::MAX {
            0.0
        } else {
            last.saturating_sub(first) as f64 / 1e9
        };
        Stats {
            requests,
            by_status,
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            peak_concurrency: self.peak_concurrency.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            elapsed_s: elapsed.as_secs_f64(),
            active_s,
            requests_per_second: if active_s > 0.0 {
                requests as f64 / active_s
            } else {
                0.0
            },
            recorded,
            batches: BatchStats::default(),
            window: None,
        }
    }
}

const SHARDS: usize = 16;

/// Arrival, status and tokens of one request: what the window maxima need, kept for every
/// request up to the record limit whatever its body.
#[derive(Debug, Clone, Copy)]
struct Point {
    at: Duration,
    status: u16,
    tokens: u64,
}

/// What one connection shard kept.
#[derive(Debug, Default)]
struct Kept {
    points: Vec<Point>,
    requests: Vec<RecordedRequest>,
}

/// The kept requests, sharded by connection so that connections rarely wait on each other.
/// Statistics (arrival, status, tokens) are kept for up to `limit` requests; bodies only while
/// their total size stays within `body_budget` bytes, so memory stays bounded whatever clients
/// send.
#[derive(Debug)]
pub(crate) struct Recorder {
    shards: Box<[Mutex<Kept>]>,
    kept: AtomicUsize,
    limit: usize,
    body_bytes: AtomicU64,
    body_budget: u64,
}

impl Recorder {
    pub fn new(limit: usize, body_budget: u64) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Kept::default())).collect(),
            kept: AtomicUsize::new(0),
            limit,
            body_bytes: AtomicU64::new(0),
            body_budget,
        }
    }

    /// Keeps the statistics of `request` unless the limit is reached, and its body (of
    /// `body_len` bytes on the wire) while the body budget lasts.
    pub fn push(&self, shard: usize, request: RecordedRequest, body_len: u64) {
        if self.kept.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.kept.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let keep_body =
            self.body_bytes.fetch_add(body_len, Ordering::Relaxed) + body_len <= self.body_budget;
        if !keep_body {
            self.body_bytes.fetch_sub(body_len, Ordering::Relaxed);
        }
        let mut shard = self.shards[shard % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shard.points.push(Point {
            at: request.at,
            status: request.status,
            tokens: request.prompt_tokens + request.completion_tokens,
        });
        if keep_body {
            shard.requests.push(request);
        }
    }

    pub fn kept(&self) -> u64 {
        self.kept.load(Ordering::Relaxed) as u64
    }

    /// Every request kept with its body, by arrival time.
    pub fn all(&self) -> Vec<RecordedRequest> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            all.extend(shard.requests.iter().cloned());
        }
        all.sort_by_key(|r| r.at);
        all
    }

    /// Window maxima over 2xx and over all kept requests.
    pub fn window_maxima(&self, window: Duration) -> WindowMaxima {
        let mut ok = Vec::new();
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for point in &shard.points {
                if (200..300).contains(&point.status) {
                    ok.push((point.at, point.tokens));
                }
                all.push((point.at, point.tokens));
            }
        }
        let (ok_requests, ok_tokens) = window_maxima(ok, window);
        let (all_requests, all_tokens) = window_maxima(all, window);
        WindowMaxima {
            window_ms: window.as_millis() as u64,
            ok_requests,
            ok_tokens,
            all_requests,
            all_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64, status: u16, tokens: u64) -> RecordedRequest {
        let body: WireRequest = serde_json::from_str(
            r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#,
        )
        .unwrap();
        RecordedRequest {
            at: Duration::from_millis(at_ms),
            status,
            body,
            prompt_tokens: tokens,
            completion_tokens: 1,
            retry_after_ms: None,
        }
    }

    #[test]
    fn window_maxima_slide_over_half_open_windows() {
        let requests = vec![
            record(0, 200, 9),
            record(500, 200, 9),
            record(999, 429, 9),
            record(1000, 200, 9),
            record(1400, 200, 99),
            record(5000, 200, 9),
        ];
        let window = Duration::from_secs(1);
        // [0, 1000) holds 0, 500, 999; [500, 1500) holds 500, 999, 1000, 1400.
        assert_eq!(
            max_in_window(&requests, window, |_| true),
            (4, 10 + 10 + 10 + 100)
        );
        assert_eq!(
            max_in_window(&requests, window, |s| s == 200),
            (3, 10 + 10 + 100)
        );
        assert_eq!(max_in_window(&[], window, |_| true), (0, 0));
        // Order of the input does not matter.
        let mut reversed = requests.clone();
        reversed.reverse();
        assert_eq!(max_in_window(&reversed, window, |_| true), (4, 130));
    }

    #[test]
    fn recorder_keeps_at_most_its_limit_and_sorts_by_arrival() {
        let recorder = Recorder::new(3, u64::MAX);
        for (i, at) in [30, 10, 20, 40].into_iter().enumerate() {
            recorder.push(i, record(at, 200, 1), 100);
        }
        let all = recorder.all();
        assert_eq!(
            all.iter().map(|r| r.at.as_millis()).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        assert_eq!(recorder.kept(), 3);
        let maxima = recorder.window_maxima(Duration::from_millis(15));
        assert_eq!((maxima.ok_requests, maxima.all_tokens), (2, 4));
    }

    #[test]
    fn bodies_beyond_the_budget_are_dropped_but_still_counted_in_windows() {
        let recorder = Recorder::new(10, 250);
        for at in [10, 20, 30, 40] {
            recorder.push(0, record(at, 200, 1), 100);
        }
        assert_eq!(
            recorder.all().len(),
            2,
            "two bodies of 100 bytes fit in 250"
        );
        assert_eq!(recorder.kept(), 4);
        let maxima = recorder.window_maxima(Duration::from_millis(100));
        assert_eq!(maxima.ok_requests, 4);
    }

    #[test]
    fn counters_count_by_status_and_peak() {
        let counters = Counters::new();
        counters.begin(Duration::from_millis(1));
        counters.begin(Duration::from_millis(2));
        counters.finish(Duration::from_millis(3), 200, 10, 5);
        counters.finish(Duration::from_millis(501), 429, 10, 0);
        let stats = counters.snapshot(Duration::from_secs(1), 2);
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.by_status, BTreeMap::from([(200, 1), (429, 1)]));
        assert_eq!((stats.prompt_tokens, stats.completion_tokens), (10, 5));
        assert_eq!((stats.peak_concurrency, stats.in_flight), (2, 0));
        assert!((stats.active_s - 0.5).abs() < 1e-9);
        assert!((stats.requests_per_second - 4.0).abs() < 1e-6);
    }
}
