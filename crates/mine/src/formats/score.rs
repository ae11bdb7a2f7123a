//! The score interchange formats. Both read a committed score row as Arrow's JSON writer renders
//! it (columns as fields: `id`, `rubric_layout`, `prompt` a list of `{role, content}`, `rubric`
//! a list of `{criterion, points, kind}`, `responses` a list of `{response_id, origin, text,
//! verdicts: [{criterion, met, rationale}], score, hard_rules_met}`, null fields possibly
//! absent). Responses whose `score` is null (the judge gave no usable answer) are left out of
//! both; a row with no scored response writes nothing.
//!
//! # judge-sft
//!
//! Judge training data in the Rubric-RM style: JSON lines of chat messages,
//!
//! ```text
//! {"messages": [{"role": "system", "content": SYSTEM},
//!               {"role": "user", "content": "<conversation, numbered rubric, response(s)>"},
//!               {"role": "assistant", "content": "<verdict lines[, preferred response]>"}],
//!  "id": "<row id>", "response_ids": ["<response id>", …]}
//! ```
//!
//! A row with one scored response gives one line; a row with two or more gives one line
//! comparing them, the responses shown as `Response 1`, `Response 2`, … in an order set by a
//! hash of the row and response ids (so `chosen` is not always first, and the same row always
//! shows the same order); `response_ids` lists the ids in the order shown. The user message:
//!
//! ```text
//! Conversation:
//! User: …
//! Assistant: …
//!
//! Rubric:
//! 1. [6 points, important] The response suggests rest.
//! 2. [-8 points, pitfall] The response recommends antibiotics.
//!
//! Response:            (or "Response 1:", "Response 2:", … when comparing)
//! <text>
//! ```
//!
//! (the conversation is the user's text alone for a single-turn prompt; `item` kinds are not
//! named). The assistant message has, per response (under a `Response i:` heading when
//! comparing), one line per criterion, `"1. Met: <rationale>"`, `"2. Not met: <rationale>"` or
//! `"3. Unclear: <rationale>"` (no usable verdict; "No verdict." when the judge gave none), then
//! `"Score: 0.75"`; when comparing, a last line `"Preferred: Response 2"` (the highest score)
//! or `"Preferred: tie"`. For a pitfall, "Met" means the response commits it.
//!
//! # rewards
//!
//! RL reward data: one JSON line per (row, scored response),
//! `{prompt: [{role, content}], response, reward, rubric_id, response_id, origin,
//! rubric_layout}` with `reward` the response's score in [0, 1] and `rubric_id` the row id.

use serde_json::{Value, json};

use super::{chat_messages, prompt_text};

/// The judge-sft system message.
pub const JUDGE_SYSTEM: &str = "You are an impartial grader. Judge the response(s) to the conversation against every \
criterion of the rubric: for each criterion say whether the response meets it (for a criterion with negative points, \
whether the response commits the mistake it describes) with a one-sentence reason, then give the response's score \
(points of met criteria over the total positive points, between 0 and 1). When several responses are given, grade \
each in turn and end with the preferred one.";

struct Criterion<'a> {
    criterion: &'a str,
    points: i64,
    kind: &'a str,
}

struct Response<'a> {
    response_id: &'a str,
    origin: &'a str,
    text: &'a str,
    /// Verdict per criterion index: `(met, rationale)`.
    verdicts: Vec<(u64, Option<bool>, &'a str)>,
    score: f64,
}

struct Row<'a> {
    id: &'a str,
    rubric_layout: &'a str,
    prompt: Vec<(&'a str, &'a str)>,
    rubric: Vec<Criterion<'a>>,
    /// The responses with a score, in row order.
    responses: Vec<Response<'a>>,
}

fn list<'a>(value: &'a Value, name: &str, what: &str) -> Result<&'a Vec<Value>, String> {
    value
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("{what} has no {name:?} field"))?
        .as_array()
        .ok_or_else(|| format!("{what} field {name:?} is not a list"))
}

fn string<'a>(value: &'a Value, name: &str, what: &str) -> Result<&'a str, String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} has no string {name:?}"))
}

