//! The dataset viewer's rows: committed rows (or rejects) paged straight from the Parquet parts
//! that commit markers reference, in shard order, with filters. A part that no filter needs to
//! look into is skipped by its marker's row count, so paging far without filters reads only
//! the parts on the page.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rubricmill_core::MarkerSummary;
use rubricmill_store::JobStore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::UiError;

/// Rows a page holds unless asked otherwise, and the most it may hold.
pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 200;

/// Which rows a page shows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RowQuery {
    /// `rows` (default) or `rejects`.
    pub table: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
    /// crg and reference rows: kept (`true`) or dropped by the consistency filter or the
    /// self-check (`false`).
    pub kept: Option<bool>,
    /// Rejects: the stage that rejected the input.
    pub stage: Option<String>,
    /// Rejects' reason or crg rows' drop reason contains this (any case).
    pub reason: Option<String>,
    /// researchqa: field, general domain or subdomain; crg, nuggets and score: the record's
    /// source; reference: the record's domain or source.
    pub field: Option<String>,
    /// A rubric item type (researchqa), kind (crg, score) or category (reference) the rubric
    /// has, or a nugget's importance (nuggets).
    pub item_type: Option<String>,
    pub shard: Option<String>,
    /// Any text of the row contains this (any case).
    pub q: Option<String>,
}

/// One page of rows.
#[derive(Debug, Clone, Serialize)]
pub struct RowPage {
    pub job: String,
    pub table: String,
    pub offset: usize,
    pub limit: usize,
    /// The rows as JSON objects (the Parquet columns), with `_part`, `_row` (index in its part),
    /// `_worker` and `_committed_at` from the commit marker.
    pub rows: Vec<Value>,
    /// Whether rows after this page match too.
    pub has_more: bool,
    /// Rows of the table in all committed parts (before filters).
    pub total: u64,
    /// Committed parts of the table.
    pub parts: usize,
    /// The `rubricmill.*` key-value metadata of the parts the page's rows come from (job,
    /// pipeline version, model, prompt hashes…), by part.
    pub metadata: BTreeMap<String, BTreeMap<String, String>>,
}

/// A decoded part: its rows and its `rubricmill.*` key-value metadata.
#[derive(Debug, Default)]
pub struct DecodedPart {
    pub rows: Vec<Map<String, Value>>,
    pub metadata: BTreeMap<String, String>,
}

fn blank(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl RowQuery {
    fn rejects(&self) -> bool {
        self.table.as_deref() == Some("rejects")
    }

    fn filtered(&self) -> bool {
        self.kept.is_some()
            || [
                &self.stage,
                &self.reason,
                &self.field,
                &self.item_type,
                &self.shard,
                &self.q,
            ]
            .iter()
            .any(|v| blank(v).is_some())
    }

    /// Whether a row (its JSON object) passes every filter.
    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        let text = |name: &str| row.get(name).and_then(Value::as_str).unwrap_or("");
        let contains =
            |haystack: &str, needle: &str| haystack.to_lowercase().contains(&needle.to_lowercase());
        if let Some(kept) = self.kept {
            let row_kept = row.get("kept").and_then(Value::as_bool).unwrap_or(true);
            if row_kept != kept {
                return false;
            }
        }
        if let Some(stage) = blank(&self.stage)
            && !text("stage").eq_ignore_ascii_case(stage)
        {
            return false;
        }
        if let Some(reason) = blank(&self.reason)
            && !contains(text("reason"), reason)
            && !contains(text("drop_reason"), reason)
        {
            return false;
        }
        if let Some(field) = blank(&self.field)
            && !["field", "general_domain", "subdomain", "source", "domain"]
                .iter()
                .any(|name| text(name).eq_ignore_ascii_case(field))
        {
            return false;
        }
        if let Some(wanted) = blank(&self.item_type)
            && !rubric_item_types(row).any(|t| t.eq_ignore_ascii_case(wanted))
        {
            return false;
        }
        if let Some(shard) = blank(&self.shard)
            && text("shard_id") != shard
        {
            return false;
        }
        if let Some(q) = blank(&self.q)
            && !contains(&Value::Object(row.clone()).to_string(), q)
        {
            return false;
        }
        true
    }
}

