//! The live LLM counters an embedded run hands its progress observer: calls, tokens, cost,
//! retries and 429s show while shards are still running, and the last reading equals the run's
//! totals. Against the real mock-llm HTTP server with a rate limit that answers 429s.

use std::time::Duration;

use rubricmill_core::JobSpec;
use rubricmill_mock_llm::{MockConfig, MockServer};
use rubricmill_runtime::{
    EmbeddedOptions, LiveUsage, ProgressObserver, StopReason, Tally, run_embedded,
};

/// Every live reading, with how many shards this run had committed when it came.
#[derive(Default)]
struct Recorder {
    planned: u64,
    committed: u64,
    readings: Vec<(u64, LiveUsage)>,
}

impl ProgressObserver for Recorder {
    fn started(&mut self, planned: u64, _already_committed: u64) {
        self.planned = planned;
    }
    fn shard_done(&mut self, this_run: &Tally) {
        self.committed = this_run.shards;
    }
    fn live_usage(&mut self, live: &LiveUsage) {
        self.readings.push((self.committed, live.clone()));
    }
}

fn write_job(dir: &std::path::Path, server: &MockServer, pairs: usize) -> JobSpec {
    let input = dir.join("pairs.jsonl");
    let lines: String = (0..pairs)
        .map(|i| {
            serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("How should I store flour batch {i} for a year?"),
                "chosen": format!("Airtight, cool and dark; batch {i} keeps."),
                "rejected": "Anywhere.",
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"live\"\npipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 2\n\
             [output]\nurl = \"{}\"\n[llm]\nprovider = \"openai\"\nbase_url = \"{}\"\n\
             model = \"mock-model\"\nmax_tokens = 300\nmax_concurrency = 3\nmax_retries = 40\n\
             price_per_million = {{ input = 1.0, output = 2.0 }}\n",
            input.display(),
            dir.join("out").display(),
            server.base_url()
        ),
    )
    .unwrap();
    JobSpec::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_usage_shows_calls_and_429s_before_the_shards_finish_and_ends_at_the_totals() {
    // 20 requests a second, one at a time: concurrent requests are answered 429 with a
    // retry hint, and the run's ~60 calls need a few seconds, over many readings.
    let server = MockServer::start(MockConfig {
        rps: Some(20.0),
        burst: Some(1),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = write_job(dir.path(), &server, 12);
    let mut recorder = Recorder::default();
    let options = EmbeddedOptions {
        base_backoff: Duration::from_millis(10),
        ..EmbeddedOptions::default()
    };
    let summary = run_embedded(&spec, &options, &mut recorder, std::future::pending())
        .await
        .unwrap();
    let answered_429 = server.requests().iter().filter(|r| r.status == 429).count() as u64;
    server.shutdown().await;
    assert_eq!(summary.stop, StopReason::Complete, "{:?}", summary.failed);
    assert!(answered_429 > 0, "the test needs the server to answer 429s");
    let total = &summary.this_run.usage;
    assert!(total.throttled > 0 && total.calls > 0, "{total:?}");

    // While shards were still running, the readings already showed answers and 429s.
    let early = recorder
        .readings
        .iter()
        .filter(|(committed, _)| *committed < recorder.planned)
        .find(|(_, live)| live.usage.calls > 0 && live.usage.throttled > 0);
    let (committed, early) = early.unwrap_or_else(|| {
        panic!(
            "no reading before the last shard showed calls and 429s: {:?}",
            recorder.readings
        )
    });
    assert!(*committed < recorder.planned);
    assert!(early.usage.tokens_in > 0 && early.usage.cost_usd > 0.0);
    assert!(early.usage.retries >= early.usage.throttled.min(1));
    assert!(early.calls_per_second() > 0.0);

    // Readings never go backwards.
    for pair in recorder.readings.windows(2) {
        let (a, b) = (&pair[0].1.usage, &pair[1].1.usage);
        assert!(b.calls >= a.calls && b.throttled >= a.throttled && b.retries >= a.retries);
    }

    // The last reading, after the workers stopped, is the run's totals.
    let (_, last) = recorder.readings.last().unwrap();
    let live = &last.usage;
    assert_eq!(
        (
            live.calls,
            live.cache_hits,
            live.retries,
            live.throttled,
            live.tokens_in,
            live.tokens_out
        ),
        (
            total.calls,
            total.cache_hits,
            total.retries,
            total.throttled,
            total.tokens_in,
            total.tokens_out
        )
    );
    assert!(
        (live.cost_usd - total.cost_usd).abs() < 1e-9,
        "{live:?} vs {total:?}"
    );
    assert_eq!(
        live.throttled, answered_429,
        "every 429 the server sent is counted"
    );
}
