//! Interchange formats written as Parquet ([`Layout::Parquet`]): the explicit Arrow schema of
//! each (format, pipeline), and the encoding of the converted JSON values
//! (`rubricmill_mine::formats::convert_all`) into record batches of that schema through
//! `arrow_json`'s decoder, in strict mode, so a conversion that drifts from its schema fails
//! the export instead of writing nulls.
//!
//! `healthbench` is the verl rubric layout of `healthbench_val.parquet`: every field nullable,
//! list items named `element` (as the reference file, written by `datasets`, has them),
//! `points` int64:
//!
//! ```text
//! prompt: list<struct<content: string, role: string>>
//! data_source: string
//! ability: string
//! reward_model: struct<ground_truth: string,
//!                      rubrics: list<struct<criterion: string, points: int64, tags: list<string>>>,
//!                      style: string>
//! extra_info: struct<prompt: (as prompt), reward_model: (as reward_model),
//!                    pair_id: string, rubric_id: string>             (crg)
//!             struct<prompt, reward_model, prompt_id: string,
//!                    example_tags: list<string>>                     (reference)
//! ```

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::Decoder;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use rubricmill_core::PipelineKind;
use rubricmill_mine::formats::{InterchangeFormat, Layout};
use serde_json::Value;

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("element", item, true)))
}

