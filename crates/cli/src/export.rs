//! `rubricmill export` and `rubricmill gc`: the committed output of a job, as a dataset for
//! training teams; and the removal of attempt files no marker references.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rubricmill_core::JobSpec;
use rubricmill_export::{ExportFormat, ExportOptions, ExportRun, ExportStep, parse_splits};
use rubricmill_store::{JobStore, StoreLocation};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The job spec (TOML) of the job to export.
    job: PathBuf,
    /// Where the dataset goes (a folder: local path or object store URL, outside the job's
    /// output folder). Each export is a new version: data/<version>/ plus README.md, schema.json
    /// and export.json; older versions are removed once it is committed.
    #[arg(long, visible_alias = "to")]
    target: String,
    /// Write into a non-empty target that rubricmill export did not write (it has no
    /// export.json): its data/ folder, README.md and schema.json are replaced.
    #[arg(long)]
    force: bool,
    /// Split the write pass over this many processes (each run with --partition); the last one
    /// to finish commits, or run --merge.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Which partition this process writes (0-based; Kubernetes: JOB_COMPLETION_INDEX).
    #[arg(long)]
    partition: Option<u32>,
    /// Commit the partitions already written (all of --partitions) instead of writing one.
    #[arg(long, conflicts_with = "partition")]
    merge: bool,
    /// The layout of the data files.
    #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
    format: FormatArg,
    /// Split names and fractions.
    #[arg(long, default_value = "train=0.9,validation=0.05,test=0.05")]
    splits: String,
    /// Column whose value decides the split (default: doc_id for researchqa, rubric_id for crg,
    /// id for reference, nuggets and score).
    #[arg(long)]
    split_key: Option<String>,
    /// Jaccard similarity at which two rows count as near duplicates.
    #[arg(long, default_value_t = 0.8)]
    near_dup_threshold: f64,
    /// Keep near duplicates.
    #[arg(long)]
    no_near_dedup: bool,
    /// Keep exact duplicates.
    #[arg(long)]
    no_exact_dedup: bool,
    /// Target size of one data file, in MiB.
    #[arg(long, default_value_t = 256)]
    target_file_mb: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The values of `--format`, each the name `rubricmill_export::ExportFormat::parse` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Parquet files with every column (zstd), the Hugging Face layout.
    Parquet,
    /// JSON lines with every column, the Hugging Face layout.
    Jsonl,
    /// The released ResearchQA JSON layout, one array per file (researchqa jobs).
    ResearchqaJson,
    /// OpenRubrics v2 lines: instruction, response_a, response_b, winner, rubric (crg jobs).
    Openrubric,
    /// HealthBench / verl rubric rows as Parquet: prompt, data_source, ability, reward_model
    /// with criterion, points and tags, extra_info (crg and reference jobs).
    Healthbench,
    /// HealthBench's own JSONL: prompt, rubrics, example_tags, prompt_id,
    /// ideal_completions_data (crg and reference jobs).
    HealthbenchJsonl,
    /// Judge training chats: system, user (conversation, rubric, responses), assistant
    /// (per-criterion verdicts, preferred response) (score jobs).
    JudgeSft,
    /// RL reward lines: prompt, response, reward, rubric_id, response_id (score jobs).
    Rewards,
}

impl FormatArg {
    /// The export format this value names.
    fn export_format(self) -> anyhow::Result<ExportFormat> {
        let value =
            clap::ValueEnum::to_possible_value(&self).context("every --format value has a name")?;
        Ok(ExportFormat::parse(value.get_name())?)
    }
}

#[derive(clap::Args)]
pub struct GcArgs {
    /// The job spec (TOML).
    job: PathBuf,
    /// Keep unreferenced files younger than this (they may belong to a running attempt).
    #[arg(long, default_value = "1h", value_parser = crate::args::parse_duration)]
    grace: Duration,
    /// Only list what would be removed.
    #[arg(long)]
    dry_run: bool,
}

async fn open_job(
    path: &std::path::Path,
) -> anyhow::Result<(JobSpec, JobStore, rubricmill_store::JobManifest)> {
    let spec = JobSpec::load(path)?;
    let store = JobStore::open(&spec.output.url, &spec.name)?;
    let manifest = store.load_manifest().await?.with_context(|| {
        format!(
            "job {:?} has not run yet: no job.json in {}",
            spec.name,
            store.url()
        )
    })?;
    Ok((spec, store, manifest))
}

pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let (_, store, manifest) = open_job(&args.job).await?;
    if !(0.0..=1.0).contains(&args.near_dup_threshold) {
        bail!("--near-dup-threshold must be between 0 and 1");
    }
    let options = ExportOptions {
        format: args.format.export_format()?,
        splits: parse_splits(&args.splits)?,
        split_key: args.split_key,
        exact_dedup: !args.no_exact_dedup,
        near_dup_threshold: (!args.no_near_dedup).then_some(args.near_dup_threshold),
        target_file_bytes: args.target_file_mb.max(1) << 20,
    };
    let step = match (args.partition, args.merge) {
        (_, true) => ExportStep::Merge {
            count: args.partitions,
        },
        (Some(index), false) => ExportStep::Partition {
            index,
            count: args.partitions,
        },
        (None, false) if args.partitions > 1 => {
            bail!(
                "--partitions {} needs --partition I (or --merge)",
                args.partitions
            )
        }
        (None, false) => ExportStep::Whole,
    };
    let target = StoreLocation::parse(&args.target)?;
    let target_url = target.url_of(&target.path);
    let run = ExportRun {
        step,
        force: args.force,
    };
    let report = rubricmill_export::export_with(store, manifest, target, options, run).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.unchanged {
        println!(
            "{target_url} already holds version {} of these rows and options: nothing to do",
            report.version
        );
    } else if report.committed {
        println!(
            "exported {} rows to {target_url} (version {})",
            report.rows_written, report.version
        );
    } else {
        println!(
            "wrote {} rows of version {} to the staging area of {target_url}; the last partition (or --merge) commits",
            report.rows_written, report.version
        );
    }
    println!(
        "  read {} rows; dropped {} not kept, {} duplicate ids, {} exact and {} near duplicates",
        report.rows_read,
        report.not_kept,
        report.duplicate_ids,
        report.exact_duplicates,
        report.near_duplicates
    );
    for (split, counts) in &report.splits {
        println!(
            "  {split:<12} {} rows in {} files",
            counts.rows, counts.files
        );
    }
    println!(
        "  {} bytes in {} files (dataset card README.md, schema.json)",
        report.bytes_written,
        report.files.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(&args.job)?;
    let store = JobStore::open(&spec.output.url, &spec.name)?;
    let removed = store.gc(args.grace, args.dry_run).await?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for path in &removed {
        println!("{verb} {path}");
    }
    println!(
        "{verb} {} unreferenced attempt files from {}",
        removed.len(),
        store.url()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_format_value_is_an_export_format() {
        let names: Vec<String> = FormatArg::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "parquet",
                "jsonl",
                "researchqa-json",
                "openrubric",
                "healthbench",
                "healthbench-jsonl",
                "judge-sft",
                "rewards"
            ]
        );
        for variant in FormatArg::value_variants() {
            let format = variant.export_format().unwrap();
            let name = variant.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(format, ExportFormat::parse(&name).unwrap());
        }
    }
}
