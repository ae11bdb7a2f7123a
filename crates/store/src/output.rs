//! Arrow schemas of the output tables ("Output schemas" in docs/ARCHITECTURE.md) and their
//! Parquet encoding: explicit schemas with nested `List<Struct>` columns, zstd, key-value
//! metadata naming the job, the pipeline version, the model and the prompt hashes. Provenance columns are flat so that DuckDB, polars
//! and pandas users can filter on them directly.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StringArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rubricmill_core::{
    CrgRow, CriterionVerdict, NuggetRow, PipelineKind, Provenance, ReferenceRow, RejectRow,
    ResearchQaRow, ScoreRow,
};

use crate::StoreError;

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        false,
    )
}

fn provenance_fields() -> Vec<Field> {
    vec![
        utf8("source_file", false),
        utf8("source_location", false),
        utf8("shard_id", false),
        utf8("attempt_id", false),
        utf8("provider", false),
        utf8("model", false),
        utf8("prompt_hash", false),
        Field::new("tokens_in", DataType::UInt64, false),
        Field::new("tokens_out", DataType::UInt64, false),
        Field::new("cost_usd", DataType::Float64, false),
        Field::new("cache_hits", DataType::UInt64, false),
        list_of("cached_from", DataType::Utf8),
    ]
}

fn citation_fields() -> Fields {
    Fields::from(vec![
        utf8("first_author", true),
        utf8("title", true),
        utf8("url", true),
        utf8("year", true),
    ])
}

fn cited_reference_fields() -> Fields {
    Fields::from(vec![
        utf8("key", false),
        utf8("first_author", true),
        utf8("title", true),
        utf8("url", true),
        utf8("year", true),
    ])
}

fn rubric_item_fields() -> Fields {
    Fields::from(vec![
        utf8("rubric_item", false),
        list_of("type", DataType::Utf8),
        Field::new(
            "citation_metadata",
            DataType::Struct(citation_fields()),
            true,
        ),
    ])
}

/// Schema of researchqa rows: the released ResearchQA columns, then section and provenance.
pub static RESEARCHQA_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("id", false),
        utf8("general_domain", true),
        utf8("subdomain", true),
        utf8("field", true),
        utf8("query", false),
        utf8("date", true),
        list_of("rubric", DataType::Struct(rubric_item_fields())),
        utf8("doc_id", false),
        utf8("doc_title", true),
        utf8("section_heading", false),
        list_of("heading_path", DataType::Utf8),
        utf8("section_text_hash", false),
        utf8("section_kind", false),
        utf8("section_text", true),
        list_of(
            "cited_references",
            DataType::Struct(cited_reference_fields()),
        ),
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

fn message_fields() -> Fields {
    Fields::from(vec![utf8("role", false), utf8("content", false)])
}

fn crg_item_fields() -> Fields {
    Fields::from(vec![utf8("text", false), utf8("kind", false)])
}

fn verdict_fields() -> Fields {
    Fields::from(vec![utf8("order", false), utf8("preferred", false)])
}

fn crg_attempt_fields() -> Fields {
    Fields::from(vec![
        Field::new("attempt", DataType::UInt32, false),
        Field::new("seed", DataType::UInt64, true),
        list_of("verdicts", DataType::Struct(verdict_fields())),
        Field::new("accuracy", DataType::Float64, true),
        Field::new("consistent", DataType::Boolean, false),
        utf8("error", true),
    ])
}

/// Schema of crg rows.
pub static CRG_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("pair_id", false),
        utf8("source", false),
        list_of("prompt", DataType::Struct(message_fields())),
        utf8("chosen", false),
        utf8("rejected", false),
        list_of("rubric", DataType::Struct(crg_item_fields())),
        list_of("verdicts", DataType::Struct(verdict_fields())),
        Field::new("consistency", DataType::Float64, true),
        Field::new("attempts", DataType::UInt32, false),
        Field::new("kept", DataType::Boolean, false),
        utf8("rubric_id", false),
        utf8("drop_reason", true),
        list_of("attempt_log", DataType::Struct(crg_attempt_fields())),
        utf8("judge_model", false),
        utf8("judge_prompt_hash", false),
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

fn reference_criterion_fields() -> Fields {
    Fields::from(vec![
        utf8("criterion", false),
        Field::new("points", DataType::Int32, false),
        list_of("tags", DataType::Utf8),
        utf8("category", false),
    ])
}

/// `CriterionVerdict`: the judge's verdict on one criterion for one response.
fn criterion_verdict_fields() -> Fields {
    Fields::from(vec![
        Field::new("criterion", DataType::UInt32, false),
        Field::new("met", DataType::Boolean, true),
        utf8("rationale", false),
    ])
}

/// Schema of reference rows: the record, its HealthBench-style rubric, the self-check's
/// answers, scores and verdicts, then provenance.
pub static REFERENCE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("id", false),
        utf8("source", false),
        list_of("prompt", DataType::Struct(message_fields())),
        utf8("reference_answer", true),
        list_of("example_tags", DataType::Utf8),
        utf8("domain", true),
        list_of("rubric", DataType::Struct(reference_criterion_fields())),
        list_of("dropped_criteria", DataType::Utf8),
        utf8("degraded_answer", true),
        utf8("degraded_origin", true),
        Field::new("reference_score", DataType::Float64, true),
        Field::new("degraded_score", DataType::Float64, true),
        list_of(
            "reference_verdicts",
            DataType::Struct(criterion_verdict_fields()),
        ),
        list_of(
            "degraded_verdicts",
            DataType::Struct(criterion_verdict_fields()),
        ),
        Field::new("attempts", DataType::UInt32, false),
        Field::new("kept", DataType::Boolean, false),
        utf8("drop_reason", true),
        utf8("judge_model", false),
        utf8("judge_prompt_hash", false),
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

