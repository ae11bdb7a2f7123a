//! The crg interchange formats. Each reads a committed crg row as Arrow's JSON writer renders it
//! (columns as fields, `prompt` a list of `{role, content}`, `rubric` a list of `{text, kind}`,
//! null columns possibly absent) and leaves out rows the consistency filter dropped
//! (`kept = false` gives `Ok(None)`).
//!
//! # openrubric
//!
//! OpenRubrics v2 rows: `{instruction, response_a, response_b, winner, rubric}`.
//! `instruction` is the prompt: the user's text for a single-turn prompt, otherwise every turn
//! as `"User: …"` / `"Assistant: …"` / `"System: …"` paragraphs. The chosen response is
//! `response_a` or `response_b` by a hash of the pair id (so winners are balanced between A and
//! B and the same pair always lands the same way); `winner` is `"A"` or `"B"`. `rubric` is the
//! numbered text rubric, one item a line: `"1. The response … [Hard Rule]"`,
//! `"2. The response … [Principle]"`.
//!
//! # healthbench (Parquet)
//!
//! The HealthBench / verl rubric layout of `healthbench_val.parquet`, written as Parquet (the
//! file verl-style RL trainers read):
//!
//! ```text
//! prompt: list<struct<content: string, role: string>>
//! data_source: string                      "rubricmill_crg"
//! ability: string                          "preference"
//! reward_model: struct<ground_truth: string ("" as in HealthBench),
//!                      rubrics: list<struct<criterion: string, points: int64, tags: list<string>>>,
//!                      style: string ("rubric")>
//! extra_info: struct<prompt, reward_model (both as above), pair_id: string, rubric_id: string>
//! ```
//!
//! Each rubric item becomes one criterion, its text verbatim (trimmed):
//!
//! | kind | points | tags |
//! |---|---|---|
//! | hard rule | 10 | `level:example`, `axis:instruction_following`, `kind:hard_rule` |
//! | principle | 5 | `level:example`, `axis:principle`, `kind:principle` |
//!
//! Hard rules are the explicit requirements of the prompt, so they carry HealthBench's top
//! weight and its instruction-following axis; principles are the qualities that made the chosen
//! response better, worth half as much, on an axis of their own (they are not sorted into
//! HealthBench's accuracy / completeness / communication axes). All points are positive: CRG
//! items say what a good response does, never a penalised behaviour. `level:example` marks
//! criteria written for this one prompt, as HealthBench's per-example criteria are.
//!
//! # healthbench-jsonl
//!
//! HealthBench's own JSONL layout (the `simple-evals` HealthBench files), one line per row:
//! `{prompt: [{role, content}], rubrics: [{criterion, points, tags}], example_tags: [],
//! prompt_id}` with the criteria of the table above and `prompt_id` the pair id. A crg row has
//! no reference answer, so `ideal_completions_data` is left out (the chosen response is only
//! the better of two, not an ideal completion).

use serde_json::{Value, json};

use super::{Layout, chat_messages, prompt_text, verl_row};
use crate::crg::numbered_rubric;

pub(super) const OPENRUBRIC_LAYOUT: Layout = Layout::JsonLines;

/// Points of a hard rule in the healthbench format.
pub const HARD_RULE_POINTS: i64 = 10;
/// Points of a principle in the healthbench format.
pub const PRINCIPLE_POINTS: i64 = 5;

/// The fields both formats need, read from a row.
struct Row<'a> {
    pair_id: &'a str,
    rubric_id: &'a str,
    prompt: Vec<(&'a str, &'a str)>,
    chosen: &'a str,
    rejected: &'a str,
    rubric: Vec<(&'a str, &'a str)>,
}

fn field<'a>(row: &'a Value, name: &str) -> Result<&'a Value, String> {
    row.get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("crg row has no {name:?} field"))
}

fn string<'a>(row: &'a Value, name: &str) -> Result<&'a str, String> {
    field(row, name)?
        .as_str()
        .ok_or_else(|| format!("crg row field {name:?} is not a string"))
}

/// `(a, b)` string pairs of a list-of-structs field.
fn pairs<'a>(
    row: &'a Value,
    name: &str,
    a: &str,
    b: &str,
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let list = field(row, name)?
        .as_array()
        .ok_or_else(|| format!("crg row field {name:?} is not a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let get = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("crg row field {name}[{i}] has no string {key:?}"))
            };
            Ok((get(a)?, get(b)?))
        })
        .collect()
}

