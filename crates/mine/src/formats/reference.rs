//! The reference interchange formats. Both read a committed reference row as Arrow's JSON
//! writer renders it (columns as fields, `prompt` a list of `{role, content}`, `rubric` a list
//! of `{criterion, points, tags, category}`, null columns possibly absent) and leave out rows
//! whose rubric the self-check dropped (`kept = false` gives `Ok(None)`; rows without a `kept`
//! column count as kept). Criteria pass through unchanged: their text, their points (negative
//! for pitfalls) and their tags; `category` is not part of either layout (it stays in the
//! Parquet rows).
//!
//! # healthbench (Parquet)
//!
//! The HealthBench / verl rubric layout of `healthbench_val.parquet`, written as Parquet:
//!
//! ```text
//! prompt: list<struct<content: string, role: string>>
//! data_source: string                      "rubricmill_reference"
//! ability: string                          the row's domain, else "general"
//! reward_model: struct<ground_truth: string ("" as in HealthBench),
//!                      rubrics: list<struct<criterion: string, points: int64, tags: list<string>>>,
//!                      style: string ("rubric")>
//! extra_info: struct<prompt, reward_model (both as above), prompt_id: string (the row id),
//!                    example_tags: list<string> (the row's own tags)>
//! ```
//!
//! # healthbench-jsonl
//!
//! HealthBench's own JSONL layout (the `simple-evals` HealthBench files), one line per row:
//!
//! ```text
//! {"prompt": [{"role", "content"}], "rubrics": [{"criterion", "points", "tags"}],
//!  "example_tags": [...], "prompt_id": "<row id>",
//!  "ideal_completions_data": {"ideal_completion": "<reference answer>"}}
//! ```
//!
//! `ideal_completions_data` is there only when the row has a reference answer.

use serde_json::{Map, Value, json};

use super::{chat_messages, verl_row};

/// `data_source` of reference rows in the healthbench layout.
pub const DATA_SOURCE: &str = "rubricmill_reference";
/// `ability` of reference rows without a domain.
pub const DEFAULT_ABILITY: &str = "general";

/// The fields both formats need, read from a row.
struct Row<'a> {
    id: &'a str,
    prompt: Vec<(&'a str, &'a str)>,
    reference_answer: Option<&'a str>,
    example_tags: Vec<&'a str>,
    domain: Option<&'a str>,
    /// `(criterion, points, tags)`.
    rubric: Vec<(&'a str, i64, Vec<&'a str>)>,
}

fn present<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    row.get(name).filter(|v| !v.is_null())
}

/// A non-empty string field, if any.
fn optional_string<'a>(row: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match present(row, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("reference row field {name:?} is not a string")),
    }
}

fn strings<'a>(value: Option<&'a Value>, name: &str) -> Result<Vec<&'a str>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| format!("reference row field {name} holds a non-string"))
            })
            .collect(),
        Some(_) => Err(format!("reference row field {name} is not a list")),
    }
}

fn list<'a>(row: &'a Value, name: &str) -> Result<&'a Vec<Value>, String> {
    present(row, name)
        .ok_or_else(|| format!("reference row has no {name:?} field"))?
        .as_array()
        .ok_or_else(|| format!("reference row field {name:?} is not a list"))
}

