//! Figures over time for the charts (throughput, cost, latency). The coordinator's UI samples
//! every job's status every few seconds into a ring kept in memory; `rubricmill view` derives
//! the same points from the commit marker summaries, one per commit in commit order.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rubricmill_cluster::Cluster;
use rubricmill_core::{MarkerSummary, Usage};
use serde::Serialize;

/// Most points one series answer carries; longer series are thinned evenly.
pub const MAX_POINTS: usize = 400;

/// A job's cumulative figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplePoint {
    pub at: DateTime<Utc>,
    pub committed: u64,
    pub records: u64,
    pub rows: u64,
    pub calls: u64,
    pub tokens: u64,
    pub cost_usd: f64,
    pub throttled: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
}

/// The last samples of every job, a bounded ring per job.
#[derive(Debug)]
pub struct SeriesRing {
    capacity: usize,
    jobs: Mutex<HashMap<String, VecDeque<SamplePoint>>>,
}

impl SeriesRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(2),
            jobs: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a sample, dropping the oldest when the job's ring is full; a sample that changes
    /// nothing but the time replaces the previous one of the same figures, so an idle job does
    /// not push its history out.
    pub fn push(&self, job: &str, point: SamplePoint) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let ring = jobs.entry(job.to_owned()).or_default();
        let unchanged = |a: &SamplePoint, b: &SamplePoint| {
            a.committed == b.committed && a.calls == b.calls && a.rows == b.rows
        };
        if ring.len() >= 2 {
            let last = &ring[ring.len() - 1];
            let before = &ring[ring.len() - 2];
            if unchanged(last, &point) && unchanged(before, last) {
                ring.pop_back();
            }
        }
        ring.push_back(point);
        while ring.len() > self.capacity {
            ring.pop_front();
        }
    }

    /// The samples of a job, oldest first.
    pub fn points(&self, job: &str) -> Vec<SamplePoint> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(job)
            .map(|ring| ring.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A point of a job's cumulative figures.
pub fn point(
    at: DateTime<Utc>,
    committed: u64,
    records: u64,
    rows: u64,
    usage: &Usage,
) -> SamplePoint {
    SamplePoint {
        at,
        committed,
        records,
        rows,
        calls: usage.calls,
        tokens: usage.tokens_in + usage.tokens_out,
        cost_usd: usage.cost_usd,
        throttled: usage.throttled,
        latency_p50_ms: usage.latency.quantile_ms(0.5),
        latency_p95_ms: usage.latency.quantile_ms(0.95),
    }
}

/// Samples every job's status into `ring` every `every`, until the task is aborted.
pub async fn sample_forever(cluster: Cluster, ring: std::sync::Arc<SeriesRing>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match rubricmill_runtime::distributed::jobs_status(&cluster).await {
            Ok(statuses) => {
                let now = Utc::now();
                for status in statuses {
                    let Some(progress) = &status.progress else {
                        continue;
                    };
                    ring.push(
                        &status.job,
                        point(
                            now,
                            progress.committed,
                            progress.records,
                            progress.rows,
                            &progress.paid(),
                        ),
                    );
                }
            }
            Err(error) => tracing::warn!(%error, "ui cannot sample job status"),
        }
    }
}

/// The cumulative figures after each commit, in commit order (`rubricmill view`'s charts).
/// Latency is each shard's own.
pub fn series_from_summaries(summaries: &[MarkerSummary]) -> Vec<SamplePoint> {
    let mut ordered: Vec<&MarkerSummary> = summaries.iter().collect();
    ordered.sort_by_key(|s| s.committed_at);
    let mut total = Usage::default();
    let (mut records, mut rows) = (0, 0);
    let mut points = Vec::with_capacity(ordered.len());
    for (index, summary) in ordered.iter().enumerate() {
        total.add(&summary.usage);
        records += summary.records;
        rows += summary.rows;
        let mut p = point(
            summary.committed_at,
            index as u64 + 1,
            records,
            rows,
            &total,
        );
        p.latency_p50_ms = summary.usage.latency.quantile_ms(0.5);
        p.latency_p95_ms = summary.usage.latency.quantile_ms(0.95);
        points.push(p);
    }
    points
}