fn passage_fields() -> Fields {
    Fields::from(vec![utf8("passage_id", false), utf8("text", false)])
}

fn nugget_fields() -> Fields {
    Fields::from(vec![
        utf8("nugget", false),
        utf8("passage_id", false),
        utf8("span", false),
        Field::new("span_start", DataType::UInt32, false),
        Field::new("span_end", DataType::UInt32, false),
        utf8("importance", false),
        Field::new("supported", DataType::Boolean, true),
    ])
}

/// Schema of nuggets rows: the question, its passages, the nuggets, then provenance.
pub static NUGGETS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("id", false),
        utf8("source", false),
        utf8("question", false),
        list_of("passages", DataType::Struct(passage_fields())),
        list_of("nuggets", DataType::Struct(nugget_fields())),
        list_of("dropped_nuggets", DataType::Utf8),
        utf8("judge_model", false),
        utf8("judge_prompt_hash", false),
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

fn score_criterion_fields() -> Fields {
    Fields::from(vec![
        utf8("criterion", false),
        Field::new("points", DataType::Int32, false),
        utf8("kind", false),
    ])
}

fn scored_response_fields() -> Fields {
    Fields::from(vec![
        utf8("response_id", false),
        utf8("origin", false),
        utf8("text", false),
        list_of("verdicts", DataType::Struct(criterion_verdict_fields())),
        Field::new("score", DataType::Float64, true),
        Field::new("hard_rules_met", DataType::Boolean, true),
    ])
}

/// Schema of score rows: the rubric, its graded responses, the preference check, then
/// provenance.
pub static SCORE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        utf8("id", false),
        utf8("source", false),
        utf8("rubric_layout", false),
        list_of("prompt", DataType::Struct(message_fields())),
        list_of("rubric", DataType::Struct(score_criterion_fields())),
        list_of("responses", DataType::Struct(scored_response_fields())),
        utf8("label", true),
        utf8("predicted", true),
        Field::new("agrees", DataType::Boolean, true),
        utf8("judge_model", false),
        utf8("judge_prompt_hash", false),
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

/// The schema of a pipeline's output rows.
pub fn schema_for(pipeline: PipelineKind) -> SchemaRef {
    match pipeline {
        PipelineKind::Researchqa => RESEARCHQA_SCHEMA.clone(),
        PipelineKind::Crg => CRG_SCHEMA.clone(),
        PipelineKind::Reference => REFERENCE_SCHEMA.clone(),
        PipelineKind::Nuggets => NUGGETS_SCHEMA.clone(),
        PipelineKind::Score => SCORE_SCHEMA.clone(),
    }
}

/// Schema of the rejects table.
pub static REJECTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        utf8("source_file", false),
        utf8("source_location", false),
        utf8("shard_id", false),
        utf8("attempt_id", false),
        utf8("stage", false),
        utf8("reason", false),
        utf8("excerpt", false),
    ]))
});

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn optional_strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// A list column from per-row lengths and the flattened child values.
fn list(item_type: DataType, lengths: impl Iterator<Item = usize>, child: ArrayRef) -> ArrayRef {
    let field = Arc::new(Field::new("item", item_type, true));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths),
        child,
        None,
    ))
}

fn string_list<'a, R: 'a>(rows: &'a [R], items: impl Fn(&'a R) -> &'a [String]) -> ArrayRef {
    let lengths = rows.iter().map(|row| items(row).len());
    let child = strings(
        rows.iter()
            .flat_map(|row| items(row).iter().map(String::as_str)),
    );
    list(DataType::Utf8, lengths, child)
}

fn push_provenance<'a>(
    columns: &mut Vec<ArrayRef>,
    provenance: impl Iterator<Item = &'a Provenance> + Clone,
) {
    columns.push(strings(provenance.clone().map(|p| p.source_file.as_str())));
    columns.push(strings(
        provenance.clone().map(|p| p.source_location.as_str()),
    ));
    columns.push(strings(provenance.clone().map(|p| p.shard_id.as_str())));
    columns.push(strings(provenance.clone().map(|p| p.attempt_id.as_str())));
    columns.push(strings(provenance.clone().map(|p| p.provider.as_str())));
    columns.push(strings(provenance.clone().map(|p| p.model.as_str())));
    columns.push(strings(provenance.clone().map(|p| p.prompt_hash.as_str())));
    let mut tokens_in = UInt64Builder::new();
    let mut tokens_out = UInt64Builder::new();
    let mut cost = Float64Builder::new();
    for p in provenance.clone() {
        tokens_in.append_value(p.tokens_in);
        tokens_out.append_value(p.tokens_out);
        cost.append_value(p.cost_usd);
    }
    let mut cache_hits = UInt64Builder::new();
    for p in provenance.clone() {
        cache_hits.append_value(p.cache_hits);
    }
    columns.push(Arc::new(tokens_in.finish()));
    columns.push(Arc::new(tokens_out.finish()));
    columns.push(Arc::new(cost.finish()));
    columns.push(Arc::new(cache_hits.finish()));
    let lengths = provenance.clone().map(|p| p.cached_from.len());
    let origins = strings(provenance.flat_map(|p| p.cached_from.iter().map(String::as_str)));
    columns.push(list(DataType::Utf8, lengths, origins));
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, StoreError> {
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| StoreError::Encode(e.to_string()))
}

