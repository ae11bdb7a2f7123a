//! The pieces every layout is made of: the record being read with its settings ([`Cx`]),
//! messages (`{role|from, content|value|text}`), speaker roles, message content (a string or a
//! list of typed parts), prompts, record ids and content-derived pair ids.

use std::borrow::Cow;

use rubricmill_core::spec::LayoutSpec;
use rubricmill_core::{Message, short_hash};
use serde_json::Value;

use super::error::PairError;
use super::fields::{FieldMap, item_path, key_path};
use super::hh::{looks_like_hh, split_turns};

pub(super) const USER: &str = "user";
pub(super) const ASSISTANT: &str = "assistant";

/// One record being read, with the settings that decide how.
pub(super) struct Cx<'r> {
    pub record: &'r Value,
    pub fields: &'r FieldMap,
    pub layout: &'r LayoutSpec,
}

impl<'r> Cx<'r> {
    /// Our field `field`, absent and null alike giving `None`.
    pub fn get(&self, field: &str) -> Option<&'r Value> {
        present(self.fields.get(self.record, field))
    }

    /// Our field `field`, or a reject naming its path.
    pub fn require(&self, field: &str) -> Result<&'r Value, PairError> {
        self.get(field)
            .ok_or_else(|| PairError::MissingField(self.path(field).to_owned()))
    }

    /// Where `field` is read from, for messages.
    pub fn path<'s>(&'s self, field: &'s str) -> &'s str {
        self.fields.path(field)
    }

    /// The record's `id` (string or number), if it has one.
    pub fn record_id(&self) -> Result<Option<String>, PairError> {
        match self.get("id") {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(PairError::WrongType {
                field: self.path("id").to_owned(),
                expected: "a string or a number",
                found: type_name(other),
            }),
        }
    }

    /// Text content at `path` (see [`text_of`]), honouring `input.drop_non_text`.
    pub fn text<'a>(&self, v: &'a Value, path: &str) -> Result<Cow<'a, str>, PairError> {
        text_of(v, path, self.layout.drop_non_text)
    }

    /// One message at `path`.
    pub fn message<'a>(&self, v: &'a Value, path: &str) -> Result<Msg<'a>, PairError> {
        parse_message(v, path, self.layout.drop_non_text)
    }

    /// A list of messages at `path`.
    pub fn messages<'a>(&self, list: &'a [Value], path: &str) -> Result<Vec<Msg<'a>>, PairError> {
        list.iter()
            .enumerate()
            .map(|(i, v)| self.message(v, &item_path(path, i)))
            .collect()
    }

    /// A prompt at `path`: a string (an HH transcript is split into turns), one message, or a
    /// message list.
    pub fn prompt<'a>(&self, v: &'a Value, path: &str) -> Result<Vec<Msg<'a>>, PairError> {
        match v {
            Value::String(s) => Ok(split_prompt_string(s)),
            Value::Array(list) => self.messages(list, path),
            Value::Object(_) => Ok(vec![self.message(v, path)?]),
            other => Err(PairError::WrongType {
                field: path.to_owned(),
                expected: "a string or a list of messages",
                found: type_name(other),
            }),
        }
    }
}

/// A prompt string: an HH transcript (`"\n\nHuman: …\n\nAssistant:"`) split into turns, its
/// empty closing Assistant turn dropped; any other string is one user turn.
pub(super) fn split_prompt_string(s: &str) -> Vec<Msg<'_>> {
    if looks_like_hh(s)
        && s.contains("\n\nAssistant:")
        && let Ok(mut turns) = split_turns(s)
    {
        if turns
            .last()
            .is_some_and(|t| t.role == ASSISTANT && t.content.is_empty())
        {
            turns.pop();
        }
        return turns;
    }
    vec![Msg::user(s)]
}

/// A message borrowed from the record where possible.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Msg<'a> {
    pub role: &'static str,
    pub content: Cow<'a, str>,
}

impl<'a> Msg<'a> {
    pub fn user(text: &'a str) -> Self {
        Self {
            role: USER,
            content: Cow::Borrowed(text),
        }
    }

    pub fn to_message(&self) -> Message {
        Message {
            role: self.role.to_owned(),
            content: self.content.as_ref().to_owned(),
        }
    }

    pub fn into_message(self) -> Message {
        Message {
            role: self.role.to_owned(),
            content: self.content.into_owned(),
        }
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `None` for absent and for null.
pub(super) fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// A number, or a string holding one (UltraFeedback writes ratings as `"4"`).
pub(super) fn number(v: &Value, path: &str) -> Result<f64, PairError> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    };
    parsed.ok_or_else(|| PairError::WrongType {
        field: path.to_owned(),
        expected: "a number",
        found: type_name(v),
    })
}

