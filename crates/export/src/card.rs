//! The dataset card (`README.md` with the YAML front matter the Hugging Face hub and
//! `datasets` read: configs, features, splits, license) and `schema.json`.

use std::fmt::Write;

use arrow_schema::{DataType, Field, SchemaRef};
use rubricmill_core::{ProviderKind, Usage};
use rubricmill_store::JobManifest;

use crate::{ExportFormat, ExportOptions, ExportReport};

/// A Hugging Face `features` entry for an Arrow type, as YAML lines at `indent`.
fn feature_yaml(out: &mut String, field: &Field, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(out, "{pad}- name: {}", field.name());
    type_yaml(out, field.data_type(), indent + 2);
}

fn type_yaml(out: &mut String, data_type: &DataType, indent: usize) {
    let pad = " ".repeat(indent);
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
            DataType::Struct(fields) => {
                let _ = writeln!(out, "{pad}list:");
                for field in fields {
                    feature_yaml(out, field, indent + 2);
                }
            }
            other => {
                let _ = writeln!(out, "{pad}sequence: {}", dtype(other));
            }
        },
        DataType::Struct(fields) => {
            let _ = writeln!(out, "{pad}struct:");
            for field in fields {
                feature_yaml(out, field, indent + 2);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}dtype: {}", dtype(other));
        }
    }
}

fn dtype(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Boolean => "bool",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        _ => "string",
    }
}

pub fn dataset_card(
    manifest: &JobManifest,
    options: &ExportOptions,
    split_key: &str,
    report: &ExportReport,
    schema: &SchemaRef,
    usage: &Usage,
) -> String {
    let spec = &manifest.spec;
    let ext = options.format.extension();
    let mut out = String::from("---\n");
    if let Some(license) = &spec.dataset.license {
        let _ = writeln!(out, "license: {license}");
    }
    let pretty = spec
        .dataset
        .pretty_name
        .clone()
        .unwrap_or_else(|| spec.name.clone());
    let _ = writeln!(out, "pretty_name: {}", yaml_string(&pretty));
    let _ = writeln!(out, "tags:\n- rubrics\n- {}", spec.pipeline.as_str());
    let _ = writeln!(out, "configs:\n- config_name: default\n  data_files:");
    for (split, _) in report.splits.iter().filter(|(_, c)| c.rows > 0) {
        let _ = writeln!(out, "  - split: {split}\n    path: data/{split}-*.{ext}");
    }
    let _ = writeln!(out, "dataset_info:");
    if matches!(options.format, ExportFormat::Parquet | ExportFormat::Jsonl) {
        let _ = writeln!(out, "  features:");
        for field in schema.fields() {
            feature_yaml(&mut out, field, 2);
        }
    }
    let _ = writeln!(out, "  splits:");
    for (split, counts) in report.splits.iter().filter(|(_, c)| c.rows > 0) {
        let _ = writeln!(out, "  - name: {split}\n    num_examples: {}", counts.rows);
    }
    out.push_str("---\n\n");
    let _ = writeln!(out, "# {pretty}\n");
    if let Some(description) = &spec.dataset.description {
        let _ = writeln!(out, "{description}\n");
    }
    let _ = writeln!(
        out,
        "Built by rubricmill ({} pipeline) from the job `{}` (fingerprint `{}`), exported as {}.\n",
        spec.pipeline.as_str(),
        spec.name,
        manifest.fingerprint,
        options.format.name()
    );
    if spec.llm.provider == ProviderKind::Simulated {
        out.push_str(
            "**These rows were made by the simulated provider**: deterministic test and dry-run answers derived \
             from the input text, not written by a model. Do not train on them.\n\n",
        );
    }
    out.push_str("## Counts\n\n| | rows |\n|---|---|\n");
    let _ = writeln!(out, "| committed rows read | {} |", report.rows_read);
    let _ = writeln!(
        out,
        "| dropped by the consistency filter | {} |",
        report.not_kept
    );
    let _ = writeln!(out, "| duplicate ids | {} |", report.duplicate_ids);
    let _ = writeln!(out, "| exact duplicates | {} |", report.exact_duplicates);
    let near = options
        .near_dup_threshold
        .map_or("off".to_owned(), |t| format!("Jaccard ≥ {t}"));
    let _ = writeln!(
        out,
        "| near duplicates ({near}) | {} |",
        report.near_duplicates
    );
    for (split, counts) in &report.splits {
        let _ = writeln!(out, "| {split} | {} |", counts.rows);
    }
    let fractions: Vec<String> = options
        .splits
        .iter()
        .map(|(n, f)| format!("{n} {f}"))
        .collect();
    let _ = writeln!(
        out,
        "\nSplits are assigned by the hash of `{split_key}` ({}).\n",
        fractions.join(", ")
    );
    out.push_str("## Generation\n\n");
    let _ = writeln!(
        out,
        "- provider: {}, model: `{}`",
        spec.llm.provider.as_str(),
        spec.llm.model
    );
    for (stage, llm) in &spec.llm.stages {
        if let Some(model) = &llm.model {
            let _ = writeln!(out, "- stage `{stage}`: model `{model}`");
        }
    }
    if !manifest.templates.is_empty() {
        let names: Vec<&str> = manifest.templates.keys().map(String::as_str).collect();
        let _ = writeln!(
            out,
            "- prompt templates overridden by the job: {}",
            names.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "- LLM calls {}, cache hits {}, tokens {} in / {} out, cost ${:.4}",
        usage.calls, usage.cache_hits, usage.tokens_in, usage.tokens_out, usage.cost_usd
    );
    out.push_str("- each row records the hash of the prompt template that made it (`prompt_hash`) and its source\n");
    if let Some(license) = &spec.dataset.license {
        let _ = writeln!(out, "\n## License\n\n{license}");
    }
    out
}

fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The exported columns and their Arrow types, as JSON.
pub fn schema_json(schema: &SchemaRef, format: ExportFormat) -> String {
    fn field_json(field: &Field) -> serde_json::Value {
        let children: Vec<serde_json::Value> = match field.data_type() {
            DataType::Struct(fields) => fields.iter().map(|f| field_json(f)).collect(),
            DataType::List(item) => match item.data_type() {
                DataType::Struct(fields) => fields.iter().map(|f| field_json(f)).collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut value = serde_json::json!({
            "name": field.name(),
            "type": field.data_type().to_string(),
            "nullable": field.is_nullable(),
        });
        if !children.is_empty() {
            value["fields"] = serde_json::Value::Array(children);
        }
        value
    }
    let fields: Vec<serde_json::Value> = schema.fields().iter().map(|f| field_json(f)).collect();
    let value = serde_json::json!({
        "format": format.name(),
        "note": match format {
            ExportFormat::Parquet | ExportFormat::Jsonl => "the columns of the exported rows",
            ExportFormat::Interchange(_) => "the columns of the rows the interchange records were converted from",
        },
        "fields": fields,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