/// Encodes researchqa rows as one record batch.
pub fn researchqa_batch(rows: &[ResearchQaRow]) -> Result<RecordBatch, StoreError> {
    let items: Vec<_> = rows.iter().flat_map(|row| row.rubric.iter()).collect();
    let citations: Vec<_> = items
        .iter()
        .map(|item| item.citation_metadata.as_ref())
        .collect();
    let citation_column = |get: fn(&rubricmill_core::CitationMetadata) -> Option<&str>| {
        optional_strings(citations.iter().map(|c| c.and_then(get)))
    };
    let citation_struct = StructArray::new(
        citation_fields(),
        vec![
            citation_column(|c| c.first_author.as_deref()),
            citation_column(|c| c.title.as_deref()),
            citation_column(|c| c.url.as_deref()),
            citation_column(|c| c.year.as_deref()),
        ],
        Some(NullBuffer::from_iter(citations.iter().map(Option::is_some))),
    );
    let type_lists = list(
        DataType::Utf8,
        items.iter().map(|item| item.types.len()),
        strings(
            items
                .iter()
                .flat_map(|item| item.types.iter().map(String::as_str)),
        ),
    );
    let item_struct = StructArray::new(
        rubric_item_fields(),
        vec![
            strings(items.iter().map(|item| item.rubric_item.as_str())),
            type_lists,
            Arc::new(citation_struct),
        ],
        None,
    );
    let mut columns = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        optional_strings(rows.iter().map(|r| r.general_domain.as_deref())),
        optional_strings(rows.iter().map(|r| r.subdomain.as_deref())),
        optional_strings(rows.iter().map(|r| r.field.as_deref())),
        strings(rows.iter().map(|r| r.query.as_str())),
        optional_strings(rows.iter().map(|r| r.date.as_deref())),
        list(
            DataType::Struct(rubric_item_fields()),
            rows.iter().map(|r| r.rubric.len()),
            Arc::new(item_struct),
        ),
        strings(rows.iter().map(|r| r.doc_id.as_str())),
        optional_strings(rows.iter().map(|r| r.doc_title.as_deref())),
        strings(rows.iter().map(|r| r.section_heading.as_str())),
        string_list(rows, |r| r.heading_path.as_slice()),
        strings(rows.iter().map(|r| r.section_text_hash.as_str())),
        strings(rows.iter().map(|r| r.section_kind.as_str())),
        optional_strings(rows.iter().map(|r| r.section_text.as_deref())),
        cited_references_column(rows),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&RESEARCHQA_SCHEMA, columns)
}

/// The `cited_references` column: per row, the works its section cites.
fn cited_references_column(rows: &[ResearchQaRow]) -> ArrayRef {
    let cited: Vec<_> = rows
        .iter()
        .flat_map(|r| r.cited_references.iter())
        .collect();
    let field = |get: fn(&rubricmill_core::CitedReference) -> Option<&str>| {
        optional_strings(cited.iter().map(|c| get(c)))
    };
    let child = StructArray::new(
        cited_reference_fields(),
        vec![
            strings(cited.iter().map(|c| c.key.as_str())),
            field(|c| c.first_author.as_deref()),
            field(|c| c.title.as_deref()),
            field(|c| c.url.as_deref()),
            field(|c| c.year.as_deref()),
        ],
        None,
    );
    list(
        DataType::Struct(cited_reference_fields()),
        rows.iter().map(|r| r.cited_references.len()),
        Arc::new(child),
    )
}

