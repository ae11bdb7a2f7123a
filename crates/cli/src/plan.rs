//! `rubricmill plan`: plan a job and store its plan beside the output without running it, so a
//! large corpus can be planned (and its shard count checked) before any worker starts. `run`
//! and `submit` reuse the stored plan.

use std::path::Path;
use std::process::ExitCode;

use rubricmill_core::JobSpec;
use rubricmill_store::JobStore;
use rubricmill_store::location::display_location;

pub async fn plan(job: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(job)?;
    rubricmill_runtime::preflight(&spec)?;
    let started = std::time::Instant::now();
    let (manifest, existed) = rubricmill_runtime::coordinator::plan_or_resume(&spec).await?;
    let elapsed = started.elapsed();
    let store = JobStore::open(&manifest.spec.output.url, &manifest.name)?;
    if json {
        let summary = serde_json::json!({
            "job": manifest.name,
            "plan": store.url_of("job.json"),
            "existed": existed,
            "shards": manifest.shard_count,
            "expected_records": manifest.expected_records,
            "chunks": manifest.chunks.len(),
            "fingerprint": manifest.fingerprint,
            "seconds": elapsed.as_secs_f64(),
        });
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if existed {
        "already planned"
    } else {
        "planned"
    };
    println!(
        "job {} {verb}: {} shards, {} expected records, in {} chunk files",
        manifest.name,
        manifest.shard_count,
        manifest.expected_records,
        manifest.chunks.len()
    );
    println!(
        "  plan       {}",
        display_location(&store.url_of("job.json"))
    );
    if !existed {
        println!("  took       {:.1} s", elapsed.as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