fn read(row: &Value) -> Result<Row<'_>, String> {
    if !row.is_object() {
        return Err("score row is not a JSON object".into());
    }
    let id = string(row, "id", "score row")?;
    let what = format!("score row {id}");
    let prompt = list(row, "prompt", &what)?
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let what = format!("{what}: prompt[{i}]");
            Ok((string(m, "role", &what)?, string(m, "content", &what)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let rubric = list(row, "rubric", &what)?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let what = format!("{what}: rubric[{i}]");
            Ok(Criterion {
                criterion: string(c, "criterion", &what)?,
                points: c
                    .get("points")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("{what} has no integer \"points\""))?,
                kind: c.get("kind").and_then(Value::as_str).unwrap_or("item"),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if rubric.is_empty() {
        return Err(format!("{what} has an empty rubric"));
    }
    let mut responses = Vec::new();
    for (i, r) in list(row, "responses", &what)?.iter().enumerate() {
        let what = format!("{what}: responses[{i}]");
        let score = match r.get("score") {
            None | Some(Value::Null) => continue,
            Some(score) => score
                .as_f64()
                .ok_or_else(|| format!("{what} field \"score\" is not a number"))?,
        };
        let verdicts = match r.get("verdicts") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(verdicts)) => verdicts
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let index = v
                        .get("criterion")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| format!("{what}: verdicts[{j}] has no criterion index"))?;
                    let met = v.get("met").and_then(Value::as_bool);
                    let rationale = v.get("rationale").and_then(Value::as_str).unwrap_or("");
                    Ok((index, met, rationale))
                })
                .collect::<Result<Vec<_>, String>>()?,
            Some(_) => return Err(format!("{what} field \"verdicts\" is not a list")),
        };
        responses.push(Response {
            response_id: string(r, "response_id", &what)?,
            origin: r.get("origin").and_then(Value::as_str).unwrap_or(""),
            text: string(r, "text", &what)?,
            verdicts,
            score,
        });
    }
    Ok(Row {
        id,
        rubric_layout: row
            .get("rubric_layout")
            .and_then(Value::as_str)
            .unwrap_or(""),
        prompt,
        rubric,
        responses,
    })
}