/// A `List<Struct<a, b>>` column of string pairs.
/// A `list<struct<role, content>>` column of chat messages.
fn messages<'a, R: 'a>(
    rows: &'a [R],
    prompt: impl Fn(&'a R) -> &'a [rubricmill_core::Message],
) -> ArrayRef {
    pair_list(rows, message_fields(), prompt, |m| {
        (m.role.as_str(), m.content.as_str())
    })
}

fn pair_list<'a, R: 'a, I: 'a>(
    rows: &'a [R],
    fields: Fields,
    items: impl Fn(&'a R) -> &'a [I],
    parts: impl Fn(&'a I) -> (&'a str, &'a str),
) -> ArrayRef {
    let flat: Vec<(&str, &str)> = rows
        .iter()
        .flat_map(|row| items(row).iter().map(&parts))
        .collect();
    let child = StructArray::new(
        fields.clone(),
        vec![
            strings(flat.iter().map(|p| p.0)),
            strings(flat.iter().map(|p| p.1)),
        ],
        None,
    );
    list(
        DataType::Struct(fields),
        rows.iter().map(|row| items(row).len()),
        Arc::new(child),
    )
}

/// Encodes crg rows as one record batch.
pub fn crg_batch(rows: &[CrgRow]) -> Result<RecordBatch, StoreError> {
    let mut consistency = Float64Builder::new();
    let mut attempts = UInt32Builder::new();
    let mut kept = BooleanBuilder::new();
    for row in rows {
        consistency.append_option(row.consistency);
        attempts.append_value(row.attempts);
        kept.append_value(row.kept);
    }
    let mut columns = vec![
        strings(rows.iter().map(|r| r.pair_id.as_str())),
        strings(rows.iter().map(|r| r.source.as_str())),
        messages(rows, |r| r.prompt.as_slice()),
        strings(rows.iter().map(|r| r.chosen.as_str())),
        strings(rows.iter().map(|r| r.rejected.as_str())),
        pair_list(
            rows,
            crg_item_fields(),
            |r| r.rubric.as_slice(),
            |i| (i.text.as_str(), i.kind.as_str()),
        ),
        pair_list(
            rows,
            verdict_fields(),
            |r| r.verdicts.as_slice(),
            |v| (v.order.as_str(), v.preferred.as_str()),
        ),
        Arc::new(consistency.finish()),
        Arc::new(attempts.finish()),
        Arc::new(kept.finish()),
        strings(rows.iter().map(|r| r.rubric_id.as_str())),
        optional_strings(rows.iter().map(|r| r.drop_reason.as_deref())),
        crg_attempt_log(rows),
        strings(rows.iter().map(|r| r.judge_model.as_str())),
        strings(rows.iter().map(|r| r.judge_prompt_hash.as_str())),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&CRG_SCHEMA, columns)
}

/// Encodes reference rows as one record batch.
pub fn reference_batch(rows: &[ReferenceRow]) -> Result<RecordBatch, StoreError> {
    let criteria: Vec<&rubricmill_core::ReferenceCriterion> =
        rows.iter().flat_map(|r| r.rubric.iter()).collect();
    let mut points = Int32Builder::new();
    for criterion in &criteria {
        points.append_value(criterion.points);
    }
    let tags = list(
        DataType::Utf8,
        criteria.iter().map(|c| c.tags.len()),
        strings(
            criteria
                .iter()
                .flat_map(|c| c.tags.iter().map(String::as_str)),
        ),
    );
    let criterion_struct = StructArray::new(
        reference_criterion_fields(),
        vec![
            strings(criteria.iter().map(|c| c.criterion.as_str())),
            Arc::new(points.finish()),
            tags,
            strings(criteria.iter().map(|c| c.category.as_str())),
        ],
        None,
    );
    let mut reference_score = Float64Builder::new();
    let mut degraded_score = Float64Builder::new();
    let mut attempts = UInt32Builder::new();
    let mut kept = BooleanBuilder::new();
    for row in rows {
        reference_score.append_option(row.reference_score);
        degraded_score.append_option(row.degraded_score);
        attempts.append_value(row.attempts);
        kept.append_value(row.kept);
    }
    let mut columns = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        strings(rows.iter().map(|r| r.source.as_str())),
        messages(rows, |r| r.prompt.as_slice()),
        optional_strings(rows.iter().map(|r| r.reference_answer.as_deref())),
        string_list(rows, |r| r.example_tags.as_slice()),
        optional_strings(rows.iter().map(|r| r.domain.as_deref())),
        list(
            DataType::Struct(reference_criterion_fields()),
            rows.iter().map(|r| r.rubric.len()),
            Arc::new(criterion_struct),
        ),
        string_list(rows, |r| r.dropped_criteria.as_slice()),
        optional_strings(rows.iter().map(|r| r.degraded_answer.as_deref())),
        optional_strings(rows.iter().map(|r| r.degraded_origin.as_deref())),
        Arc::new(reference_score.finish()),
        Arc::new(degraded_score.finish()),
        criterion_verdict_list(rows, |r| r.reference_verdicts.as_slice()),
        criterion_verdict_list(rows, |r| r.degraded_verdicts.as_slice()),
        Arc::new(attempts.finish()),
        Arc::new(kept.finish()),
        optional_strings(rows.iter().map(|r| r.drop_reason.as_deref())),
        strings(rows.iter().map(|r| r.judge_model.as_str())),
        strings(rows.iter().map(|r| r.judge_prompt_hash.as_str())),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&REFERENCE_SCHEMA, columns)
}

/// A `List<Struct<criterion, met, rationale>>` column of judge verdicts.
fn criterion_verdict_list<'a, R: 'a>(
    rows: &'a [R],
    items: impl Fn(&'a R) -> &'a [CriterionVerdict],
) -> ArrayRef {
    let verdicts: Vec<&CriterionVerdict> = rows.iter().flat_map(|r| items(r).iter()).collect();
    let mut criterion = UInt32Builder::new();
    let mut met = BooleanBuilder::new();
    for v in &verdicts {
        criterion.append_value(v.criterion);
        met.append_option(v.met);
    }
    let child = StructArray::new(
        criterion_verdict_fields(),
        vec![
            Arc::new(criterion.finish()),
            Arc::new(met.finish()),
            strings(verdicts.iter().map(|v| v.rationale.as_str())),
        ],
        None,
    );
    list(
        DataType::Struct(criterion_verdict_fields()),
        rows.iter().map(|r| items(r).len()),
        Arc::new(child),
    )
}

/// Encodes nuggets rows as one record batch.
pub fn nuggets_batch(rows: &[NuggetRow]) -> Result<RecordBatch, StoreError> {
    let nuggets: Vec<&rubricmill_core::Nugget> =
        rows.iter().flat_map(|r| r.nuggets.iter()).collect();
    let mut span_start = UInt32Builder::new();
    let mut span_end = UInt32Builder::new();
    let mut supported = BooleanBuilder::new();
    for n in &nuggets {
        span_start.append_value(n.span_start);
        span_end.append_value(n.span_end);
        supported.append_option(n.supported);
    }
    let nugget_struct = StructArray::new(
        nugget_fields(),
        vec![
            strings(nuggets.iter().map(|n| n.nugget.as_str())),
            strings(nuggets.iter().map(|n| n.passage_id.as_str())),
            strings(nuggets.iter().map(|n| n.span.as_str())),
            Arc::new(span_start.finish()),
            Arc::new(span_end.finish()),
            strings(nuggets.iter().map(|n| n.importance.as_str())),
            Arc::new(supported.finish()),
        ],
        None,
    );
    let mut columns = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        strings(rows.iter().map(|r| r.source.as_str())),
        strings(rows.iter().map(|r| r.question.as_str())),
        pair_list(
            rows,
            passage_fields(),
            |r| r.passages.as_slice(),
            |p| (p.passage_id.as_str(), p.text.as_str()),
        ),
        list(
            DataType::Struct(nugget_fields()),
            rows.iter().map(|r| r.nuggets.len()),
            Arc::new(nugget_struct),
        ),
        string_list(rows, |r| r.dropped_nuggets.as_slice()),
        strings(rows.iter().map(|r| r.judge_model.as_str())),
        strings(rows.iter().map(|r| r.judge_prompt_hash.as_str())),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&NUGGETS_SCHEMA, columns)
}

/// Encodes score rows as one record batch.
pub fn score_batch(rows: &[ScoreRow]) -> Result<RecordBatch, StoreError> {
    let criteria: Vec<&rubricmill_core::ScoreCriterion> =
        rows.iter().flat_map(|r| r.rubric.iter()).collect();
    let mut points = Int32Builder::new();
    for c in &criteria {
        points.append_value(c.points);
    }
    let criterion_struct = StructArray::new(
        score_criterion_fields(),
        vec![
            strings(criteria.iter().map(|c| c.criterion.as_str())),
            Arc::new(points.finish()),
            strings(criteria.iter().map(|c| c.kind.as_str())),
        ],
        None,
    );
    let mut agrees = BooleanBuilder::new();
    for row in rows {
        agrees.append_option(row.agrees);
    }
    let mut columns = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        strings(rows.iter().map(|r| r.source.as_str())),
        strings(rows.iter().map(|r| r.rubric_layout.as_str())),
        messages(rows, |r| r.prompt.as_slice()),
        list(
            DataType::Struct(score_criterion_fields()),
            rows.iter().map(|r| r.rubric.len()),
            Arc::new(criterion_struct),
        ),
        scored_responses(rows),
        optional_strings(rows.iter().map(|r| r.label.as_deref())),
        optional_strings(rows.iter().map(|r| r.predicted.as_deref())),
        Arc::new(agrees.finish()),
        strings(rows.iter().map(|r| r.judge_model.as_str())),
        strings(rows.iter().map(|r| r.judge_prompt_hash.as_str())),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&SCORE_SCHEMA, columns)
}