/// The row's fields, or `None` when the self-check dropped it.
fn read(row: &Value) -> Result<Option<Row<'_>>, String> {
    if !row.is_object() {
        return Err("reference row is not a JSON object".into());
    }
    let kept = match row.get("kept") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(kept)) => *kept,
        Some(_) => return Err("reference row field \"kept\" is not a boolean".into()),
    };
    if !kept {
        return Ok(None);
    }
    let id = optional_string(row, "id")?.ok_or("reference row has no \"id\" field")?;
    let prompt = list(row, "prompt")?
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let get = |key: &str| {
                message
                    .get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("reference row {id}: prompt[{i}] has no string {key:?}"))
            };
            Ok((get("role")?, get("content")?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let rubric = list(row, "rubric")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let criterion = item
                .get("criterion")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("reference row {id}: rubric[{i}] has no string \"criterion\"")
                })?;
            let points = item.get("points").and_then(Value::as_i64).ok_or_else(|| {
                format!("reference row {id}: rubric[{i}] has no integer \"points\"")
            })?;
            let tags = strings(item.get("tags"), &format!("rubric[{i}].tags"))?;
            Ok((criterion, points, tags))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if rubric.is_empty() {
        return Err(format!("reference row {id} has an empty rubric"));
    }
    Ok(Some(Row {
        id,
        prompt,
        reference_answer: optional_string(row, "reference_answer")?,
        example_tags: strings(present(row, "example_tags"), "example_tags")?,
        domain: optional_string(row, "domain")?,
        rubric,
    }))
}

fn criteria(row: &Row<'_>) -> Vec<Value> {
    row.rubric
        .iter()
        .map(|(criterion, points, tags)| {
            json!({"criterion": criterion.trim(), "points": points, "tags": tags})
        })
        .collect()
}

pub(super) fn to_healthbench(row: &Value) -> Result<Option<Value>, String> {
    let Some(row) = read(row)? else {
        return Ok(None);
    };
    Ok(Some(verl_row(
        &row.prompt,
        criteria(&row),
        DATA_SOURCE,
        row.domain.map(str::trim).unwrap_or(DEFAULT_ABILITY),
        vec![
            ("prompt_id", row.id.into()),
            ("example_tags", json!(row.example_tags)),
        ],
    )))
}