fn string(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn verl_prompt() -> Field {
    Field::new(
        "prompt",
        list(DataType::Struct(Fields::from(vec![
            string("content"),
            string("role"),
        ]))),
        true,
    )
}

fn verl_reward_model() -> Field {
    let criterion = DataType::Struct(Fields::from(vec![
        string("criterion"),
        Field::new("points", DataType::Int64, true),
        Field::new("tags", list(DataType::Utf8), true),
    ]));
    Field::new(
        "reward_model",
        DataType::Struct(Fields::from(vec![
            string("ground_truth"),
            Field::new("rubrics", list(criterion), true),
            string("style"),
        ])),
        true,
    )
}

/// The verl layout, with `extra` fields after `extra_info.prompt` and `extra_info.reward_model`.
fn verl_schema(extra: Vec<Field>) -> Schema {
    let mut extra_info = vec![verl_prompt(), verl_reward_model()];
    extra_info.extend(extra);
    Schema::new(vec![
        verl_prompt(),
        string("data_source"),
        string("ability"),
        verl_reward_model(),
        Field::new(
            "extra_info",
            DataType::Struct(Fields::from(extra_info)),
            true,
        ),
    ])
}

/// The Arrow schema of a Parquet interchange format's rows from a `pipeline` job; `None` for
/// JSON formats and formats that do not hold the pipeline's rows.
pub fn parquet_schema(format: InterchangeFormat, pipeline: PipelineKind) -> Option<SchemaRef> {
    if format.layout() != Layout::Parquet || !format.accepts(pipeline) {
        return None;
    }
    let schema = match (format, pipeline) {
        (InterchangeFormat::Healthbench, PipelineKind::Crg) => {
            verl_schema(vec![string("pair_id"), string("rubric_id")])
        }
        (InterchangeFormat::Healthbench, PipelineKind::Reference) => verl_schema(vec![
            string("prompt_id"),
            Field::new("example_tags", list(DataType::Utf8), true),
        ]),
        _ => return None,
    };
    Some(Arc::new(schema))
}

/// Encodes converted values into record batches of one schema.
pub struct Encoder {
    decoder: Decoder,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new(schema: SchemaRef) -> Result<Self, ArrowError> {
        let decoder = arrow_json::ReaderBuilder::new(schema)
            .with_strict_mode(true)
            .build_decoder()?;
        Ok(Self { decoder })
    }

    /// The values as one record batch; `None` for no values.
    pub fn encode(&mut self, values: &[Value]) -> Result<Option<RecordBatch>, ArrowError> {
        if values.is_empty() {
            return Ok(None);
        }
        self.decoder.serialize(values)?;
        self.decoder.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::{Array, ListArray, StructArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use rubricmill_mine::formats::convert;
    use serde_json::json;

    fn reference_row(id: &str) -> Value {
        json!({
            "id": id,
            "source": "prompts.jsonl",
            "prompt": [
                {"role": "user", "content": "My throat hurts."},
                {"role": "assistant", "content": "Since when?"},
                {"role": "user", "content": "Two days. What helps?"}
            ],
            "reference_answer": "Warm drinks and rest.",
            "example_tags": ["theme:communication"],
            "domain": "medical_chat",
            "rubric": [
                {"criterion": "Suggests warm drinks or rest.", "points": 6, "tags": ["axis:completeness", "level:example"], "category": "important"},
                {"criterion": "Recommends antibiotics.", "points": -8, "tags": ["axis:accuracy"], "category": "pitfall"}
            ],
            "dropped_criteria": [],
            "attempts": 1,
            "kept": true,
            "judge_model": "",
            "judge_prompt_hash": ""
        })
    }

    fn crg_row() -> Value {
        json!({
            "pair_id": "p1", "rubric_id": "r1", "source": "pairs.jsonl", "kept": true,
            "prompt": [{"role": "user", "content": "What helps a cold?"}],
            "chosen": "Rest.", "rejected": "Nothing.",
            "rubric": [{"text": "Suggests rest.", "kind": "hard_rule"}, {"text": "Is short.", "kind": "principle"}],
            "verdicts": [], "attempts": 1, "attempt_log": [],
        })
    }

    /// Writes `values` to Parquet through [`Encoder`] and reads the file back.
    fn round_trip(schema: SchemaRef, values: &[Value]) -> RecordBatch {
        let batch = Encoder::new(schema.clone())
            .unwrap()
            .encode(values)
            .unwrap()
            .unwrap();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        let bytes = writer.into_inner().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches.len(), 1);
        batches.into_iter().next().unwrap()
    }

    /// `name: type` of every field, depth first, for comparing layouts.
    fn layout(fields: &Fields, prefix: &str, out: &mut Vec<String>) {
        for field in fields {
            let path = format!("{prefix}{}", field.name());
            match field.data_type() {
                DataType::Struct(children) => {
                    out.push(format!("{path}: struct"));
                    layout(children, &format!("{path}."), out);
                }
                DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
                    DataType::Struct(children) => {
                        out.push(format!("{path}: list<struct>"));
                        layout(children, &format!("{path}[]."), out);
                    }
                    other => out.push(format!("{path}: list<{other}>")),
                },
                DataType::LargeUtf8 | DataType::Utf8View => out.push(format!("{path}: Utf8")),
                other => out.push(format!("{path}: {other}")),
            }
        }
    }

    fn verl_layout() -> Vec<String> {
        let prompt = [
            "prompt: list<struct>",
            "prompt[].content: Utf8",
            "prompt[].role: Utf8",
        ];
        let reward = [
            "reward_model: struct",
            "reward_model.ground_truth: Utf8",
            "reward_model.rubrics: list<struct>",
            "reward_model.rubrics[].criterion: Utf8",
            "reward_model.rubrics[].points: Int64",
            "reward_model.rubrics[].tags: list<Utf8>",
            "reward_model.style: Utf8",
        ];
        let mut out: Vec<String> = prompt.iter().map(|s| s.to_string()).collect();
        out.push("data_source: Utf8".into());
        out.push("ability: Utf8".into());
        out.extend(reward.iter().map(|s| s.to_string()));
        out.push("extra_info: struct".into());
        out.extend(prompt.iter().map(|s| format!("extra_info.{s}")));
        out.extend(reward.iter().map(|s| format!("extra_info.{s}")));
        out
    }

    #[test]
    fn reference_rows_round_trip_through_parquet_in_the_verl_layout() {
        let schema =
            parquet_schema(InterchangeFormat::Healthbench, PipelineKind::Reference).unwrap();
        let values: Vec<Value> = ["r1", "r2"]
            .iter()
            .map(|id| {
                convert(
                    InterchangeFormat::Healthbench,
                    PipelineKind::Reference,
                    &reference_row(id),
                )
                .unwrap()
                .unwrap()
            })
            .collect();
        let batch = round_trip(schema.clone(), &values);
        assert_eq!(batch.num_rows(), 2);
        let mut got = Vec::new();
        layout(batch.schema().fields(), "", &mut got);
        let mut expected = verl_layout();
        expected.extend([
            "extra_info.prompt_id: Utf8".to_owned(),
            "extra_info.example_tags: list<Utf8>".to_owned(),
        ]);
        assert_eq!(got, expected);
        assert_eq!(batch.schema(), schema);
        // values survive: strings, int64 points (negative for pitfalls), tags
        let data_source = batch
            .column_by_name("data_source")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(data_source.value(0), "rubricmill_reference");
        let ability = batch.column_by_name("ability").unwrap().as_string::<i32>();
        assert_eq!(ability.value(1), "medical_chat");
        let reward = batch.column_by_name("reward_model").unwrap().as_struct();
        let style = reward.column_by_name("style").unwrap().as_string::<i32>();
        assert_eq!(style.value(0), "rubric");
        let ground_truth = reward
            .column_by_name("ground_truth")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ground_truth.value(0), "");
        let rubrics: &ListArray = reward.column_by_name("rubrics").unwrap().as_list::<i32>();
        let first = rubrics.value(0);
        let first: &StructArray = first.as_struct();
        let points = first
            .column_by_name("points")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(points.values().to_vec(), vec![6, -8]);
        let tags = first.column_by_name("tags").unwrap().as_list::<i32>();
        assert_eq!(tags.value(1).as_string::<i32>().value(0), "axis:accuracy");
        let extra = batch.column_by_name("extra_info").unwrap().as_struct();
        let prompt_id = extra
            .column_by_name("prompt_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(prompt_id.value(1), "r2");
        let prompt = batch.column_by_name("prompt").unwrap().as_list::<i32>();
        assert_eq!(prompt.value(0).len(), 3);
        assert_eq!(batch.column_by_name("prompt").unwrap().null_count(), 0);
    }

    #[test]
    fn crg_rows_round_trip_through_parquet_in_the_verl_layout() {
        let schema = parquet_schema(InterchangeFormat::Healthbench, PipelineKind::Crg).unwrap();
        let value = convert(
            InterchangeFormat::Healthbench,
            PipelineKind::Crg,
            &crg_row(),
        )
        .unwrap()
        .unwrap();
        let batch = round_trip(schema, &[value]);
        let mut got = Vec::new();
        layout(batch.schema().fields(), "", &mut got);
        let mut expected = verl_layout();
        expected.extend([
            "extra_info.pair_id: Utf8".to_owned(),
            "extra_info.rubric_id: Utf8".to_owned(),
        ]);
        assert_eq!(got, expected);
        let reward = batch.column_by_name("reward_model").unwrap().as_struct();
        let rubrics = reward.column_by_name("rubrics").unwrap().as_list::<i32>();
        let first = rubrics.value(0);
        let points = first
            .as_struct()
            .column_by_name("points")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(points.values().to_vec(), vec![10, 5]);
    }

    /// The released file's layout, when `../shared/corpus` is there: our schema has every
    /// field it has, with the same types (extra_info has more).
    #[test]
    fn the_schema_matches_the_released_healthbench_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/corpus/reference/healthbench_val.parquet");
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping: {} not found", path.display());
            return;
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).unwrap();
        let mut theirs = Vec::new();
        layout(builder.schema().fields(), "", &mut theirs);
        assert_eq!(theirs, verl_layout());
        for pipeline in [PipelineKind::Crg, PipelineKind::Reference] {
            let ours = parquet_schema(InterchangeFormat::Healthbench, pipeline).unwrap();
            let mut got = Vec::new();
            layout(ours.fields(), "", &mut got);
            assert_eq!(&got[..theirs.len()], &theirs[..]);
        }
    }

    #[test]
    fn json_formats_and_foreign_pipelines_have_no_parquet_schema() {
        assert!(parquet_schema(InterchangeFormat::HealthbenchJsonl, PipelineKind::Crg).is_none());
        assert!(parquet_schema(InterchangeFormat::Healthbench, PipelineKind::Score).is_none());
        assert!(parquet_schema(InterchangeFormat::Rewards, PipelineKind::Score).is_none());
    }

    #[test]
    fn values_that_drift_from_the_schema_are_refused() {
        let schema = parquet_schema(InterchangeFormat::Healthbench, PipelineKind::Crg).unwrap();
        let mut encoder = Encoder::new(schema).unwrap();
        assert!(encoder.encode(&[json!({"unexpected": 1})]).is_err());
    }
}
