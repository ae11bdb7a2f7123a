//! The dataset card (`README.md` with the YAML front matter the Hugging Face hub and
//! `datasets` read: configs, features, splits, license) and `schema.json`.

use std::fmt::Write;

use arrow_schema::{DataType, Field, SchemaRef};
use rubricmill_core::{ProviderKind, Usage};
use rubricmill_store::JobManifest;
use serde::{Deserialize, Serialize};

use rubricmill_mine::formats::InterchangeFormat;

use crate::{ExportFormat, ExportOptions, ExportReport};

/// One Hugging Face `features` entry: a name and exactly one of `dtype`, `sequence`, `list`
/// (of struct fields) or `struct`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dtype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sequence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub list: Option<Vec<Feature>>,
    #[serde(rename = "struct", skip_serializing_if = "Option::is_none", default)]
    pub fields: Option<Vec<Feature>>,
}

fn feature(field: &Field) -> Feature {
    let mut f = Feature {
        name: field.name().clone(),
        dtype: None,
        sequence: None,
        list: None,
        fields: None,
    };
    match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
            DataType::Struct(fields) => f.list = Some(fields.iter().map(|x| feature(x)).collect()),
            other => f.sequence = Some(dtype(other).to_owned()),
        },
        DataType::Struct(fields) => f.fields = Some(fields.iter().map(|x| feature(x)).collect()),
        other => f.dtype = Some(dtype(other).to_owned()),
    }
    f
}

/// The card's YAML front matter, the part the hub and `datasets` read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontMatter {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub license: Option<String>,
    pub pretty_name: String,
    pub tags: Vec<String>,
    pub configs: Vec<Config>,
    pub dataset_info: DatasetInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub config_name: String,
    pub data_files: Vec<DataFiles>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFiles {
    pub split: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub features: Vec<Feature>,
    pub splits: Vec<SplitInfo>,
    /// Bytes of all data files.
    pub dataset_size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    pub name: String,
    /// Bytes of the split's data files as written.
    pub num_bytes: u64,
    pub num_examples: u64,
}