pub(super) fn to_healthbench_jsonl(row: &Value) -> Result<Option<Value>, String> {
    let Some(row) = read(row)? else {
        return Ok(None);
    };
    let mut out = Map::new();
    out.insert("prompt".into(), Value::Array(chat_messages(&row.prompt)));
    out.insert("rubrics".into(), Value::Array(criteria(&row)));
    out.insert("example_tags".into(), json!(row.example_tags));
    out.insert("prompt_id".into(), row.id.into());
    if let Some(answer) = row.reference_answer {
        out.insert(
            "ideal_completions_data".into(),
            json!({"ideal_completion": answer}),
        );
    }
    Ok(Some(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{InterchangeFormat, convert as convert_any};
    use rubricmill_core::PipelineKind;

    fn convert(format: InterchangeFormat, row: &Value) -> Result<Option<Value>, String> {
        convert_any(format, PipelineKind::Reference, row)
    }

    /// A committed reference row as Arrow's JSON writer renders it (null columns left out).
    fn row(id: &str, kept: bool) -> Value {
        json!({
            "id": id,
            "source": "prompts.jsonl",
            "prompt": [
                {"role": "user", "content": "My throat hurts."},
                {"role": "assistant", "content": "Since when?"},
                {"role": "user", "content": "Two days. What helps?"}
            ],
            "reference_answer": "Warm drinks, rest, and see a doctor if it lasts a week.",
            "example_tags": ["theme:communication"],
            "domain": "medical_chat",
            "rubric": [
                {"criterion": "Suggests warm drinks or rest.", "points": 6, "tags": ["axis:completeness", "level:example"], "category": "important"},
                {"criterion": "Recommends antibiotics without a diagnosis.", "points": -8, "tags": ["axis:accuracy", "level:example"], "category": "pitfall"}
            ],
            "dropped_criteria": [],
            "reference_verdicts": [],
            "degraded_verdicts": [],
            "attempts": 1,
            "kept": kept,
            "judge_model": "",
            "judge_prompt_hash": ""
        })
    }

    #[test]
    fn healthbench_rows_pass_criteria_through_in_the_verl_layout() {
        let out = convert(InterchangeFormat::Healthbench, &row("r1", true))
            .unwrap()
            .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "ability",
                "data_source",
                "extra_info",
                "prompt",
                "reward_model"
            ]
        );
        assert_eq!(out["data_source"], DATA_SOURCE);
        assert_eq!(out["ability"], "medical_chat");
        assert_eq!(
            out["prompt"][0],
            json!({"content": "My throat hurts.", "role": "user"})
        );
        assert_eq!(
            out["reward_model"],
            json!({
                "ground_truth": "",
                "style": "rubric",
                "rubrics": [
                    {"criterion": "Suggests warm drinks or rest.", "points": 6, "tags": ["axis:completeness", "level:example"]},
                    {"criterion": "Recommends antibiotics without a diagnosis.", "points": -8, "tags": ["axis:accuracy", "level:example"]}
                ]
            })
        );
        assert_eq!(out["extra_info"]["prompt"], out["prompt"]);
        assert_eq!(out["extra_info"]["reward_model"], out["reward_model"]);
        assert_eq!(out["extra_info"]["prompt_id"], "r1");
        assert_eq!(
            out["extra_info"]["example_tags"],
            json!(["theme:communication"])
        );
        let mut no_domain = row("r1", true);
        no_domain.as_object_mut().unwrap().remove("domain");
        let out = convert(InterchangeFormat::Healthbench, &no_domain)
            .unwrap()
            .unwrap();
        assert_eq!(out["ability"], DEFAULT_ABILITY);
    }

    #[test]
    fn healthbench_jsonl_rows_carry_the_reference_answer_when_there_is_one() {
        let out = convert(InterchangeFormat::HealthbenchJsonl, &row("r1", true))
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            json!({
                "prompt": [
                    {"role": "user", "content": "My throat hurts."},
                    {"role": "assistant", "content": "Since when?"},
                    {"role": "user", "content": "Two days. What helps?"}
                ],
                "rubrics": [
                    {"criterion": "Suggests warm drinks or rest.", "points": 6, "tags": ["axis:completeness", "level:example"]},
                    {"criterion": "Recommends antibiotics without a diagnosis.", "points": -8, "tags": ["axis:accuracy", "level:example"]}
                ],
                "example_tags": ["theme:communication"],
                "prompt_id": "r1",
                "ideal_completions_data": {"ideal_completion": "Warm drinks, rest, and see a doctor if it lasts a week."}
            })
        );
        let mut no_answer = row("r1", true);
        no_answer
            .as_object_mut()
            .unwrap()
            .remove("reference_answer");
        no_answer.as_object_mut().unwrap().remove("example_tags");
        let out = convert(InterchangeFormat::HealthbenchJsonl, &no_answer)
            .unwrap()
            .unwrap();
        assert!(out.get("ideal_completions_data").is_none(), "{out}");
        assert_eq!(out["example_tags"], json!([]));
    }

    #[test]
    fn dropped_rows_are_left_out_and_broken_rows_explained() {
        for format in [
            InterchangeFormat::Healthbench,
            InterchangeFormat::HealthbenchJsonl,
        ] {
            assert_eq!(convert(format, &row("r1", false)), Ok(None));
            let mut no_kept = row("r1", true);
            no_kept.as_object_mut().unwrap().remove("kept");
            assert!(convert(format, &no_kept).unwrap().is_some());
            let mut empty = row("r1", true);
            empty["rubric"] = json!([]);
            assert!(
                convert(format, &empty)
                    .unwrap_err()
                    .contains("empty rubric")
            );
            let mut bad = row("r1", true);
            bad["rubric"][1]["points"] = json!("many");
            assert!(convert(format, &bad).unwrap_err().contains("rubric[1]"));
            let mut no_prompt = row("r1", true);
            no_prompt.as_object_mut().unwrap().remove("prompt");
            assert!(
                convert(format, &no_prompt)
                    .unwrap_err()
                    .contains("\"prompt\"")
            );
            assert!(convert(format, &json!([1])).is_err());
            let err = convert_any(format, PipelineKind::Researchqa, &row("r1", true)).unwrap_err();
            assert!(err.contains("crg or reference"), "{err}");
        }
    }
}
