//! Interchange formats for training teams. `rubricmill export --format …` reads committed rows
//! as JSON objects (one per row, columns as fields, as Arrow's JSON writer renders our Parquet
//! schemas) and converts each with [`convert`]. A format accepts the rows of one or more
//! pipelines ([`InterchangeFormat::accepts`]); each (format, pipeline) conversion lives in the
//! module of the pipeline it reads: `researchqa` (`researchqa-json`), `crg` (`openrubric`,
//! `healthbench`, `healthbench-jsonl`), `reference` (`healthbench`, `healthbench-jsonl`) and
//! `score` (`judge-sft`, `rewards`).
//!
//! Conversions always produce JSON values; [`Layout`] says how a file holds them. The
//! `healthbench` layout is Parquet: the exporter encodes the converted values into record
//! batches with an explicit Arrow schema for the (format, pipeline), so the JSON values here
//! name exactly that schema's fields.

use rubricmill_core::PipelineKind;
use serde_json::{Map, Value, json};

mod crg;
mod reference;
mod researchqa;
mod score;

/// An interchange format `export` can write besides Parquet and plain JSONL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterchangeFormat {
    /// The released ResearchQA JSON layout, readable by its evaluation loader.
    ResearchqaJson,
    /// OpenRubrics v2: `instruction, response_a, response_b, winner, rubric`.
    Openrubric,
    /// The verl rubric layout of `healthbench_val.parquet`, as Parquet: `prompt`,
    /// `data_source`, `ability`, `reward_model: {ground_truth, rubrics: [{criterion, points,
    /// tags}], style}`, `extra_info`.
    Healthbench,
    /// HealthBench's own JSONL layout: `prompt`, `rubrics`, `example_tags`, `prompt_id`,
    /// `ideal_completions_data`.
    HealthbenchJsonl,
    /// Judge training data: chat `messages` (system, user with the rubric and responses,
    /// assistant with per-criterion verdicts).
    JudgeSft,
    /// RL reward data: one `{prompt, response, reward, …}` line per scored response.
    Rewards,
}

/// How converted rows are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One JSON value per line.
    JsonLines,
    /// One JSON array holding every value.
    JsonArray,
    /// Parquet: the values encoded with the Arrow schema the exporter holds for the
    /// (format, pipeline).
    Parquet,
}

impl InterchangeFormat {
    /// Every format, in the order the CLI lists them.
    pub const ALL: [InterchangeFormat; 6] = [
        Self::ResearchqaJson,
        Self::Openrubric,
        Self::Healthbench,
        Self::HealthbenchJsonl,
        Self::JudgeSft,
        Self::Rewards,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|format| format.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ResearchqaJson => "researchqa-json",
            Self::Openrubric => "openrubric",
            Self::Healthbench => "healthbench",
            Self::HealthbenchJsonl => "healthbench-jsonl",
            Self::JudgeSft => "judge-sft",
            Self::Rewards => "rewards",
        }
    }

    /// The pipelines whose rows this format holds.
    pub fn pipelines(self) -> &'static [PipelineKind] {
        match self {
            Self::ResearchqaJson => &[PipelineKind::Researchqa],
            Self::Openrubric => &[PipelineKind::Crg],
            Self::Healthbench | Self::HealthbenchJsonl => {
                &[PipelineKind::Crg, PipelineKind::Reference]
            }
            Self::JudgeSft | Self::Rewards => &[PipelineKind::Score],
        }
    }

    /// Whether this format holds rows of `pipeline`.
    pub fn accepts(self, pipeline: PipelineKind) -> bool {
        self.pipelines().contains(&pipeline)
    }

    /// The pipelines this format holds, for messages: `"crg or reference"`.
    pub fn pipelines_text(self) -> String {
        let names: Vec<&str> = self.pipelines().iter().map(|p| p.as_str()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    pub fn layout(self) -> Layout {
        match self {
            Self::ResearchqaJson => researchqa::LAYOUT,
            Self::Openrubric => crg::OPENRUBRIC_LAYOUT,
            Self::Healthbench => Layout::Parquet,
            Self::HealthbenchJsonl | Self::JudgeSft | Self::Rewards => Layout::JsonLines,
        }
    }

    /// File extension of a converted split.
    pub fn extension(self) -> &'static str {
        match self.layout() {
            Layout::JsonLines => "jsonl",
            Layout::JsonArray => "json",
            Layout::Parquet => "parquet",
        }
    }
}

