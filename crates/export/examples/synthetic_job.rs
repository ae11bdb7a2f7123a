//! Writes a synthetic committed job straight into its output folder, for the export benchmark
//! (`scripts/bench-export.sh --scale`): the plan (`job.json`), and `ROWS` tiny researchqa rows
//! in committed parts of `ROWS_PER_PART` with their markers, as workers would have left them.
//! One row in a hundred repeats the text of an earlier one, so dedup has work to do.
//!
//!   cargo run --release -p rubricmill-export --example synthetic_job -- JOB.toml ROWS ROWS_PER_PART

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;
use futures::StreamExt;
use rubricmill_core::{JobSpec, Provenance, ResearchQaRow, RubricItem, ShardId, Usage};
use rubricmill_store::output::{encode_parquet, researchqa_batch};
use rubricmill_store::{CommitMarker, JobManifest, JobStore};

const WORDS: [&str; 32] = [
    "cache", "index", "sensor", "graph", "fusion", "ranking", "privacy", "energy", "robot",
    "survey", "drift", "shard", "kernel", "vision", "speech", "market", "protein", "climate",
    "traffic", "battery", "query", "memory", "network", "audit", "policy", "genome", "lidar",
    "tensor", "parser", "ledger", "swarm", "orbit",
];

/// A short text of words picked by the bits of a hash of `i`: distinct rows rarely share a
/// band of their MinHash signatures.
fn text(i: u64) -> String {
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut words = Vec::with_capacity(12);
    for _ in 0..12 {
        state ^= state >> 29;
        state = state.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        state ^= state >> 32;
        words.push(format!(
            "{}{}",
            WORDS[(state % 32) as usize],
            (state >> 8) % 1000
        ));
    }
    words.join(" ")
}

fn row(i: u64) -> ResearchQaRow {
    // one row in a hundred repeats an earlier row's text under its own id
    let source = if i % 100 == 99 { i / 2 } else { i };
    ResearchQaRow {
        id: format!("row-{i}"),
        general_domain: None,
        subdomain: None,
        field: None,
        query: text(source),
        date: None,
        rubric: vec![RubricItem {
            rubric_item: "Names the method.".into(),
            types: vec!["Explanation".into()],
            citation_metadata: None,
        }],
        doc_id: format!("doc-{}", i / 4),
        doc_title: None,
        section_heading: "1".into(),
        heading_path: Vec::new(),
        section_text_hash: "h".into(),
        section_kind: "content".into(),
        section_text: None,
        cited_references: Vec::new(),
        provenance: Provenance {
            provider: "simulated".into(),
            ..Provenance::default()
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, spec_path, rows, per_part] = args.as_slice() else {
        return Err("usage: synthetic_job JOB.toml ROWS ROWS_PER_PART".into());
    };
    let rows: u64 = rows.parse()?;
    let per_part: u64 = per_part.parse()?;
    let spec = JobSpec::load(Path::new(spec_path))?;
    let store = JobStore::open(&spec.output.url, &spec.name)?;
    let manifest = JobManifest {
        name: spec.name.clone(),
        fingerprint: "synthetic".into(),
        planned_at: Utc::now(),
        input_root: "file:///synthetic".into(),
        spec,
        templates: BTreeMap::new(),
        shard_count: 0,
        expected_records: 0,
        chunks: vec![],
        inline_shards: vec![],
    };
    store.create_manifest(&manifest).await?;
    let parts = rows.div_ceil(per_part);
    let mut writes = futures::stream::iter(0..parts)
        .map(|part| {
            let store = store.clone();
            async move {
                let first = part * per_part;
                let last = (first + per_part).min(rows);
                let batch = tokio::task::spawn_blocking(move || {
                    let chunk: Vec<ResearchQaRow> = (first..last).map(row).collect();
                    encode_parquet(&researchqa_batch(&chunk)?, &BTreeMap::new())
                })
                .await??;
                let shard = ShardId(format!("{part:024}"));
                let bytes = batch.len() as u64;
                let files = store.write_attempt(&shard, "a", Some(batch), None).await?;
                store
                    .commit(&CommitMarker {
                        shard_id: shard,
                        attempt_id: "a".into(),
                        worker_id: "synthetic".into(),
                        committed_at: Utc::now(),
                        part: files.part.map(|p| p.0),
                        rejects_part: None,
                        rows: last - first,
                        rejects: 0,
                        bytes,
                        checksum: None,
                        records: last - first,
                        stages: BTreeMap::new(),
                        usage: Usage::default(),
                    })
                    .await?;
                Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(last - first)
            }
        })
        .buffer_unordered(4);
    let mut written = 0;
    while let Some(result) = writes.next().await {
        written += result.map_err(|e| e.to_string())?;
    }
    println!(
        "{written} rows in {parts} committed parts under {}",
        store.url()
    );
    Ok(())
}
