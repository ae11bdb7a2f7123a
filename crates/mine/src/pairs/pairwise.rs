//! The pairwise layouts, where the record names its chosen and its rejected response:
//! `strings`, `trl-implicit`, `sharegpt`, `messages`, `llama-factory`, `alpaca` and
//! `argilla-dpo` (the `hh-rlhf` transcripts are in [`super::hh`]). Each builds the prompt turns
//! (`base`) and reads the two sides; a side given as a message list contributes its leading
//! turns, which must agree between the sides.

use std::borrow::Cow;

use rubricmill_core::{Message, PreferencePair};
use serde_json::Value;

use super::content::{ASSISTANT, Cx, Msg, content_id, number, type_name};
use super::error::{PairError, SkipReason, SkippedPair};
use super::fields::item_path;

/// Checks the two responses and the prompt, and makes the pair.
pub(super) fn finish(
    id: Option<String>,
    prompt: Vec<Msg<'_>>,
    chosen: &str,
    rejected: &str,
) -> Result<PreferencePair, PairError> {
    let (chosen, rejected) = (chosen.trim(), rejected.trim());
    if chosen.is_empty() {
        return Err(PairError::EmptyResponse("chosen"));
    }
    if rejected.is_empty() {
        return Err(PairError::EmptyResponse("rejected"));
    }
    if chosen == rejected {
        return Err(PairError::IdenticalResponses);
    }
    if !prompt.iter().any(|m| !m.content.trim().is_empty()) {
        return Err(PairError::EmptyPrompt);
    }
    let prompt: Vec<Message> = prompt.into_iter().map(Msg::into_message).collect();
    let pair_id = match id {
        Some(id) => id,
        None => content_id(&prompt, chosen, rejected),
    };
    Ok(PreferencePair {
        pair_id,
        prompt,
        chosen: chosen.to_owned(),
        rejected: rejected.to_owned(),
    })
}

fn same_turn(a: &Msg<'_>, b: &Msg<'_>) -> bool {
    a.role == b.role && a.content.trim() == b.content.trim()
}

/// One-based number of the first turn where the two lists differ (contents compared trimmed).
pub(super) fn first_difference(a: &[Msg<'_>], b: &[Msg<'_>]) -> Option<usize> {
    let common = a.iter().zip(b).take_while(|(x, y)| same_turn(x, y)).count();
    (common < a.len().max(b.len())).then_some(common + 1)
}

/// Does `long` begin with `short`?
fn begins_with(long: &[Msg<'_>], short: &[Msg<'_>]) -> bool {
    long.len() >= short.len() && long.iter().zip(short).all(|(a, b)| same_turn(a, b))
}

/// The shapes a side (`chosen`/`rejected`) may take in a layout.
#[derive(Clone, Copy)]
struct SideForms {
    /// A plain response string.
    string: bool,
    /// One `{role: assistant, …}` turn.
    message: bool,
    /// A message list ending with the assistant's response.
    list: bool,
    expected: &'static str,
}

const STRING: SideForms = SideForms {
    string: true,
    message: false,
    list: false,
    expected: "a string",
};
const STRING_OR_TURN: SideForms = SideForms {
    string: true,
    message: true,
    list: true,
    expected: "a {from, value} turn, a string or a list of turns",
};
const MESSAGE_LIST: SideForms = SideForms {
    string: false,
    message: false,
    list: true,
    expected: "a list of {role, content} messages",
};
const ANY_SIDE: SideForms = SideForms {
    string: true,
    message: true,
    list: true,
    expected: "a string, a message or a list of messages",
};

/// One side of a structured record: leading turns and the response.
struct Side<'a> {
    prefix: Vec<Msg<'a>>,
    response: Cow<'a, str>,
}

fn parse_side<'a>(
    cx: &Cx<'a>,
    field: &str,
    side: &'static str,
    forms: SideForms,
) -> Result<Side<'a>, PairError> {
    let path = cx.path(field);
    let v = cx.require(field)?;
    match v {
        Value::String(s) if forms.string => Ok(Side {
            prefix: Vec::new(),
            response: Cow::Borrowed(s),
        }),
        Value::Object(_) if forms.message => {
            let m = cx.message(v, path)?;
            if m.role != ASSISTANT {
                return Err(PairError::NoFinalAssistant(side));
            }
            Ok(Side {
                prefix: Vec::new(),
                response: m.content,
            })
        }
        Value::Array(list) if forms.list => {
            let mut prefix = cx.messages(list, path)?;
            match prefix.pop() {
                None => Err(PairError::EmptyResponse(side)),
                Some(last) if last.role == ASSISTANT => Ok(Side {
                    prefix,
                    response: last.content,
                }),
                Some(_) => Err(PairError::NoFinalAssistant(side)),
            }
        }
        other => Err(PairError::WrongType {
            field: path.to_owned(),
            expected: forms.expected,
            found: type_name(other),
        }),
    }
}