/// Converts one output row of a `pipeline` job into `format` values: none (the row is left
/// out, e.g. a rubric the self-check or consistency filter dropped), one, or several (the
/// `rewards` and single-response `judge-sft` records, one per response). A format that does
/// not hold the pipeline's rows is an error naming both.
pub fn convert_all(
    format: InterchangeFormat,
    pipeline: PipelineKind,
    row: &Value,
) -> Result<Vec<Value>, String> {
    use InterchangeFormat as F;
    use PipelineKind as P;
    let one = |value: Result<Option<Value>, String>| value.map(|v| v.into_iter().collect());
    match (format, pipeline) {
        (F::ResearchqaJson, P::Researchqa) => one(researchqa::to_researchqa_json(row)),
        (F::Openrubric, P::Crg) => one(crg::to_openrubric(row)),
        (F::Healthbench, P::Crg) => one(crg::to_healthbench(row)),
        (F::Healthbench, P::Reference) => one(reference::to_healthbench(row)),
        (F::HealthbenchJsonl, P::Crg) => one(crg::to_healthbench_jsonl(row)),
        (F::HealthbenchJsonl, P::Reference) => one(reference::to_healthbench_jsonl(row)),
        (F::JudgeSft, P::Score) => score::to_judge_sft(row),
        (F::Rewards, P::Score) => score::to_rewards(row),
        _ => Err(format!(
            "{} holds {} rows, not {} rows",
            format.name(),
            format.pipelines_text(),
            pipeline.as_str()
        )),
    }
}

/// Converts one output row of a `pipeline` job for formats that write at most one value per
/// row; `Ok(None)` leaves the row out of this format. For formats that may write several
/// values per row (`judge-sft`, `rewards`) it gives the first; use [`convert_all`].
pub fn convert(
    format: InterchangeFormat,
    pipeline: PipelineKind,
    row: &Value,
) -> Result<Option<Value>, String> {
    Ok(convert_all(format, pipeline, row)?.into_iter().next())
}

/// A prompt as readable text: the user's text alone for a single user turn, otherwise every
/// turn as `"User: …"` / `"Assistant: …"` / `"System: …"`, joined by `separator`.
fn prompt_text(prompt: &[(&str, &str)], separator: &str) -> String {
    if let [("user", content)] = prompt {
        return (*content).to_owned();
    }
    prompt
        .iter()
        .map(|(role, content)| {
            let mut chars = role.chars();
            let role: String = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            format!("{role}: {content}")
        })
        .collect::<Vec<_>>()
        .join(separator)
}

/// A prompt as chat messages, `[{role, content}]`.
fn chat_messages(prompt: &[(&str, &str)]) -> Vec<Value> {
    prompt
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect()
}

/// One row of the verl rubric layout: `prompt` (`[{content, role}]`), `data_source`,
/// `ability`, `reward_model` (`{ground_truth: "", rubrics, style: "rubric"}`) and `extra_info`
/// (`prompt` and `reward_model` again, then `extra`).
fn verl_row(
    prompt: &[(&str, &str)],
    rubrics: Vec<Value>,
    data_source: &str,
    ability: &str,
    extra: Vec<(&str, Value)>,
) -> Value {
    let prompt: Vec<Value> = prompt
        .iter()
        .map(|(role, content)| json!({"content": content, "role": role}))
        .collect();
    let reward_model = json!({
        "ground_truth": "",
        "rubrics": rubrics,
        "style": "rubric",
    });
    let mut extra_info = Map::new();
    extra_info.insert("prompt".into(), Value::Array(prompt.clone()));
    extra_info.insert("reward_model".into(), reward_model.clone());
    for (key, value) in extra {
        extra_info.insert(key.into(), value);
    }
    json!({
        "prompt": prompt,
        "data_source": data_source,
        "ability": ability,
        "reward_model": reward_model,
        "extra_info": extra_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_name_their_pipelines() {
        for format in InterchangeFormat::ALL {
            assert_eq!(InterchangeFormat::parse(format.name()), Some(format));
            assert!(!format.pipelines().is_empty());
        }
        assert_eq!(InterchangeFormat::parse("csv"), None);
        let healthbench = InterchangeFormat::Healthbench;
        assert!(healthbench.accepts(PipelineKind::Crg));
        assert!(healthbench.accepts(PipelineKind::Reference));
        assert!(!healthbench.accepts(PipelineKind::Score));
        assert_eq!(healthbench.pipelines_text(), "crg or reference");
        assert_eq!(healthbench.extension(), "parquet");
        assert_eq!(InterchangeFormat::HealthbenchJsonl.extension(), "jsonl");
        let err = convert(
            InterchangeFormat::JudgeSft,
            PipelineKind::Crg,
            &serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("judge-sft") && err.contains("score") && err.contains("crg"));
    }
}