/// The `responses` column: `List<Struct<…, verdicts: List<Struct<criterion, met, rationale>>,
/// score, hard_rules_met>>`.
fn scored_responses(rows: &[ScoreRow]) -> ArrayRef {
    let responses: Vec<&rubricmill_core::ScoredResponse> =
        rows.iter().flat_map(|r| r.responses.iter()).collect();
    let mut score = Float64Builder::new();
    let mut hard_rules_met = BooleanBuilder::new();
    for r in &responses {
        score.append_option(r.score);
        hard_rules_met.append_option(r.hard_rules_met);
    }
    let child = StructArray::new(
        scored_response_fields(),
        vec![
            strings(responses.iter().map(|r| r.response_id.as_str())),
            strings(responses.iter().map(|r| r.origin.as_str())),
            strings(responses.iter().map(|r| r.text.as_str())),
            criterion_verdict_list(&responses, |r| r.verdicts.as_slice()),
            Arc::new(score.finish()),
            Arc::new(hard_rules_met.finish()),
        ],
        None,
    );
    list(
        DataType::Struct(scored_response_fields()),
        rows.iter().map(|r| r.responses.len()),
        Arc::new(child),
    )
}

/// The `attempt_log` column: `List<Struct<…, verdicts: List<Struct<order, preferred>>, …>>`.
fn crg_attempt_log(rows: &[CrgRow]) -> ArrayRef {
    let attempts: Vec<&rubricmill_core::CrgAttempt> =
        rows.iter().flat_map(|r| r.attempt_log.iter()).collect();
    let mut number = UInt32Builder::new();
    let mut seed = UInt64Builder::new();
    let mut accuracy = Float64Builder::new();
    let mut consistent = BooleanBuilder::new();
    for a in &attempts {
        number.append_value(a.attempt);
        seed.append_option(a.seed);
        accuracy.append_option(a.accuracy);
        consistent.append_value(a.consistent);
    }
    let verdicts = pair_list(
        &attempts,
        verdict_fields(),
        |a| a.verdicts.as_slice(),
        |v| (v.order.as_str(), v.preferred.as_str()),
    );
    let child = StructArray::new(
        crg_attempt_fields(),
        vec![
            Arc::new(number.finish()),
            Arc::new(seed.finish()),
            verdicts,
            Arc::new(accuracy.finish()),
            Arc::new(consistent.finish()),
            optional_strings(attempts.iter().map(|a| a.error.as_deref())),
        ],
        None,
    );
    list(
        DataType::Struct(crg_attempt_fields()),
        rows.iter().map(|r| r.attempt_log.len()),
        Arc::new(child),
    )
}

/// Encodes reject rows as one record batch.
pub fn rejects_batch(rows: &[RejectRow]) -> Result<RecordBatch, StoreError> {
    let mut builders: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    for row in rows {
        let values = [
            &row.source_file,
            &row.source_location,
            &row.shard_id,
            &row.attempt_id,
            &row.stage,
            &row.reason,
            &row.excerpt,
        ];
        for (builder, value) in builders.iter_mut().zip(values) {
            builder.append_value(value);
        }
    }
    let columns = builders
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    batch(&REJECTS_SCHEMA, columns)
}

/// Encodes a batch as a zstd Parquet file with the given key-value metadata.
pub fn encode_parquet(
    batch: &RecordBatch,
    metadata: &BTreeMap<String, String>,
) -> Result<Bytes, StoreError> {
    let properties = writer_properties(metadata, None)?;
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(properties))
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    writer
        .write(batch)
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    writer
        .close()
        .map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(Bytes::from(buffer))
}