/// The front matter as YAML between `---` lines; the YAML library does the quoting, so any
/// name or license text round-trips.
pub fn front_matter_yaml(front: &FrontMatter) -> Result<String, String> {
    let yaml = serde_norway::to_string(front).map_err(|e| e.to_string())?;
    Ok(format!("---\n{yaml}---\n"))
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
    data_folder: &str,
) -> String {
    let spec = &manifest.spec;
    let ext = options.format.extension();
    let pretty = spec
        .dataset
        .pretty_name
        .clone()
        .unwrap_or_else(|| spec.name.clone());
    let written = || report.splits.iter().filter(|(_, c)| c.rows > 0);
    let with_features = matches!(options.format, ExportFormat::Parquet | ExportFormat::Jsonl);
    let single_json =
        options.format == ExportFormat::Interchange(InterchangeFormat::ResearchqaJson);
    let front = FrontMatter {
        license: spec.dataset.license.clone(),
        pretty_name: pretty.clone(),
        tags: vec!["rubrics".to_owned(), spec.pipeline.as_str().to_owned()],
        configs: vec![Config {
            config_name: "default".to_owned(),
            data_files: written()
                .map(|(split, _)| DataFiles {
                    split: split.clone(),
                    path: if single_json {
                        format!("{data_folder}/{split}.{ext}")
                    } else {
                        format!("{data_folder}/{split}-*.{ext}")
                    },
                })
                .collect(),
        }],
        dataset_info: DatasetInfo {
            features: if with_features {
                schema.fields().iter().map(|f| feature(f)).collect()
            } else {
                Vec::new()
            },
            splits: written()
                .map(|(split, counts)| SplitInfo {
                    name: split.clone(),
                    num_bytes: counts.bytes,
                    num_examples: counts.rows,
                })
                .collect(),
            dataset_size: report.splits.values().map(|c| c.bytes).sum(),
        },
    };
    // the front matter holds only strings and numbers, which always serialise
    let mut out = front_matter_yaml(&front).unwrap_or_else(|e| format!("---\n# {e}\n---\n"));
    out.push('\n');
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
    if format == ExportFormat::Interchange(InterchangeFormat::ResearchqaJson) {
        return researchqa_json_schema();
    }
    let fields: Vec<serde_json::Value> = schema.fields().iter().map(|f| field_json(f)).collect();
    let value = serde_json::json!({
        "format": format.name(),
        "note": match format {
            ExportFormat::Parquet | ExportFormat::Jsonl => "the columns of the exported rows",
            ExportFormat::Interchange(format) if format.layout() == rubricmill_mine::formats::Layout::Parquet => "the columns of the exported rows (the interchange layout)",
            ExportFormat::Interchange(_) => "the columns of the rows the interchange records were converted from",
        },
        "fields": fields,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// `schema.json` of a `researchqa-json` export: the fields of each written record (the layout
/// `mine::formats::researchqa` writes), not the Parquet columns they came from.
fn researchqa_json_schema() -> String {
    let string =
        |name: &str| serde_json::json!({"name": name, "type": "string", "nullable": false});
    let optional =
        |name: &str| serde_json::json!({"name": name, "type": "string", "nullable": true});
    let value = serde_json::json!({
        "format": ExportFormat::Interchange(InterchangeFormat::ResearchqaJson).name(),
        "note": "the fields of each record of the JSON array written; labels and dates the rows lack are empty strings",
        "fields": [
            string("id"),
            string("general_domain"),
            string("subdomain"),
            string("field"),
            string("query"),
            string("date"),
            {
                "name": "rubric",
                "type": "list",
                "nullable": false,
                "fields": [
                    string("rubric_item"),
                    string("type"),
                    {
                        "name": "citation_metadata",
                        "type": "struct",
                        "nullable": true,
                        "fields": [
                            optional("first_author"),
                            optional("title"),
                            optional("url"),
                            optional("year"),
                        ],
                    },
                ],
            },
        ],
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn researchqa_json_schema_describes_the_written_records() {
        let text = schema_json(
            &std::sync::Arc::new(arrow_schema::Schema::empty()),
            ExportFormat::Interchange(InterchangeFormat::ResearchqaJson),
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = value["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "id",
                "general_domain",
                "subdomain",
                "field",
                "query",
                "date",
                "rubric"
            ]
        );
        let rubric: Vec<&str> = value["fields"][6]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(rubric, ["rubric_item", "type", "citation_metadata"]);
    }

    fn front(pretty_name: &str, license: Option<&str>) -> FrontMatter {
        FrontMatter {
            license: license.map(str::to_owned),
            pretty_name: pretty_name.to_owned(),
            tags: vec!["rubrics".into(), "researchqa".into()],
            configs: vec![Config {
                config_name: "default".into(),
                data_files: vec![DataFiles {
                    split: "train".into(),
                    path: "data/train-*.parquet".into(),
                }],
            }],
            dataset_info: DatasetInfo {
                features: vec![feature(&Field::new("query", DataType::Utf8, false))],
                splits: vec![SplitInfo {
                    name: "train".into(),
                    num_bytes: 1234,
                    num_examples: 7,
                }],
                dataset_size: 1234,
            },
        }
    }

    #[test]
    fn front_matter_round_trips_names_yaml_would_misread() {
        for name in [
            "Surveys: a test # not a comment",
            "yes",
            "- dash first",
            "quote \" and 'apostrophe'",
            "two\nlines",
            "@at {brace} [bracket]",
            "123",
        ] {
            let original = front(name, Some("cc-by-4.0: custom"));
            let yaml = front_matter_yaml(&original).unwrap();
            let body = yaml
                .strip_prefix("---\n")
                .and_then(|y| y.strip_suffix("---\n"))
                .expect("fenced front matter");
            let parsed: FrontMatter = serde_norway::from_str(body).unwrap();
            assert_eq!(parsed, original, "{yaml}");
        }
    }

    #[test]
    fn splits_carry_num_bytes_and_features_their_type() {
        let yaml = front_matter_yaml(&front("x", None)).unwrap();
        assert!(yaml.contains("num_bytes: 1234"), "{yaml}");
        assert!(yaml.contains("num_examples: 7"), "{yaml}");
        assert!(!yaml.contains("license"), "{yaml}");
        let list = feature(&Field::new(
            "rubric",
            DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Struct(vec![Field::new("rubric_item", DataType::Utf8, false)].into()),
                true,
            ))),
            false,
        ));
        assert_eq!(list.list.as_ref().map(Vec::len), Some(1));
        assert_eq!(list.dtype, None);
    }
}