/// The types of a row's rubric items: researchqa's `type` lists, crg's and score's `kind`s,
/// reference's `category`s, nuggets' `importance`.
fn rubric_item_types(row: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let rubric = row.get("rubric").and_then(Value::as_array).into_iter();
    let nuggets = row.get("nuggets").and_then(Value::as_array).into_iter();
    rubric.chain(nuggets).flatten().flat_map(|item| {
        let kinds = item
            .get("kind")
            .or_else(|| item.get("category"))
            .or_else(|| item.get("importance"))
            .and_then(Value::as_str)
            .into_iter();
        let types = item
            .get("type")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        kinds.chain(types)
    })
}

/// Decodes a Parquet part into JSON objects, one per row.
pub fn decode_part(relative: &str, bytes: Bytes) -> Result<DecodedPart, UiError> {
    let decode = |message: String| UiError::Decode {
        part: relative.to_owned(),
        message,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| decode(e.to_string()))?;
    let metadata: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with("rubricmill."))
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    let reader = builder.build().map_err(|e| decode(e.to_string()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| decode(e.to_string()))?;
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    writer
        .write_batches(&refs)
        .and_then(|()| writer.finish())
        .map_err(|e| decode(e.to_string()))?;
    let json = writer.into_inner();
    if json.is_empty() {
        return Ok(DecodedPart {
            rows: Vec::new(),
            metadata,
        });
    }
    let rows: Vec<Map<String, Value>> =
        serde_json::from_slice(&json).map_err(|e| decode(e.to_string()))?;
    Ok(DecodedPart { rows, metadata })
}

