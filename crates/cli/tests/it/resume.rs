//! Resume: a run killed with SIGKILL mid-way is finished by the same command, committed shards
//! are kept as they were, and no row appears twice; a finished job re-runs as a no-op; a
//! changed spec is refused instead of mixed into the old output.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::{Committed, rubricmill, run_job, write_pairs, write_spec};

fn count_markers(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| entries.count())
        .unwrap_or(0)
}

#[test]
fn killed_run_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_pairs(&input, 400);
    let body = format!(
        "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\nsimulated_latency_ms = 40\nmax_concurrency = 2\n",
        input.display(),
        dir.path().join("out").display()
    );
    let spec = write_spec(dir.path(), "killme", &body);
    let commits = dir.path().join("out/killme/commits");
    let mut child = rubricmill()
        .arg("run")
        .arg(&spec)
        .arg("--no-progress")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_markers(&commits) < 5 {
        assert!(
            Instant::now() < deadline,
            "the run never committed 5 shards"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: HashMap<String, String> = Committed::read(&dir.path().join("out/killme"))
        .markers
        .iter()
        .map(|m| {
            (
                m["shard_id"].as_str().unwrap().to_owned(),
                m["attempt_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        before.len() >= 5 && before.len() < 40,
        "killed mid-way: {} of 40 shards",
        before.len()
    );

    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert!(summary["resumed"].as_bool().unwrap());
    assert_eq!(
        summary["before"]["shards"].as_u64().unwrap() as usize,
        before.len()
    );
    assert_eq!(
        summary["this_run"]["shards"].as_u64().unwrap() as usize,
        40 - before.len()
    );
    let out = Committed::read(&dir.path().join("out/killme"));
    assert_eq!(out.markers.len(), 40);
    for marker in &out.markers {
        if let Some(attempt) = before.get(marker["shard_id"].as_str().unwrap()) {
            assert_eq!(
                marker["attempt_id"].as_str().unwrap(),
                attempt,
                "a committed shard was redone"
            );
        }
    }
    let ids = out.strings("pair_id");
    assert_eq!(ids.len(), 400);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        400,
        "no pair twice"
    );

    // Running the finished job again does nothing and says so.
    let output = rubricmill().arg("run").arg(&spec).output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("already complete") && stdout.contains("nothing to do"),
        "{stdout}"
    );
    assert_eq!(
        Committed::read(&dir.path().join("out/killme"))
            .markers
            .len(),
        40
    );

    // A changed spec is refused rather than mixed into the same output.
    let changed = write_spec(
        dir.path(),
        "killme",
        &body.replace("model = \"simulated\"", "model = \"other\""),
    );
    let output = rubricmill().arg("run").arg(&changed).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("different spec"));
}