/// Reads both sides and joins the prompt: the base turns, then the sides' shared leading turns
/// (unless those already begin with the base, as when a message list repeats the prompt).
fn two_sides(
    cx: &Cx<'_>,
    base: Vec<Msg<'_>>,
    fields: (&str, &str),
    forms: SideForms,
) -> Result<PreferencePair, PairError> {
    let id = cx.record_id()?;
    let chosen = parse_side(cx, fields.0, "chosen", forms)?;
    let rejected = parse_side(cx, fields.1, "rejected", forms)?;
    if let Some(turn) = first_difference(&chosen.prefix, &rejected.prefix) {
        return Err(PairError::PromptMismatch(base.len() + turn));
    }
    let shared = chosen.prefix;
    let prompt = if shared.is_empty() {
        base
    } else if base.is_empty() || begins_with(&shared, &base) {
        shared
    } else {
        let mut all = base;
        all.extend(shared);
        all
    };
    finish(id, prompt, &chosen.response, &rejected.response)
}

fn required_prompt<'a>(cx: &Cx<'a>) -> Result<Vec<Msg<'a>>, PairError> {
    cx.prompt(cx.require("prompt")?, cx.path("prompt"))
}

fn optional_prompt<'a>(cx: &Cx<'a>) -> Result<Vec<Msg<'a>>, PairError> {
    match cx.get("prompt") {
        Some(v) => cx.prompt(v, cx.path("prompt")),
        None => Ok(Vec::new()),
    }
}

/// `strings`: `{prompt, chosen, rejected}`, responses strings or one assistant turn.
pub(super) fn strings_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    let forms = SideForms {
        list: false,
        expected: "a string",
        ..STRING_OR_TURN
    };
    two_sides(cx, required_prompt(cx)?, ("chosen", "rejected"), forms)
}

/// `sharegpt`: `conversations` turns, then `chosen`/`rejected` turns, strings or turn lists.
pub(super) fn sharegpt_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    let path = cx.path("conversations");
    let base = match cx.require("conversations")? {
        Value::Array(list) => cx.messages(list, path)?,
        other => {
            return Err(PairError::WrongType {
                field: path.to_owned(),
                expected: "a list of {from, value} turns",
                found: type_name(other),
            });
        }
    };
    two_sides(cx, base, ("chosen", "rejected"), STRING_OR_TURN)
}

/// `messages`: `chosen`/`rejected` message lists, optional separate `prompt`.
pub(super) fn messages_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    two_sides(
        cx,
        optional_prompt(cx)?,
        ("chosen", "rejected"),
        MESSAGE_LIST,
    )
}

/// `llama-factory`: `chosen_messages`/`rejected_messages` lists of `{role, content: [{type,
/// value}], loss_weight}`.
pub(super) fn llama_factory_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    two_sides(
        cx,
        Vec::new(),
        ("chosen_messages", "rejected_messages"),
        MESSAGE_LIST,
    )
}

/// `alpaca`: `system`, `history` (`[[query, answer], …]`), `instruction` and `input` (joined by
/// a newline) make the prompt; `chosen`/`rejected` are strings.
pub(super) fn alpaca_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    let mut base = Vec::new();
    if let Some(v) = cx.get("system") {
        let content = cx.text(v, cx.path("system"))?;
        if !content.trim().is_empty() {
            base.push(Msg {
                role: "system",
                content,
            });
        }
    }
    if let Some(v) = cx.get("history") {
        let path = cx.path("history");
        let rounds = v.as_array().ok_or_else(|| PairError::WrongType {
            field: path.to_owned(),
            expected: "a list of [query, answer] pairs",
            found: type_name(v),
        })?;
        for (i, round) in rounds.iter().enumerate() {
            let at = item_path(path, i);
            let (query, answer) = match round.as_array().map(Vec::as_slice) {
                Some([Value::String(q), Value::String(a)]) => (q, a),
                _ => {
                    return Err(PairError::WrongType {
                        field: at,
                        expected: "a [query, answer] pair of strings",
                        found: type_name(round),
                    });
                }
            };
            base.push(Msg::user(query));
            base.push(Msg {
                role: ASSISTANT,
                content: Cow::Borrowed(answer),
            });
        }
    }
    let instruction = cx.text(cx.require("instruction")?, cx.path("instruction"))?;
    let input = match cx.get("input") {
        Some(v) => cx.text(v, cx.path("input"))?,
        None => Cow::Borrowed(""),
    };
    let query = match (instruction.trim().is_empty(), input.trim().is_empty()) {
        (_, true) => instruction,
        (true, false) => input,
        (false, false) => Cow::Owned(format!("{instruction}\n{input}")),
    };
    base.push(Msg {
        role: "user",
        content: query,
    });
    two_sides(cx, base, ("chosen", "rejected"), STRING)
}