/// A page of a job's committed rows (or rejects) matching `query`.
pub async fn page(
    store: &JobStore,
    job: &str,
    summaries: &[MarkerSummary],
    query: &RowQuery,
) -> Result<RowPage, UiError> {
    let rejects = query.rejects();
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filtered = query.filtered();
    let parts: Vec<(&MarkerSummary, &str, u64)> = summaries
        .iter()
        .filter_map(|summary| {
            let (part, count) = if rejects {
                (summary.rejects_part.as_deref(), summary.rejects)
            } else {
                (summary.part.as_deref(), summary.rows)
            };
            part.map(|part| (summary, part, count))
        })
        .collect();
    let total = parts.iter().map(|(_, _, count)| count).sum();
    let mut page = RowPage {
        job: job.to_owned(),
        table: if rejects { "rejects" } else { "rows" }.to_owned(),
        offset,
        limit,
        rows: Vec::new(),
        has_more: false,
        total,
        parts: parts.len(),
        metadata: BTreeMap::new(),
    };
    // Matching rows still to pass over before the page starts.
    let mut skip = offset;
    for (summary, part, count) in parts {
        if !filtered && skip >= count as usize {
            skip -= count as usize;
            continue;
        }
        let bytes = store.read(part).await?;
        let relative = part.to_owned();
        let decoded = tokio::task::spawn_blocking(move || decode_part(&relative, bytes))
            .await
            .map_err(|e| UiError::Decode {
                part: part.to_owned(),
                message: e.to_string(),
            })??;
        let mut metadata = Some(decoded.metadata);
        for (index, mut row) in decoded.rows.into_iter().enumerate() {
            if !query.matches(&row) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if page.rows.len() == limit {
                page.has_more = true;
                return Ok(page);
            }
            if let Some(metadata) = metadata.take() {
                page.metadata.insert(part.to_owned(), metadata);
            }
            row.insert("_part".into(), Value::String(part.to_owned()));
            row.insert("_row".into(), Value::from(index));
            row.insert("_worker".into(), Value::String(summary.worker_id.clone()));
            row.insert(
                "_committed_at".into(),
                Value::String(summary.committed_at.to_rfc3339()),
            );
            page.rows.push(Value::Object(row));
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn filters_match_the_columns_of_each_table() {
        let qa = row(json!({
            "field": "Biology", "general_domain": "Science", "shard_id": "s1",
            "rubric": [{"rubric_item": "x", "type": ["Factual", "Citation"]}],
        }));
        let crg = row(json!({
            "source": "hh-rlhf", "kept": false, "drop_reason": "Inconsistent verdicts",
            "rubric": [{"text": "t", "kind": "hard_rule"}],
        }));
        let reject = row(json!({"stage": "sections", "reason": "too short", "shard_id": "s2"}));
        let query = |q: RowQuery| q;
        assert!(
            query(RowQuery {
                field: Some("biology".into()),
                ..Default::default()
            })
            .matches(&qa)
        );
        assert!(
            !RowQuery {
                field: Some("Physics".into()),
                ..Default::default()
            }
            .matches(&qa)
        );
        let citation = RowQuery {
            item_type: Some("citation".into()),
            ..Default::default()
        };
        assert!(citation.matches(&qa) && !citation.matches(&crg));
        let dropped = RowQuery {
            kept: Some(false),
            reason: Some("inconsistent".into()),
            ..Default::default()
        };
        assert!(dropped.matches(&crg) && !dropped.matches(&qa));
        let stage = RowQuery {
            stage: Some("sections".into()),
            shard: Some("s2".into()),
            ..Default::default()
        };
        assert!(stage.matches(&reject) && !stage.matches(&qa));
        let text = RowQuery {
            q: Some("HARD_RULE".into()),
            ..Default::default()
        };
        assert!(text.matches(&crg) && !text.matches(&reject));
        assert!(RowQuery::default().matches(&reject));
        assert!(!RowQuery::default().filtered() && dropped.filtered());
    }

    #[test]
    fn reference_rows_filter_on_category_and_domain() {
        let reference = row(json!({
            "id": "r1", "source": "in.jsonl", "domain": "nutrition",
            "rubric": [{"criterion": "c", "points": -4, "tags": ["axis:accuracy"], "category": "pitfall"}],
        }));
        let pitfalls = RowQuery {
            item_type: Some("Pitfall".into()),
            ..Default::default()
        };
        assert!(pitfalls.matches(&reference));
        let essential = RowQuery {
            item_type: Some("essential".into()),
            ..Default::default()
        };
        assert!(!essential.matches(&reference));
        let domain = RowQuery {
            field: Some("Nutrition".into()),
            ..Default::default()
        };
        assert!(domain.matches(&reference));
    }

    #[test]
    fn nuggets_score_and_reference_rows_filter_on_their_own_columns() {
        let nuggets = row(json!({
            "id": "q1", "source": "qa.jsonl", "question": "why?",
            "nuggets": [{"nugget": "n", "passage_id": "p1", "span": "s", "importance": "vital", "supported": true}],
        }));
        let score = row(json!({
            "id": "s1", "source": "rubrics.jsonl", "rubric_layout": "crg",
            "rubric": [{"criterion": "c", "points": 1, "kind": "hard_rule"}],
            "responses": [{"response_id": "chosen", "score": 1.0, "verdicts": []}],
        }));
        let reference = row(json!({
            "id": "r1", "kept": false, "drop_reason": "degraded answer scored as high",
            "rubric": [], "dropped_criteria": [],
        }));
        let vital = RowQuery {
            item_type: Some("Vital".into()),
            ..Default::default()
        };
        assert!(vital.matches(&nuggets) && !vital.matches(&score));
        let hard = RowQuery {
            item_type: Some("hard_rule".into()),
            field: Some("rubrics.jsonl".into()),
            ..Default::default()
        };
        assert!(hard.matches(&score) && !hard.matches(&nuggets));
        let dropped = RowQuery {
            kept: Some(false),
            reason: Some("scored as high".into()),
            ..Default::default()
        };
        assert!(dropped.matches(&reference));
        // Rows without `kept` count as kept.
        assert!(!dropped.matches(&score) && !dropped.matches(&nuggets));
    }
}
