//! Resume: a run killed with SIGKILL mid-way is finished by the same command, committed shards
//! are kept as they were, and no row appears twice; a finished job re-runs as a no-op; a
//! changed spec is refused instead of mixed into the old output.

use std::collections::{HashMap, HashSet};

use crate::{Committed, marker_paths, rubricmill, run_job, write_pairs, write_spec};

/// A crg job over `pairs` synthetic pairs slow enough (40 ms a call, 2 calls at once, 10 pairs a
/// shard) to be stopped mid-way; returns the spec and its text after the name line.
fn slow_job(dir: &std::path::Path, name: &str, pairs: usize) -> (std::path::PathBuf, String) {
    let input = dir.join(format!("{name}.jsonl"));
    write_pairs(&input, pairs);
    let body = format!(
        "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 10\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\nsimulated_latency_ms = 40\nmax_concurrency = 2\n",
        input.display(),
        dir.join("out").display()
    );
    (write_spec(dir, name, &body), body)
}

/// Starts `rubricmill run` and returns once it has committed `shards` shards.
fn run_until_committed(
    spec: &std::path::Path,
    commits: &std::path::Path,
    shards: usize,
) -> std::process::Child {
    crate::run_until(spec, &format!("committed {shards} shards"), || {
        marker_paths(commits).len() >= shards
    })
}

#[test]
fn killed_run_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, body) = slow_job(dir.path(), "killme", 400);
    let commits = dir.path().join("out/killme/commits");
    let mut child = run_until_committed(&spec, &commits, 5);
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

#[test]
fn sigterm_finishes_shards_in_flight_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _) = slow_job(dir.path(), "term", 300);
    let job = dir.path().join("out/term");
    let mut child = run_until_committed(&spec, &job.join("commits"), 3);
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    // Shards in flight were finished, not abandoned: every attempt file belongs to a marker.
    let committed = Committed::read(&job);
    assert!(
        committed.markers.len() < 30,
        "stopped early: {} of 30 shards",
        committed.markers.len()
    );
    let referenced: HashSet<String> = committed
        .markers
        .iter()
        .filter_map(|m| m["part"].as_str().map(str::to_owned))
        .collect();
    let mut written = HashSet::new();
    for shard in std::fs::read_dir(job.join("parts")).unwrap() {
        let shard = shard.unwrap();
        for attempt in std::fs::read_dir(shard.path()).unwrap() {
            let name = attempt.unwrap().file_name().to_string_lossy().into_owned();
            written.insert(format!(
                "parts/{}/{name}",
                shard.file_name().to_string_lossy()
            ));
        }
    }
    assert_eq!(
        written, referenced,
        "no orphan attempt files after a graceful stop"
    );
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(Committed::read(&job).strings("pair_id").len(), 300);
}

#[test]
fn a_plan_stored_by_plan_is_the_one_run_uses() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("pairs.jsonl");
    write_pairs(&input, 60);
    let body = format!(
        "pipeline = \"crg\"\n[input]\nurl = \"{}\"\nrecords_per_shard = 4\n[output]\nurl = \"{}\"\n[llm]\nprovider = \"simulated\"\nmodel = \"simulated\"\n",
        input.display(),
        dir.path().join("out").display()
    );
    let spec = write_spec(dir.path(), "planned", &body);
    let plan = |spec: &std::path::Path| -> serde_json::Value {
        let output = crate::succeeded(rubricmill().arg("plan").arg(spec).arg("--json"));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let first = plan(&spec);
    assert_eq!(first["shards"], 15, "{first}");
    assert_eq!(first["expected_records"], 60);
    assert_eq!(first["existed"], false);
    let job = dir.path().join("out/planned");
    let chunks: Vec<_> = std::fs::read_dir(job.join("plan")).unwrap().collect();
    assert_eq!(chunks.len(), 1, "15 shards are one chunk file");
    let job_json = std::fs::read_to_string(job.join("job.json")).unwrap();
    assert!(
        !job_json.contains("first_line"),
        "job.json holds the index, the shards are in the chunk: {job_json}"
    );
    let again = plan(&spec);
    assert_eq!(again["existed"], true);
    assert_eq!(again["fingerprint"], first["fingerprint"]);
    // A different spec for the same folder is refused, not planned over the stored plan.
    let changed = write_spec(
        dir.path(),
        "planned",
        &body.replace("records_per_shard = 4", "records_per_shard = 5"),
    );
    let refused = rubricmill().arg("plan").arg(&changed).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("different spec"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let spec = write_spec(dir.path(), "planned", &body);
    let (code, summary, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        summary["resumed"], true,
        "run used the stored plan: {summary}"
    );
    assert_eq!(summary["this_run"]["shards"], 15);
    assert_eq!(Committed::read(&job).strings("pair_id").len(), 60);

    // Resuming the finished job reads the plan's chunk and the progress log the run wrote,
    // lists the markers, and reads none of them.
    let (code, again, _) = run_job(&spec, &[]);
    assert_eq!(code, 0, "{again}");
    let log_files = std::fs::read_dir(job.join("progress")).unwrap().count() as u64;
    assert!(log_files >= 1);
    let requests = &again["output_requests"];
    assert_eq!(requests["get"], 1 + log_files, "{again}");
    assert_eq!(requests["put"], 0, "{again}");
}