/// The row's fields, or `None` when the filter dropped it.
fn read(row: &Value) -> Result<Option<Row<'_>>, String> {
    if !row.is_object() {
        return Err("crg row is not a JSON object".into());
    }
    let kept = match row.get("kept") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(kept)) => *kept,
        Some(_) => return Err("crg row field \"kept\" is not a boolean".into()),
    };
    if !kept {
        return Ok(None);
    }
    let pair_id = string(row, "pair_id")?;
    let rubric = pairs(row, "rubric", "text", "kind")?;
    if rubric.is_empty() {
        return Err(format!("crg row {pair_id} has an empty rubric"));
    }
    Ok(Some(Row {
        pair_id,
        rubric_id: row
            .get("rubric_id")
            .and_then(Value::as_str)
            .unwrap_or(pair_id),
        prompt: pairs(row, "prompt", "role", "content")?,
        chosen: string(row, "chosen")?,
        rejected: string(row, "rejected")?,
        rubric,
    }))
}

fn is_hard_rule(kind: &str) -> bool {
    kind == "hard_rule"
}

/// True when the chosen response goes in slot A (by the pair id's hash).
fn chosen_is_a(pair_id: &str) -> bool {
    let hash = rubricmill_core::content_hash(pair_id.as_bytes());
    u8::from_str_radix(&hash[..2], 16).is_ok_and(|byte| byte % 2 == 0)
}

pub(super) fn to_openrubric(row: &Value) -> Result<Option<Value>, String> {
    let Some(row) = read(row)? else {
        return Ok(None);
    };
    let a_is_chosen = chosen_is_a(row.pair_id);
    let (a, b, winner) = if a_is_chosen {
        (row.chosen, row.rejected, "A")
    } else {
        (row.rejected, row.chosen, "B")
    };
    let rubric = numbered_rubric(row.rubric.iter().map(|(text, kind)| (text.trim(), *kind)));
    Ok(Some(json!({
        "instruction": prompt_text(&row.prompt, "\n\n"),
        "response_a": a,
        "response_b": b,
        "winner": winner,
        "rubric": rubric,
    })))
}

/// The healthbench criteria of a crg rubric: `{criterion, points, tags}` per item.
fn criteria(rubric: &[(&str, &str)]) -> Vec<Value> {
    rubric
        .iter()
        .map(|(text, kind)| {
            let (points, axis, kind) = if is_hard_rule(kind) {
                (HARD_RULE_POINTS, "axis:instruction_following", "hard_rule")
            } else {
                (PRINCIPLE_POINTS, "axis:principle", "principle")
            };
            json!({
                "criterion": text.trim(),
                "points": points,
                "tags": ["level:example", axis, format!("kind:{kind}")],
            })
        })
        .collect()
}

pub(super) fn to_healthbench(row: &Value) -> Result<Option<Value>, String> {
    let Some(row) = read(row)? else {
        return Ok(None);
    };
    Ok(Some(verl_row(
        &row.prompt,
        criteria(&row.rubric),
        "rubricmill_crg",
        "preference",
        vec![
            ("pair_id", row.pair_id.into()),
            ("rubric_id", row.rubric_id.into()),
        ],
    )))
}

