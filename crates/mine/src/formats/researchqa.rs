//! The released ResearchQA JSON layout, so that the ResearchQA evaluation code reads our rows
//! unchanged.
//!
//! Source: the dataset's own loader, `researchqa_loader.py` in github.com/realliyifei/ResearchQA
//! (the repository that ships `compute_coverage.py` and downloads `test.json`, `valid.json`,
//! `full.json` from huggingface.co/datasets/realliyifei/ResearchQA). It reads a file with
//! `json.load` — one JSON array — and builds, per element,
//!
//! ```text
//! ResearchQAItem(id: str, general_domain: str, subdomain: str, field: str, query: str,
//!                date: str, rubric: List[RubricItem(rubric_item: str, type: str)])
//! ```
//!
//! with `RubricItem(**r)` for each rubric entry. `RubricItem` has the fields `rubric_item`,
//! `type` and, since the loader's commit "add the key of RubricItem", an optional
//! `citation_metadata`; any other key makes `RubricItem(**r)` raise. So an element must have
//! those seven keys (extra top-level keys are ignored), and a rubric entry has exactly
//! `rubric_item`, `type` and `citation_metadata`. Hence:
//!
//! - all scalar fields are strings; a label or date we do not have is written as `""`;
//! - `type` is one string, as each released item has one type: the item's first type label
//!   (the generator lists the main one first), e.g. `"Citation"`;
//! - `citation_metadata` is the cited work's `{first_author, title, url, year}` for citation
//!   items and `null` otherwise;
//! - heading path, section text and provenance are not part of this layout; they stay in the
//!   Parquet rows.
//!
//! Input rows are JSON objects as Arrow's JSON writer renders the researchqa Parquet schema
//! (null columns may be absent).

use serde_json::{Map, Value, json};

use super::Layout;

pub(super) const LAYOUT: Layout = Layout::JsonArray;

/// A string field of the row; absent or null is `""`.
fn text(row: &Map<String, Value>, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub(super) fn to_researchqa_json(row: &Value) -> Result<Option<Value>, String> {
    let row = row
        .as_object()
        .ok_or("a researchqa row must be a JSON object")?;
    let id = text(row, "id");
    if id.is_empty() {
        return Err("researchqa row has no id".into());
    }
    let query = text(row, "query");
    if query.is_empty() {
        return Err(format!("researchqa row {id} has no query"));
    }
    let items = match row.get("rubric") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => return Err(format!("researchqa row {id} has no rubric")),
        Some(_) => return Err(format!("researchqa row {id}: rubric is not a list")),
    };
    let mut rubric = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(text) = item.get("rubric_item").and_then(Value::as_str) else {
            return Err(format!(
                "researchqa row {id}: rubric item {i} has no rubric_item"
            ));
        };
        let item_type = match item.get("type") {
            Some(Value::Array(types)) => types
                .iter()
                .find_map(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Some(Value::String(t)) => t.clone(),
            _ => String::new(),
        };
        let citation = match item.get("citation_metadata") {
            Some(Value::Object(fields)) => {
                let field = |key: &str| fields.get(key).cloned().unwrap_or(Value::Null);
                json!({
                    "first_author": field("first_author"),
                    "title": field("title"),
                    "url": field("url"),
                    "year": field("year"),
                })
            }
            _ => Value::Null,
        };
        rubric.push(json!({
            "rubric_item": text,
            "type": item_type,
            "citation_metadata": citation,
        }));
    }
    Ok(Some(json!({
        "id": id,
        "general_domain": text(row, "general_domain"),
        "subdomain": text(row, "subdomain"),
        "field": text(row, "field"),
        "query": query,
        "date": text(row, "date"),
        "rubric": rubric,
    })))
}

#[cfg(test)]
mod tests {
    use super::super::{InterchangeFormat, Layout, convert};
    use super::*;

    /// A row as arrow_json renders our Parquet schema: nulls omitted, nested lists as arrays.
    fn row() -> Value {
        json!({
            "id": "fairness-1a2b3c4d-s3",
            "general_domain": "Computer Science",
            "query": "How do re-ranking methods trade accuracy for provider fairness?",
            "rubric": [
                {"rubric_item": "Does the response cite the work of Abdollahpouri on popularity bias?",
                 "type": ["Citation"],
                 "citation_metadata": {"first_author": "Abdollahpouri", "title": "Popularity bias", "year": "2019"}},
                {"rubric_item": "Does the response compare pre- and post-processing methods?",
                 "type": ["Comparison", "Explanation"]}
            ],
            "doc_id": "fairness-1a2b3c4d",
            "heading_path": ["4 Landscape", "4.3 Categorization"],
            "section_text_hash": "abc",
            "provider": "simulated",
            "tokens_in": 120
        })
    }

    #[test]
    fn rows_become_exactly_the_loader_layout() {
        let out = convert(
            InterchangeFormat::ResearchqaJson,
            rubricmill_core::PipelineKind::Researchqa,
            &row(),
        )
        .unwrap()
        .unwrap();
        let keys: Vec<&str> = out
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "date",
            "field",
            "general_domain",
            "id",
            "query",
            "rubric",
            "subdomain",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(out["id"], "fairness-1a2b3c4d-s3");
        assert_eq!(out["general_domain"], "Computer Science");
        // labels and dates we do not have are empty strings, never null
        assert_eq!(out["subdomain"], "");
        assert_eq!(out["field"], "");
        assert_eq!(out["date"], "");
        let rubric = out["rubric"].as_array().unwrap();
        assert_eq!(rubric.len(), 2);
        for item in rubric {
            let mut keys: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["citation_metadata", "rubric_item", "type"],
                "RubricItem(**r) takes only these"
            );
            assert!(item["type"].is_string());
        }
        assert_eq!(rubric[0]["type"], "Citation");
        assert_eq!(rubric[1]["type"], "Comparison", "one type per item");
        assert_eq!(
            rubric[0]["citation_metadata"],
            json!({"first_author": "Abdollahpouri", "title": "Popularity bias", "url": null, "year": "2019"})
        );
        assert_eq!(rubric[1]["citation_metadata"], Value::Null);
        assert_eq!(
            rubric[0]["rubric_item"],
            "Does the response cite the work of Abdollahpouri on popularity bias?"
        );
        assert_eq!(
            InterchangeFormat::ResearchqaJson.layout(),
            Layout::JsonArray
        );
    }

    #[test]
    fn rows_without_the_required_fields_are_errors() {
        let mut no_query = row();
        no_query.as_object_mut().unwrap().remove("query");
        assert!(
            to_researchqa_json(&no_query)
                .unwrap_err()
                .contains("no query")
        );
        let mut no_rubric = row();
        no_rubric["rubric"] = Value::Null;
        assert!(
            to_researchqa_json(&no_rubric)
                .unwrap_err()
                .contains("no rubric")
        );
        assert!(to_researchqa_json(&json!([1])).is_err());
        let mut bad_item = row();
        bad_item["rubric"] = json!([{"type": ["Other"]}]);
        assert!(
            to_researchqa_json(&bad_item)
                .unwrap_err()
                .contains("rubric item 0")
        );
    }
}
