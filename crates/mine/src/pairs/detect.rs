//! Auto-detection: the layout [`PairLayout::Auto`] reads a record as, from the fields present
//! (through the field mapping). The rules, first match wins, are listed in the module doc of
//! [`super`]; a record that fits none is rejected with the fields it does have.

use rubricmill_core::PairLayout;
use serde_json::Value;

use super::content::{Cx, type_name};
use super::error::PairError;
use super::hh::looks_like_hh;
use super::pairwise::has_ratings;
use super::ranked::has_helpsteer_attribute;

/// How many of a record's own keys an "unknown layout" reason lists.
const LISTED_KEYS: usize = 8;

pub(super) fn detect(cx: &Cx<'_>) -> Result<PairLayout, PairError> {
    let Some(object) = cx.record.as_object() else {
        return Err(PairError::NotAnObject(type_name(cx.record)));
    };
    let has = |field: &str| cx.get(field).is_some();
    if has("chosen_messages") || has("rejected_messages") {
        return Ok(PairLayout::LlamaFactory);
    }
    let Some(chosen) = cx.get("chosen") else {
        return detect_ranked(cx, object);
    };
    if has("conversations") {
        return Ok(PairLayout::Sharegpt);
    }
    if has("instruction") {
        return Ok(PairLayout::Alpaca);
    }
    let distilabel_status = matches!(cx.get("status"), Some(Value::String(_)));
    if has_ratings(cx) || distilabel_status || (has("input") && !has("prompt")) {
        return Ok(PairLayout::ArgillaDpo);
    }
    let prompt_is_transcript =
        matches!(cx.get("prompt"), Some(Value::String(p)) if looks_like_hh(p));
    match chosen {
        Value::Array(_) => Ok(PairLayout::Messages),
        Value::String(s) if prompt_is_transcript || looks_like_hh(s) => Ok(PairLayout::HhRlhf),
        Value::String(_) | Value::Object(_) if has("prompt") => Ok(PairLayout::Strings),
        Value::String(_) => Ok(PairLayout::TrlImplicit),
        Value::Object(_) => Err(PairError::MissingField(cx.path("prompt").to_owned())),
        other => Err(PairError::WrongType {
            field: cx.path("chosen").to_owned(),
            expected: "a string, a message or a list of messages",
            found: type_name(other),
        }),
    }
}

/// A record without `chosen`: one of the ranked layouts, or rejected.
fn detect_ranked(
    cx: &Cx<'_>,
    object: &serde_json::Map<String, Value>,
) -> Result<PairLayout, PairError> {
    let is_list = |field: &str| matches!(cx.get(field), Some(Value::Array(_)));
    if is_list("completions") {
        return Ok(PairLayout::Ultrafeedback);
    }
    if is_list("answers") {
        return Ok(PairLayout::Nectar);
    }
    if let Some(Value::Array(items)) = cx.get("responses") {
        return Ok(if items.iter().any(has_helpsteer_attribute) {
            PairLayout::Helpsteer
        } else {
            PairLayout::Listwise
        });
    }
    if cx.get("response").is_some() && has_helpsteer_attribute(cx.record) {
        return Ok(PairLayout::Helpsteer);
    }
    if cx.get("rejected").is_some() {
        return Err(PairError::MissingField(cx.path("chosen").to_owned()));
    }
    Err(PairError::UnknownLayout(unknown_layout_reason(object)))
}

fn unknown_layout_reason(object: &serde_json::Map<String, Value>) -> String {
    let mut keys: Vec<String> = object
        .keys()
        .take(LISTED_KEYS)
        .map(|k| format!("`{k}`"))
        .collect();
    if object.len() > LISTED_KEYS {
        keys.push(format!("and {} more", object.len() - LISTED_KEYS));
    }
    let found = if keys.is_empty() {
        "no fields".to_owned()
    } else {
        format!("fields {}", keys.join(", "))
    };
    format!(
        "found {found}; expected `chosen` and `rejected`, `chosen_messages` and \
         `rejected_messages`, `completions`, `answers` or `responses` (or map them with \
         input.fields)"
    )
}