pub(super) fn to_healthbench_jsonl(row: &Value) -> Result<Option<Value>, String> {
    let Some(row) = read(row)? else {
        return Ok(None);
    };
    Ok(Some(json!({
        "prompt": chat_messages(&row.prompt),
        "rubrics": criteria(&row.rubric),
        "example_tags": [],
        "prompt_id": row.pair_id,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{InterchangeFormat, convert as convert_any};
    use rubricmill_core::PipelineKind;

    fn convert(format: InterchangeFormat, row: &Value) -> Result<Option<Value>, String> {
        convert_any(format, PipelineKind::Crg, row)
    }

    /// A committed row as Arrow's JSON writer renders it (null `drop_reason` left out).
    fn row(pair_id: &str, kept: bool) -> Value {
        json!({
            "pair_id": pair_id,
            "source": "pairs.jsonl",
            "prompt": [{"role": "user", "content": "Give me three pasta sauces, in French."}],
            "chosen": "Pesto, carbonara, arrabbiata.",
            "rejected": "Pasta is great.",
            "rubric": [
                {"text": "The response names three sauces.", "kind": "hard_rule"},
                {"text": " The response is written in French. ", "kind": "hard_rule"},
                {"text": "The response is concise.", "kind": "principle"}
            ],
            "verdicts": [{"order": "chosen_first", "preferred": "chosen"}, {"order": "rejected_first", "preferred": "chosen"}],
            "consistency": 1.0,
            "attempts": 1,
            "kept": kept,
            "rubric_id": pair_id,
            "attempt_log": [],
            "judge_model": "j",
            "judge_prompt_hash": "h",
            "model": "m"
        })
    }

    #[test]
    fn openrubric_rows_carry_the_numbered_rubric_and_the_winner() {
        let out = convert(InterchangeFormat::Openrubric, &row("p1", true))
            .unwrap()
            .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        let mut expected = vec![
            "instruction",
            "response_a",
            "response_b",
            "winner",
            "rubric",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(out["instruction"], "Give me three pasta sauces, in French.");
        assert_eq!(
            out["rubric"],
            "1. The response names three sauces. [Hard Rule]\n2. The response is written in French. [Hard Rule]\n3. The response is concise. [Principle]"
        );
        let winner = out["winner"].as_str().unwrap();
        let slot = if winner == "A" {
            "response_a"
        } else {
            "response_b"
        };
        let other = if winner == "A" {
            "response_b"
        } else {
            "response_a"
        };
        assert_eq!(out[slot], "Pesto, carbonara, arrabbiata.");
        assert_eq!(out[other], "Pasta is great.");
        // The winner slot follows the pair id: balanced, and stable for one pair.
        let winners: Vec<String> = (0..40)
            .map(|i| {
                convert(InterchangeFormat::Openrubric, &row(&format!("p{i}"), true))
                    .unwrap()
                    .unwrap()["winner"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let a = winners.iter().filter(|w| *w == "A").count();
        assert!((8..=32).contains(&a), "{a} of 40 winners are A");
        assert_eq!(
            convert(InterchangeFormat::Openrubric, &row("p1", true))
                .unwrap()
                .unwrap(),
            out
        );
    }

    #[test]
    fn multi_turn_prompts_become_role_paragraphs() {
        let mut r = row("p1", true);
        r["prompt"] = json!([
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Three sauces?"}
        ]);
        let out = to_openrubric(&r).unwrap().unwrap();
        assert_eq!(
            out["instruction"],
            "User: Hi\n\nAssistant: Hello!\n\nUser: Three sauces?"
        );
    }

    #[test]
    fn healthbench_rows_map_kinds_to_points_and_tags() {
        let out = convert(InterchangeFormat::Healthbench, &row("p1", true))
            .unwrap()
            .unwrap();
        assert_eq!(
            out["prompt"],
            json!([{"content": "Give me three pasta sauces, in French.", "role": "user"}])
        );
        let rubrics = out["reward_model"]["rubrics"].as_array().unwrap();
        assert_eq!(rubrics.len(), 3);
        assert_eq!(rubrics[0]["criterion"], "The response names three sauces.");
        assert_eq!(
            rubrics[1]["criterion"],
            "The response is written in French."
        );
        assert_eq!(rubrics[0]["points"], HARD_RULE_POINTS);
        assert_eq!(
            rubrics[0]["tags"],
            json!([
                "level:example",
                "axis:instruction_following",
                "kind:hard_rule"
            ])
        );
        assert_eq!(rubrics[2]["points"], PRINCIPLE_POINTS);
        assert_eq!(
            rubrics[2]["tags"],
            json!(["level:example", "axis:principle", "kind:principle"])
        );
        assert_eq!(out["reward_model"]["style"], "rubric");
        assert_eq!(out["extra_info"]["pair_id"], "p1");
        assert_eq!(out["extra_info"]["reward_model"], out["reward_model"]);
    }

    #[test]
    fn healthbench_jsonl_rows_have_healthbench_keys_and_no_ideal_completion() {
        let out = convert(InterchangeFormat::HealthbenchJsonl, &row("p1", true))
            .unwrap()
            .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["example_tags", "prompt", "prompt_id", "rubrics"]);
        assert_eq!(out["prompt_id"], "p1");
        assert_eq!(out["example_tags"], json!([]));
        assert_eq!(
            out["prompt"],
            json!([{"role": "user", "content": "Give me three pasta sauces, in French."}])
        );
        assert_eq!(out["rubrics"][0]["points"], HARD_RULE_POINTS);
        assert_eq!(out["rubrics"][2]["points"], PRINCIPLE_POINTS);
        assert_eq!(
            out["rubrics"],
            convert(InterchangeFormat::Healthbench, &row("p1", true))
                .unwrap()
                .unwrap()["reward_model"]["rubrics"]
        );
    }

    #[test]
    fn dropped_rows_are_left_out_and_broken_rows_explained() {
        for format in [
            InterchangeFormat::Openrubric,
            InterchangeFormat::Healthbench,
            InterchangeFormat::HealthbenchJsonl,
        ] {
            assert_eq!(convert(format, &row("p1", false)), Ok(None));
            let mut broken = row("p1", true);
            broken.as_object_mut().unwrap().remove("chosen");
            assert!(convert(format, &broken).unwrap_err().contains("\"chosen\""));
            let mut empty = row("p1", true);
            empty["rubric"] = json!([]);
            assert!(
                convert(format, &empty)
                    .unwrap_err()
                    .contains("empty rubric")
            );
            let mut bad = row("p1", true);
            bad["rubric"] = json!([{"text": 3, "kind": "principle"}]);
            assert!(convert(format, &bad).unwrap_err().contains("rubric[0]"));
            assert!(convert(format, &json!([1])).is_err());
        }
    }
}