/// At most [`MAX_POINTS`] points spread evenly over the series, the last one always kept.
pub fn thin(points: Vec<SamplePoint>) -> Vec<SamplePoint> {
    if points.len() <= MAX_POINTS {
        return points;
    }
    let step = points.len() as f64 / MAX_POINTS as f64;
    let last = points.len() - 1;
    let mut kept: Vec<SamplePoint> = (0..MAX_POINTS - 1)
        .map(|i| points[(i as f64 * step) as usize].clone())
        .collect();
    kept.push(points[last].clone());
    kept
}

/// Calls and tokens per minute over the last minute of the series (or over its whole span when
/// it is shorter); `None` without two points apart in time.
pub fn recent_rates(points: &[SamplePoint]) -> (Option<f64>, Option<f64>) {
    let Some(last) = points.last() else {
        return (None, None);
    };
    let window_start = last.at - chrono::Duration::seconds(60);
    let Some(first) = points
        .iter()
        .find(|p| p.at >= window_start && p.at < last.at)
    else {
        return (None, None);
    };
    let minutes = (last.at - first.at).as_seconds_f64() / 60.0;
    if minutes <= 0.0 {
        return (None, None);
    }
    (
        Some(last.calls.saturating_sub(first.calls) as f64 / minutes),
        Some(last.tokens.saturating_sub(first.tokens) as f64 / minutes),
    )
}

/// Rate-limit pauses the fleet announced (workers publish one on a 429 with a retry hint).
#[derive(Debug, Default)]
pub struct PauseTally {
    count: AtomicU64,
    paused_ms: AtomicU64,
}

/// [`PauseTally`] as the page shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PauseCount {
    pub count: u64,
    pub paused_s: f64,
}

impl PauseTally {
    pub fn record(&self, pause: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.paused_ms
            .fetch_add(pause.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PauseCount {
        PauseCount {
            count: self.count.load(Ordering::Relaxed),
            paused_s: self.paused_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, calls: u64) -> SamplePoint {
        let usage = Usage {
            calls,
            tokens_in: calls * 10,
            ..Usage::default()
        };
        point(
            DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap(),
            calls,
            calls,
            calls,
            &usage,
        )
    }

    #[test]
    fn the_ring_keeps_its_capacity_and_folds_idle_samples() {
        let ring = SeriesRing::new(3);
        for i in 0..5 {
            ring.push("j", at(i, i as u64));
        }
        let points = ring.points("j");
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].calls, 2);
        // Idle: the same figures again and again keep two points, the newest time last.
        ring.push("j", at(10, 4));
        ring.push("j", at(11, 4));
        let points = ring.points("j");
        assert_eq!(points.iter().filter(|p| p.calls == 4).count(), 2);
        assert_eq!(points.last().unwrap().at, at(11, 4).at);
        assert!(ring.points("other").is_empty());
    }

    #[test]
    fn rates_cover_the_last_minute() {
        let points: Vec<SamplePoint> = (0..=12).map(|i| at(i * 10, (i * 5) as u64)).collect();
        // From t=60 (30 calls) to t=120 (60 calls): 30 calls in a minute.
        let (calls, tokens) = recent_rates(&points);
        assert_eq!(calls, Some(30.0));
        assert_eq!(tokens, Some(300.0));
        assert_eq!(recent_rates(&points[..1]), (None, None));
    }

    #[test]
    fn thinning_keeps_the_last_point() {
        let points: Vec<SamplePoint> = (0..1000).map(|i| at(i, i as u64)).collect();
        let thinned = thin(points);
        assert_eq!(thinned.len(), MAX_POINTS);
        assert_eq!(thinned.last().unwrap().calls, 999);
    }
}