fn numbered_rubric(rubric: &[Criterion<'_>]) -> String {
    rubric
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let unit = if c.points.abs() == 1 {
                "point"
            } else {
                "points"
            };
            let kind = match c.kind {
                "" | "item" => String::new(),
                kind => format!(", {}", kind.replace('_', " ")),
            };
            format!(
                "{}. [{} {unit}{kind}] {}",
                i + 1,
                c.points,
                c.criterion.trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One line per criterion, then the score.
fn verdict_lines(rubric: &[Criterion<'_>], response: &Response<'_>) -> String {
    let mut lines: Vec<String> = (0..rubric.len())
        .map(|i| {
            let verdict = response
                .verdicts
                .iter()
                .find(|(index, _, _)| *index == i as u64);
            let (label, rationale) = match verdict {
                Some((_, Some(true), r)) => ("Met", *r),
                Some((_, Some(false), r)) => ("Not met", *r),
                Some((_, None, r)) => ("Unclear", *r),
                None => ("Unclear", ""),
            };
            let rationale = match rationale.trim() {
                "" => "No verdict.",
                text => text,
            };
            format!("{}. {label}: {rationale}", i + 1)
        })
        .collect();
    lines.push(format!("Score: {}", score_text(response.score)));
    lines.join("\n")
}

/// The score with at most two decimals: `0.75`, `0.5`, `1`.
fn score_text(score: f64) -> String {
    let text = format!("{score:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn messages(user: String, assistant: String) -> Value {
    json!([
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": assistant},
    ])
}

pub(super) fn to_judge_sft(row: &Value) -> Result<Vec<Value>, String> {
    let row = read(row)?;
    let head = format!(
        "Conversation:\n{}\n\nRubric:\n{}",
        prompt_text(&row.prompt, "\n"),
        numbered_rubric(&row.rubric)
    );
    if let [response] = row.responses.as_slice() {
        let user = format!("{head}\n\nResponse:\n{}", response.text);
        return Ok(vec![json!({
            "messages": messages(user, verdict_lines(&row.rubric, response)),
            "id": row.id,
            "response_ids": [response.response_id],
        })]);
    }
    if row.responses.is_empty() {
        return Ok(Vec::new());
    }
    let mut shown: Vec<&Response<'_>> = row.responses.iter().collect();
    shown.sort_by_cached_key(|r| {
        rubricmill_core::content_hash(format!("{}\n{}", row.id, r.response_id).as_bytes())
    });
    let mut user = head;
    let mut assistant = Vec::new();
    for (i, response) in shown.iter().enumerate() {
        user.push_str(&format!("\n\nResponse {}:\n{}", i + 1, response.text));
        assistant.push(format!(
            "Response {}:\n{}",
            i + 1,
            verdict_lines(&row.rubric, response)
        ));
    }
    let best = shown.iter().map(|r| r.score).fold(f64::MIN, f64::max);
    let top: Vec<usize> = (0..shown.len())
        .filter(|i| shown[*i].score == best)
        .collect();
    assistant.push(match top.as_slice() {
        [only] => format!("Preferred: Response {}", only + 1),
        _ => "Preferred: tie".to_owned(),
    });
    Ok(vec![json!({
        "messages": messages(user, assistant.join("\n\n")),
        "id": row.id,
        "response_ids": shown.iter().map(|r| r.response_id).collect::<Vec<_>>(),
    })])
}

pub(super) fn to_rewards(row: &Value) -> Result<Vec<Value>, String> {
    let row = read(row)?;
    let prompt = chat_messages(&row.prompt);
    Ok(row
        .responses
        .iter()
        .map(|r| {
            json!({
                "prompt": prompt,
                "response": r.text,
                "reward": r.score,
                "rubric_id": row.id,
                "response_id": r.response_id,
                "origin": r.origin,
                "rubric_layout": row.rubric_layout,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{InterchangeFormat, convert_all};
    use rubricmill_core::PipelineKind;

    fn convert(format: InterchangeFormat, row: &Value) -> Result<Vec<Value>, String> {
        convert_all(format, PipelineKind::Score, row)
    }

    /// A committed score row as Arrow's JSON writer renders it (null fields left out).
    fn row() -> Value {
        json!({
            "id": "p1",
            "source": "pairs.jsonl",
            "rubric_layout": "crg",
            "prompt": [{"role": "user", "content": "What helps a cold?"}],
            "rubric": [
                {"criterion": "The response suggests rest.", "points": 10, "kind": "hard_rule"},
                {"criterion": "The response is concise.", "points": 5, "kind": "principle"}
            ],
            "responses": [
                {"response_id": "chosen", "origin": "input", "text": "Rest and fluids.",
                 "verdicts": [{"criterion": 0, "met": true, "rationale": "It says rest."},
                              {"criterion": 1, "met": true, "rationale": "Three words."}],
                 "score": 1.0, "hard_rules_met": true},
                {"response_id": "rejected", "origin": "input", "text": "Nothing helps, honestly, colds are just bad.",
                 "verdicts": [{"criterion": 0, "met": false, "rationale": "No rest."},
                              {"criterion": 1, "rationale": "Unsure."}],
                 "score": 0.0, "hard_rules_met": false},
                {"response_id": "generated_0", "origin": "generated", "text": "Tea.",
                 "verdicts": []}
            ],
            "label": "chosen",
            "predicted": "chosen",
            "agrees": true,
            "judge_model": "j",
            "judge_prompt_hash": "h"
        })
    }

    #[test]
    fn judge_sft_compares_scored_responses_in_one_line() {
        let out = convert(InterchangeFormat::JudgeSft, &row()).unwrap();
        assert_eq!(out.len(), 1);
        let line = &out[0];
        assert_eq!(line["id"], "p1");
        let ids: Vec<&str> = line["response_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["chosen", "rejected"],
            "the unscored response is left out"
        );
        let messages = line["messages"].as_array().unwrap();
        let roles: Vec<&str> = messages
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant"]);
        assert_eq!(messages[0]["content"], JUDGE_SYSTEM);
        let user = messages[1]["content"].as_str().unwrap();
        assert!(
            user.starts_with("Conversation:\nWhat helps a cold?\n\nRubric:\n"),
            "{user}"
        );
        assert!(user.contains("1. [10 points, hard rule] The response suggests rest.\n2. [5 points, principle] The response is concise."), "{user}");
        assert!(!user.contains("Tea."), "{user}");
        let chosen_slot = ids.iter().position(|id| *id == "chosen").unwrap() + 1;
        assert!(
            user.contains(&format!("Response {chosen_slot}:\nRest and fluids.")),
            "{user}"
        );
        let assistant = messages[2]["content"].as_str().unwrap();
        assert!(
            assistant.contains("1. Met: It says rest.\n2. Met: Three words.\nScore: 1"),
            "{assistant}"
        );
        assert!(
            assistant.contains("1. Not met: No rest.\n2. Unclear: Unsure.\nScore: 0"),
            "{assistant}"
        );
        assert!(
            assistant.ends_with(&format!("Preferred: Response {chosen_slot}")),
            "{assistant}"
        );
        // stable
        assert_eq!(convert(InterchangeFormat::JudgeSft, &row()).unwrap(), out);
    }

    #[test]
    fn judge_sft_writes_single_responses_alone_and_ties_as_ties() {
        let mut single = row();
        single["responses"] = json!([row()["responses"][1].clone()]);
        let out = convert(InterchangeFormat::JudgeSft, &single).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["response_ids"], json!(["rejected"]));
        let user = out[0]["messages"][1]["content"].as_str().unwrap();
        assert!(
            user.ends_with("\n\nResponse:\nNothing helps, honestly, colds are just bad."),
            "{user}"
        );
        let assistant = out[0]["messages"][2]["content"].as_str().unwrap();
        assert_eq!(
            assistant,
            "1. Not met: No rest.\n2. Unclear: Unsure.\nScore: 0"
        );
        let mut tie = row();
        tie["responses"][1]["score"] = json!(1.0);
        let out = convert(InterchangeFormat::JudgeSft, &tie).unwrap();
        let assistant = out[0]["messages"][2]["content"].as_str().unwrap();
        assert!(assistant.ends_with("Preferred: tie"), "{assistant}");
        let mut none = row();
        none["responses"] = json!([row()["responses"][2].clone()]);
        assert_eq!(
            convert(InterchangeFormat::JudgeSft, &none).unwrap(),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn rewards_write_one_line_per_scored_response() {
        let out = convert(InterchangeFormat::Rewards, &row()).unwrap();
        assert_eq!(
            out,
            vec![
                json!({"prompt": [{"role": "user", "content": "What helps a cold?"}], "response": "Rest and fluids.",
                       "reward": 1.0, "rubric_id": "p1", "response_id": "chosen", "origin": "input", "rubric_layout": "crg"}),
                json!({"prompt": [{"role": "user", "content": "What helps a cold?"}], "response": "Nothing helps, honestly, colds are just bad.",
                       "reward": 0.0, "rubric_id": "p1", "response_id": "rejected", "origin": "input", "rubric_layout": "crg"}),
            ]
        );
    }

    #[test]
    fn broken_score_rows_are_explained() {
        for format in [InterchangeFormat::JudgeSft, InterchangeFormat::Rewards] {
            let mut no_id = row();
            no_id.as_object_mut().unwrap().remove("id");
            assert!(convert(format, &no_id).unwrap_err().contains("\"id\""));
            let mut bad = row();
            bad["responses"][0]["score"] = json!("high");
            assert!(convert(format, &bad).unwrap_err().contains("responses[0]"));
            let mut empty = row();
            empty["rubric"] = json!([]);
            assert!(
                convert(format, &empty)
                    .unwrap_err()
                    .contains("empty rubric")
            );
            assert!(convert(format, &json!("x")).is_err());
            assert!(convert_all(format, PipelineKind::Reference, &row()).is_err());
        }
    }
}