/// Per-side rating fields of DPO exports, in the order they are looked for: Argilla and
/// distilabel spellings, then the `score_*` of binarized UltraFeedback exports.
const RATING_FIELDS: &[(&str, &str)] = &[
    ("chosen_rating", "rejected_rating"),
    ("chosen-rating", "rejected-rating"),
    ("rating_chosen", "rating_rejected"),
    ("score_chosen", "score_rejected"),
];

/// Does the record carry per-side ratings (for detection)?
pub(super) fn has_ratings(cx: &Cx<'_>) -> bool {
    RATING_FIELDS
        .iter()
        .any(|(c, r)| cx.get(c).is_some() && cx.get(r).is_some())
}

/// `argilla-dpo`: the prompt is `prompt` (string or messages) or `system` + `input`; the sides
/// are strings, turns or message lists. Equal per-side ratings, or a distilabel
/// `status = "tie"`, make the comparison a tie.
pub(super) fn argilla_pair(cx: &Cx<'_>) -> Result<Result<PreferencePair, SkippedPair>, PairError> {
    let base = if cx.get("prompt").is_some() {
        required_prompt(cx)?
    } else {
        let input = cx.get("input").ok_or_else(|| {
            PairError::MissingEither(cx.path("prompt").to_owned(), cx.path("input").to_owned())
        })?;
        let mut base = Vec::new();
        if let Some(v) = cx.get("system") {
            let content = cx.text(v, cx.path("system"))?;
            if !content.trim().is_empty() {
                base.push(Msg {
                    role: "system",
                    content,
                });
            }
        }
        base.extend(cx.prompt(input, cx.path("input"))?);
        base
    };
    let pair = two_sides(cx, base, ("chosen", "rejected"), ANY_SIDE)?;
    let tie = |detail: String| SkippedPair {
        better: cx.path("chosen").to_owned(),
        worse: cx.path("rejected").to_owned(),
        reason: SkipReason::LabelledTie(detail),
        better_text: pair.chosen.clone(),
        worse_text: pair.rejected.clone(),
    };
    if let Some(Value::String(status)) = cx.get("status")
        && status.trim().eq_ignore_ascii_case("tie")
    {
        return Ok(Err(tie("`status` is \"tie\"".to_owned())));
    }
    for (chosen_field, rejected_field) in RATING_FIELDS {
        let (Some(c), Some(r)) = (cx.get(chosen_field), cx.get(rejected_field)) else {
            continue;
        };
        let c_path = cx.path(chosen_field);
        let r_path = cx.path(rejected_field);
        let (chosen_rating, rejected_rating) = (number(c, c_path)?, number(r, r_path)?);
        if chosen_rating == rejected_rating {
            return Ok(Err(tie(format!(
                "`{c_path}` and `{r_path}` are both {chosen_rating}"
            ))));
        }
        break;
    }
    Ok(Ok(pair))
}

/// `trl-implicit`: `chosen` and `rejected` strings that begin with the same prompt text. The
/// prompt is their longest common prefix, cut back to a word boundary when it ends inside a
/// word (as TRL's `extract_prompt` does at a space); the rest of each is its response.
pub(super) fn trl_implicit_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    let id = cx.record_id()?;
    let string = |field: &str| -> Result<&str, PairError> {
        let v = cx.require(field)?;
        v.as_str().ok_or_else(|| PairError::WrongType {
            field: cx.path(field).to_owned(),
            expected: "a string",
            found: type_name(v),
        })
    };
    let (chosen, rejected) = (string("chosen")?, string("rejected")?);
    let (prompt, chosen, rejected) = split_shared_prefix(chosen, rejected)
        .ok_or_else(|| PairError::NoImplicitPrompt(cx.path("prompt").to_owned()))?;
    finish(id, vec![Msg::user(prompt)], chosen, rejected)
}

/// (prompt, rest of `a`, rest of `b`), or `None` when no leading text is shared.
pub(super) fn split_shared_prefix<'a>(
    a: &'a str,
    b: &'a str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let mut cut = a
        .char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    let inside_word = |s: &str| {
        !a[..cut].ends_with(char::is_whitespace)
            && s[cut..].chars().next().is_some_and(|c| !c.is_whitespace())
    };
    if inside_word(a) || inside_word(b) {
        cut = a[..cut]
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
    }
    let prompt = a[..cut].trim();
    (!prompt.is_empty()).then(|| (prompt, &a[cut..], &b[cut..]))
}