/// Writer settings of every output file: zstd, the job's key-value metadata, and optionally a
/// row-group size.
pub fn writer_properties(
    metadata: &BTreeMap<String, String>,
    row_group_rows: Option<usize>,
) -> Result<WriterProperties, StoreError> {
    let key_values = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let level = ZstdLevel::try_new(3).map_err(|e| StoreError::Encode(e.to_string()))?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_key_value_metadata(Some(key_values));
    if let Some(rows) = row_group_rows {
        builder = builder.set_max_row_group_row_count(Some(rows));
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int32Type, UInt32Type};
    use arrow_array::{Array, BooleanArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use rubricmill_core::{
        Message, NuggetPassage, ReferenceCriterion, ScoreCriterion, ScoredResponse,
    };

    use super::*;

    fn provenance(shard: &str) -> Provenance {
        Provenance {
            source_file: "in.jsonl".into(),
            source_location: "line 1".into(),
            shard_id: shard.into(),
            attempt_id: "a1".into(),
            provider: "simulated".into(),
            model: "m".into(),
            prompt_hash: "h".into(),
            tokens_in: 10,
            tokens_out: 5,
            cost_usd: 0.5,
            cache_hits: 0,
            cached_from: Vec::new(),
        }
    }

    fn verdict(criterion: u32, met: Option<bool>) -> CriterionVerdict {
        CriterionVerdict {
            criterion,
            met,
            rationale: format!("because {criterion}"),
        }
    }

    fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a ArrayRef {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    fn text(array: &ArrayRef, index: usize) -> Option<String> {
        let strings = array.as_string::<i32>();
        strings
            .is_valid(index)
            .then(|| strings.value(index).to_owned())
    }

    fn boolean(array: &ArrayRef, index: usize) -> Option<bool> {
        let flags: &BooleanArray = array.as_boolean();
        flags.is_valid(index).then(|| flags.value(index))
    }

    fn float(array: &ArrayRef, index: usize) -> Option<f64> {
        let values = array.as_primitive::<Float64Type>();
        values.is_valid(index).then(|| values.value(index))
    }

    /// The struct items of one row of a list column.
    fn items(array: &ArrayRef, index: usize) -> StructArray {
        array.as_list::<i32>().value(index).as_struct().clone()
    }

    fn field<'a>(items: &'a StructArray, name: &str) -> &'a ArrayRef {
        items
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    /// (criterion, met, rationale) of a list of verdict structs.
    fn verdicts(items: &StructArray) -> Vec<(u32, Option<bool>, String)> {
        let criterion = field(items, "criterion").as_primitive::<UInt32Type>();
        (0..items.len())
            .map(|i| {
                (
                    criterion.value(i),
                    boolean(field(items, "met"), i),
                    text(field(items, "rationale"), i).unwrap(),
                )
            })
            .collect()
    }

    fn parquet_round_trip(batch: &RecordBatch) -> RecordBatch {
        let metadata = BTreeMap::from([("rubricmill.job".to_owned(), "t".to_owned())]);
        let bytes = encode_parquet(batch, &metadata).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1);
        batches.into_iter().next().unwrap()
    }

    fn reference_row(id: &str) -> ReferenceRow {
        ReferenceRow {
            id: id.into(),
            source: "in.jsonl".into(),
            prompt: vec![Message::new("user", "q")],
            reference_answer: Some("answer".into()),
            example_tags: vec!["theme:x".into()],
            domain: None,
            rubric: vec![ReferenceCriterion {
                criterion: "says x".into(),
                points: 5,
                tags: vec!["axis:accuracy".into()],
                category: "essential".into(),
            }],
            dropped_criteria: Vec::new(),
            degraded_answer: None,
            degraded_origin: None,
            reference_score: None,
            degraded_score: None,
            reference_verdicts: Vec::new(),
            degraded_verdicts: Vec::new(),
            attempts: 1,
            kept: true,
            drop_reason: None,
            judge_model: String::new(),
            judge_prompt_hash: String::new(),
            provenance: provenance("s1"),
        }
    }

    #[test]
    fn reference_rows_carry_the_self_check_columns() {
        let unchecked = reference_row("r0");
        let checked = ReferenceRow {
            degraded_answer: Some("worse".into()),
            degraded_origin: Some("generated".into()),
            reference_score: Some(0.8),
            degraded_score: Some(0.1),
            reference_verdicts: vec![verdict(0, Some(true)), verdict(1, None)],
            degraded_verdicts: vec![verdict(0, Some(false))],
            attempts: 3,
            kept: false,
            drop_reason: Some("degraded answer scored too high".into()),
            judge_model: "judge".into(),
            judge_prompt_hash: "jh".into(),
            ..reference_row("r1")
        };
        let batch = reference_batch(&[unchecked, checked]).unwrap();
        assert_eq!(batch.schema(), *REFERENCE_SCHEMA);
        assert_eq!(batch.num_rows(), 2);
        for batch in [batch.clone(), parquet_round_trip(&batch)] {
            assert_eq!(text(column(&batch, "degraded_answer"), 0), None);
            assert_eq!(
                text(column(&batch, "degraded_answer"), 1).as_deref(),
                Some("worse")
            );
            assert_eq!(
                text(column(&batch, "degraded_origin"), 1).as_deref(),
                Some("generated")
            );
            assert_eq!(float(column(&batch, "reference_score"), 0), None);
            assert_eq!(float(column(&batch, "reference_score"), 1), Some(0.8));
            assert_eq!(float(column(&batch, "degraded_score"), 1), Some(0.1));
            assert!(verdicts(&items(column(&batch, "reference_verdicts"), 0)).is_empty());
            assert_eq!(
                verdicts(&items(column(&batch, "reference_verdicts"), 1)),
                vec![
                    (0, Some(true), "because 0".to_owned()),
                    (1, None, "because 1".to_owned())
                ]
            );
            assert_eq!(
                verdicts(&items(column(&batch, "degraded_verdicts"), 1)),
                vec![(0, Some(false), "because 0".to_owned())]
            );
            let attempts = column(&batch, "attempts").as_primitive::<UInt32Type>();
            assert_eq!((attempts.value(0), attempts.value(1)), (1, 3));
            assert_eq!(boolean(column(&batch, "kept"), 0), Some(true));
            assert_eq!(boolean(column(&batch, "kept"), 1), Some(false));
            assert_eq!(text(column(&batch, "drop_reason"), 0), None);
            assert_eq!(
                text(column(&batch, "drop_reason"), 1).as_deref(),
                Some("degraded answer scored too high")
            );
            assert_eq!(text(column(&batch, "judge_model"), 0).as_deref(), Some(""));
            assert_eq!(
                text(column(&batch, "judge_prompt_hash"), 1).as_deref(),
                Some("jh")
            );
            // The rubric and provenance still line up.
            let rubric = items(column(&batch, "rubric"), 1);
            assert_eq!(
                text(field(&rubric, "criterion"), 0).as_deref(),
                Some("says x")
            );
            assert_eq!(
                field(&rubric, "points")
                    .as_primitive::<Int32Type>()
                    .value(0),
                5
            );
            assert_eq!(text(column(&batch, "shard_id"), 1).as_deref(), Some("s1"));
        }
    }

    #[test]
    fn reference_columns_come_in_struct_order_before_provenance() {
        let names: Vec<String> = REFERENCE_SCHEMA
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let start = names.iter().position(|n| n == "dropped_criteria").unwrap();
        assert_eq!(
            names[start + 1..start + 13],
            [
                "degraded_answer",
                "degraded_origin",
                "reference_score",
                "degraded_score",
                "reference_verdicts",
                "degraded_verdicts",
                "attempts",
                "kept",
                "drop_reason",
                "judge_model",
                "judge_prompt_hash",
                "source_file",
            ]
        );
    }

    fn nugget(text: &str, passage: &str, supported: Option<bool>) -> rubricmill_core::Nugget {
        rubricmill_core::Nugget {
            nugget: format!("{text}."),
            passage_id: passage.into(),
            span: text.into(),
            span_start: 3,
            span_end: 3 + text.len() as u32,
            importance: "vital".into(),
            supported,
        }
    }

    #[test]
    fn nuggets_rows_encode_passages_and_nuggets() {
        let rows = vec![
            NuggetRow {
                id: "q1".into(),
                source: "in.jsonl".into(),
                question: "why?".into(),
                passages: vec![
                    NuggetPassage {
                        passage_id: "p1".into(),
                        text: "the sky is blue".into(),
                    },
                    NuggetPassage {
                        passage_id: "p2".into(),
                        text: "water is wet".into(),
                    },
                ],
                nuggets: vec![
                    nugget("sky is blue", "p1", Some(true)),
                    rubricmill_core::Nugget {
                        importance: "okay".into(),
                        ..nugget("water", "p2", None)
                    },
                ],
                dropped_nuggets: vec!["span not found: x".into()],
                judge_model: "judge".into(),
                judge_prompt_hash: "jh".into(),
                provenance: provenance("s1"),
            },
            NuggetRow {
                id: "q2".into(),
                source: "in.jsonl".into(),
                question: "empty".into(),
                passages: Vec::new(),
                nuggets: Vec::new(),
                dropped_nuggets: Vec::new(),
                judge_model: String::new(),
                judge_prompt_hash: String::new(),
                provenance: provenance("s2"),
            },
            NuggetRow {
                id: "q3".into(),
                question: "third".into(),
                nuggets: vec![nugget("blue", "p9", Some(false))],
                ..NuggetRow {
                    id: String::new(),
                    source: "b.jsonl".into(),
                    question: String::new(),
                    passages: vec![NuggetPassage {
                        passage_id: "p9".into(),
                        text: "it is blue".into(),
                    }],
                    nuggets: Vec::new(),
                    dropped_nuggets: Vec::new(),
                    judge_model: String::new(),
                    judge_prompt_hash: String::new(),
                    provenance: provenance("s3"),
                }
            },
        ];
        let batch = nuggets_batch(&rows).unwrap();
        assert_eq!(batch.schema(), *NUGGETS_SCHEMA);
        assert_eq!(schema_for(PipelineKind::Nuggets), *NUGGETS_SCHEMA);
        for batch in [batch.clone(), parquet_round_trip(&batch)] {
            assert_eq!(batch.num_rows(), 3);
            assert_eq!(
                text(column(&batch, "question"), 2).as_deref(),
                Some("third")
            );
            let passages = items(column(&batch, "passages"), 0);
            assert_eq!(passages.len(), 2);
            assert_eq!(
                text(field(&passages, "passage_id"), 1).as_deref(),
                Some("p2")
            );
            assert_eq!(
                text(field(&passages, "text"), 1).as_deref(),
                Some("water is wet")
            );
            assert_eq!(items(column(&batch, "passages"), 1).len(), 0);
            let first = items(column(&batch, "nuggets"), 0);
            assert_eq!(first.len(), 2);
            assert_eq!(
                text(field(&first, "nugget"), 0).as_deref(),
                Some("sky is blue.")
            );
            assert_eq!(text(field(&first, "span"), 1).as_deref(), Some("water"));
            assert_eq!(
                text(field(&first, "importance"), 1).as_deref(),
                Some("okay")
            );
            let start = field(&first, "span_start").as_primitive::<UInt32Type>();
            let end = field(&first, "span_end").as_primitive::<UInt32Type>();
            assert_eq!((start.value(0), end.value(0)), (3, 14));
            assert_eq!(boolean(field(&first, "supported"), 0), Some(true));
            assert_eq!(boolean(field(&first, "supported"), 1), None);
            assert_eq!(items(column(&batch, "nuggets"), 1).len(), 0);
            let third = items(column(&batch, "nuggets"), 2);
            assert_eq!(text(field(&third, "passage_id"), 0).as_deref(), Some("p9"));
            assert_eq!(boolean(field(&third, "supported"), 0), Some(false));
            let dropped = column(&batch, "dropped_nuggets").as_list::<i32>();
            assert_eq!((dropped.value_length(0), dropped.value_length(1)), (1, 0));
            assert_eq!(
                text(&dropped.value(0), 0).as_deref(),
                Some("span not found: x")
            );
            assert_eq!(text(column(&batch, "judge_model"), 1).as_deref(), Some(""));
            assert_eq!(text(column(&batch, "shard_id"), 2).as_deref(), Some("s3"));
        }
    }

    fn response(id: &str, verdicts: Vec<CriterionVerdict>, score: Option<f64>) -> ScoredResponse {
        ScoredResponse {
            response_id: id.into(),
            origin: "input".into(),
            text: format!("text of {id}"),
            verdicts,
            score,
            hard_rules_met: None,
        }
    }

    fn score_row(id: &str) -> ScoreRow {
        ScoreRow {
            id: id.into(),
            source: "in.jsonl".into(),
            rubric_layout: "crg".into(),
            prompt: vec![Message::new("user", "hi")],
            rubric: Vec::new(),
            responses: Vec::new(),
            label: None,
            predicted: None,
            agrees: None,
            judge_model: "judge".into(),
            judge_prompt_hash: "jh".into(),
            provenance: provenance("s1"),
        }
    }

    #[test]
    fn score_rows_encode_responses_with_nested_verdicts() {
        let graded = ScoreRow {
            rubric: vec![
                ScoreCriterion {
                    criterion: "must greet".into(),
                    points: 1,
                    kind: "hard_rule".into(),
                },
                ScoreCriterion {
                    criterion: "is rude".into(),
                    points: -5,
                    kind: "pitfall".into(),
                },
            ],
            responses: vec![
                ScoredResponse {
                    hard_rules_met: Some(true),
                    ..response(
                        "chosen",
                        vec![verdict(0, Some(true)), verdict(1, Some(false))],
                        Some(1.0),
                    )
                },
                ScoredResponse {
                    origin: "generated".into(),
                    hard_rules_met: Some(false),
                    ..response("rejected", vec![verdict(0, None)], Some(0.0))
                },
            ],
            label: Some("chosen".into()),
            predicted: Some("chosen".into()),
            agrees: Some(true),
            ..score_row("s-1")
        };
        let empty = score_row("s-2");
        let unusable = ScoreRow {
            responses: vec![response("response_0", Vec::new(), None)],
            ..score_row("s-3")
        };
        let batch = score_batch(&[graded, empty, unusable]).unwrap();
        assert_eq!(batch.schema(), *SCORE_SCHEMA);
        assert_eq!(schema_for(PipelineKind::Score), *SCORE_SCHEMA);
        for batch in [batch.clone(), parquet_round_trip(&batch)] {
            assert_eq!(batch.num_rows(), 3);
            assert_eq!(
                text(column(&batch, "rubric_layout"), 0).as_deref(),
                Some("crg")
            );
            let prompt = items(column(&batch, "prompt"), 0);
            assert_eq!(text(field(&prompt, "content"), 0).as_deref(), Some("hi"));
            let rubric = items(column(&batch, "rubric"), 0);
            assert_eq!(rubric.len(), 2);
            assert_eq!(text(field(&rubric, "kind"), 1).as_deref(), Some("pitfall"));
            assert_eq!(
                field(&rubric, "points")
                    .as_primitive::<Int32Type>()
                    .value(1),
                -5
            );
            assert_eq!(items(column(&batch, "rubric"), 1).len(), 0);

            let responses = items(column(&batch, "responses"), 0);
            assert_eq!(responses.len(), 2);
            assert_eq!(
                text(field(&responses, "response_id"), 1).as_deref(),
                Some("rejected")
            );
            assert_eq!(
                text(field(&responses, "origin"), 1).as_deref(),
                Some("generated")
            );
            assert_eq!(
                text(field(&responses, "text"), 0).as_deref(),
                Some("text of chosen")
            );
            assert_eq!(float(field(&responses, "score"), 0), Some(1.0));
            assert_eq!(boolean(field(&responses, "hard_rules_met"), 1), Some(false));
            assert_eq!(
                verdicts(&items(field(&responses, "verdicts"), 0)),
                vec![
                    (0, Some(true), "because 0".to_owned()),
                    (1, Some(false), "because 1".to_owned())
                ]
            );
            assert_eq!(
                verdicts(&items(field(&responses, "verdicts"), 1)),
                vec![(0, None, "because 0".to_owned())]
            );
            assert_eq!(items(column(&batch, "responses"), 1).len(), 0);
            let last = items(column(&batch, "responses"), 2);
            assert_eq!(
                text(field(&last, "response_id"), 0).as_deref(),
                Some("response_0")
            );
            assert_eq!(float(field(&last, "score"), 0), None);
            assert_eq!(boolean(field(&last, "hard_rules_met"), 0), None);
            assert!(verdicts(&items(field(&last, "verdicts"), 0)).is_empty());

            assert_eq!(text(column(&batch, "label"), 0).as_deref(), Some("chosen"));
            assert_eq!(text(column(&batch, "label"), 1), None);
            assert_eq!(text(column(&batch, "predicted"), 2), None);
            assert_eq!(boolean(column(&batch, "agrees"), 0), Some(true));
            assert_eq!(boolean(column(&batch, "agrees"), 1), None);
            assert_eq!(
                text(column(&batch, "judge_model"), 2).as_deref(),
                Some("judge")
            );
        }
    }

    #[test]
    fn empty_batches_encode_for_every_pipeline() {
        assert_eq!(reference_batch(&[]).unwrap().num_rows(), 0);
        assert_eq!(nuggets_batch(&[]).unwrap().num_rows(), 0);
        assert_eq!(score_batch(&[]).unwrap().num_rows(), 0);
        assert_eq!(schema_for(PipelineKind::Crg), *CRG_SCHEMA);
        assert_eq!(schema_for(PipelineKind::Researchqa), *RESEARCHQA_SCHEMA);
        assert_eq!(schema_for(PipelineKind::Reference), *REFERENCE_SCHEMA);
    }
}
