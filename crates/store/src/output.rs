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
use rubricmill_core::{CrgRow, Provenance, ReferenceRow, RejectRow, ResearchQaRow};

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

/// Schema of reference rows: the record, its HealthBench-style rubric, then provenance.
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
    ];
    fields.extend(provenance_fields());
    Arc::new(Schema::new(fields))
});

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
        pair_list(
            rows,
            message_fields(),
            |r| r.prompt.as_slice(),
            |m| (m.role.as_str(), m.content.as_str()),
        ),
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
    let mut columns = vec![
        strings(rows.iter().map(|r| r.id.as_str())),
        strings(rows.iter().map(|r| r.source.as_str())),
        pair_list(
            rows,
            message_fields(),
            |r| r.prompt.as_slice(),
            |m| (m.role.as_str(), m.content.as_str()),
        ),
        optional_strings(rows.iter().map(|r| r.reference_answer.as_deref())),
        string_list(rows, |r| r.example_tags.as_slice()),
        optional_strings(rows.iter().map(|r| r.domain.as_deref())),
        list(
            DataType::Struct(reference_criterion_fields()),
            rows.iter().map(|r| r.rubric.len()),
            Arc::new(criterion_struct),
        ),
        string_list(rows, |r| r.dropped_criteria.as_slice()),
    ];
    push_provenance(&mut columns, rows.iter().map(|r| &r.provenance));
    batch(&REFERENCE_SCHEMA, columns)
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