/// 24 hex characters of the hash of a length-prefixed encoding of the pair's content.
pub(super) fn content_id(prompt: &[Message], chosen: &str, rejected: &str) -> String {
    fn put(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    let size: usize = prompt
        .iter()
        .map(|m| m.role.len() + m.content.len() + 16)
        .sum::<usize>()
        + chosen.len()
        + rejected.len()
        + 64;
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(b"rubricmill-pair-v1");
    buf.extend_from_slice(&(prompt.len() as u64).to_le_bytes());
    for m in prompt {
        put(&mut buf, &m.role);
        put(&mut buf, &m.content);
    }
    put(&mut buf, chosen);
    put(&mut buf, rejected);
    short_hash(&buf, 24)
}

/// Our role for a speaker name, case-insensitively (ShareGPT, OpenAI, LLaMA-Factory names).
pub(super) fn normalize_role(raw: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("user", USER),
        ("human", USER),
        ("prompter", USER),
        ("assistant", ASSISTANT),
        ("gpt", ASSISTANT),
        ("bot", ASSISTANT),
        ("model", ASSISTANT),
        ("chatgpt", ASSISTANT),
        ("function_call", ASSISTANT),
        ("system", "system"),
        ("developer", "system"),
        ("tool", "tool"),
        ("function", "tool"),
        ("observation", "tool"),
    ];
    let raw = raw.trim();
    TABLE
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(raw))
        .map(|(_, v)| *v)
}

/// Part types whose payload is text (`{type, text}` in OpenAI's chat API, `{type, value}` in
/// LLaMA-Factory's samples; the Responses API's input/output text parts).
const TEXT_PART_TYPES: &[&str] = &["text", "input_text", "output_text"];

/// Text content: a string, null (empty), one content part, or a list of parts (strings or
/// `{type: "text", text | value}` objects; an object without `type` but with a `text` string
/// counts as text). A non-text part (image, audio, tool call, reasoning) is a
/// [`PairError::NonTextPart`], or left out when `drop_non_text`. Text parts are joined by a
/// newline.
pub(super) fn text_of<'a>(
    v: &'a Value,
    path: &str,
    drop_non_text: bool,
) -> Result<Cow<'a, str>, PairError> {
    match v {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Null => Ok(Cow::Borrowed("")),
        Value::Object(_) => {
            Ok(part_text(v, path, drop_non_text)?.map_or(Cow::Borrowed(""), Cow::Borrowed))
        }
        Value::Array(parts) => {
            let mut texts: Vec<&str> = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                if let Some(text) = part_text(part, &item_path(path, i), drop_non_text)? {
                    texts.push(text);
                }
            }
            Ok(match texts.as_slice() {
                [] => Cow::Borrowed(""),
                [one] => Cow::Borrowed(one),
                many => Cow::Owned(many.join("\n")),
            })
        }
        other => Err(PairError::WrongType {
            field: path.to_owned(),
            expected: "a string or a list of content parts",
            found: type_name(other),
        }),
    }
}

/// One content part: `Some(text)`, or `None` for a non-text part that may be dropped.
fn part_text<'a>(
    part: &'a Value,
    path: &str,
    drop_non_text: bool,
) -> Result<Option<&'a str>, PairError> {
    let object = match part {
        Value::String(s) => return Ok(Some(s)),
        Value::Object(o) => o,
        other => {
            return Err(PairError::WrongType {
                field: path.to_owned(),
                expected: "a string or a {type, text} content part",
                found: type_name(other),
            });
        }
    };
    let part_type = match object.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(other) => {
            return Err(PairError::WrongType {
                field: key_path(path, "type"),
                expected: "a string",
                found: type_name(other),
            });
        }
    };
    if let Some(kind) = part_type
        && !TEXT_PART_TYPES.contains(&kind)
    {
        if drop_non_text {
            return Ok(None);
        }
        return Err(PairError::NonTextPart {
            field: path.to_owned(),
            part_type: kind.to_owned(),
        });
    }
    let (key, text) = match (object.get("text"), object.get("value")) {
        (Some(t), _) => ("text", t),
        (None, Some(v)) => ("value", v),
        (None, None) => return Err(PairError::MissingField(key_path(path, "text"))),
    };
    match text {
        Value::String(s) => Ok(Some(s)),
        other => Err(PairError::WrongType {
            field: key_path(path, key),
            expected: "a string",
            found: type_name(other),
        }),
    }
}

/// One `{role|from, content|value|text}` message.
fn parse_message<'a>(v: &'a Value, path: &str, drop_non_text: bool) -> Result<Msg<'a>, PairError> {
    let o = v.as_object().ok_or_else(|| PairError::WrongType {
        field: path.to_owned(),
        expected: "a {role, content} message",
        found: type_name(v),
    })?;
    let role_v = o
        .get("role")
        .or_else(|| o.get("from"))
        .ok_or_else(|| PairError::MissingField(key_path(path, "role")))?;
    let raw_role = role_v.as_str().ok_or_else(|| PairError::WrongType {
        field: key_path(path, "role"),
        expected: "a string",
        found: type_name(role_v),
    })?;
    let role = normalize_role(raw_role).ok_or_else(|| PairError::UnknownRole {
        field: path.to_owned(),
        role: raw_role.to_owned(),
    })?;
    let content_v = o
        .get("content")
        .or_else(|| o.get("value"))
        .or_else(|| o.get("text"))
        .ok_or_else(|| PairError::MissingField(key_path(path, "content")))?;
    let content = text_of(content_v, &key_path(path, "content"), drop_non_text)?;
    Ok(Msg { role, content })
}
