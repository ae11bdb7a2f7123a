//! Anthropic HH-RLHF transcripts (`"\n\nHuman: …\n\nAssistant: …"`) and the `hh-rlhf` layout:
//! `chosen`/`rejected` whole transcripts sharing every turn but the last, or a transcript
//! `prompt` (ending in an empty `Assistant:` turn) with responses that are plain text or whole
//! transcripts beginning with that prompt.

use std::borrow::Cow;

use rubricmill_core::{Message, PreferencePair};

use super::content::{ASSISTANT, Cx, Msg, USER, type_name};
use super::error::PairError;
use super::pairwise::{finish, first_difference};

/// Splits an HH-RLHF transcript (`"\n\nHuman: …\n\nAssistant: …"`) into messages with roles
/// `user` and `assistant`, contents trimmed, consecutive turns of one speaker merged. Fails when
/// there is no marker, text precedes the first marker, or the first turn is not a Human turn.
pub fn split_hh_transcript(text: &str) -> Result<Vec<Message>, PairError> {
    let turns = split_turns(text).map_err(|p| PairError::TranscriptUnparsable(p.to_owned()))?;
    Ok(turns.into_iter().map(Msg::into_message).collect())
}

/// Does this string look like an HH transcript (a `Human:` marker at the start or after a
/// blank line)?
pub(super) fn looks_like_hh(s: &str) -> bool {
    s.trim_start().starts_with("Human:") || s.contains("\n\nHuman:")
}

/// The HH marker at `rest`'s start, if any, with its length.
fn marker_at(rest: &str) -> Option<(&'static str, usize)> {
    if rest.starts_with("Human:") {
        Some((USER, "Human:".len()))
    } else if rest.starts_with("Assistant:") {
        Some((ASSISTANT, "Assistant:".len()))
    } else {
        None
    }
}

/// Splits an HH transcript into trimmed turns borrowed from `text`, merging consecutive turns
/// of the same speaker. A marker is `Human:`/`Assistant:` at the start (after whitespace) or
/// right after a blank line (`"\n\n"`); markers inside a line are part of the text.
pub(super) fn split_turns(text: &str) -> Result<Vec<Msg<'_>>, &'static str> {
    fn push<'a>(turns: &mut Vec<Msg<'a>>, role: &'static str, raw: &'a str) {
        let content = raw.trim();
        match turns.last_mut() {
            Some(last) if last.role == role => {
                if content.is_empty() {
                } else if last.content.is_empty() {
                    last.content = Cow::Borrowed(content);
                } else {
                    let mut joined = std::mem::take(&mut last.content).into_owned();
                    joined.push_str("\n\n");
                    joined.push_str(content);
                    last.content = Cow::Owned(joined);
                }
            }
            _ => turns.push(Msg {
                role,
                content: Cow::Borrowed(content),
            }),
        }
    }

    let mut turns = Vec::new();
    // (role, start of its content) of the turn being read.
    let mut current: Option<(&'static str, usize)> = None;
    let lead = text.len() - text.trim_start().len();
    if let Some((role, len)) = marker_at(&text[lead..]) {
        current = Some((role, lead + len));
    }
    let mut pos = current.map_or(0, |(_, start)| start);
    while let Some(off) = text[pos..].find("\n\n") {
        let at = pos + off;
        match marker_at(&text[at + 2..]) {
            Some((role, len)) => {
                match current {
                    Some((r, start)) => push(&mut turns, r, &text[start..at]),
                    None if !text[..at].trim().is_empty() => {
                        return Err("text before the first human/assistant marker");
                    }
                    None => {}
                }
                current = Some((role, at + 2 + len));
                pos = at + 2 + len;
            }
            // "\n\n\nHuman:" has its marker after the second of three newlines.
            None => pos = at + 1,
        }
    }
    let Some((role, start)) = current else {
        return Err("no human/assistant markers");
    };
    push(&mut turns, role, &text[start..]);
    if turns.first().is_some_and(|t| t.role != USER) {
        return Err("starts with an assistant turn");
    }
    Ok(turns)
}

/// One side of an HH record: the turns before its response, and the response.
struct Side<'a> {
    turns: Vec<Msg<'a>>,
    response: Cow<'a, str>,
}

/// The `hh-rlhf` layout (module doc).
pub(super) fn hh_pair(cx: &Cx<'_>) -> Result<PreferencePair, PairError> {
    let id = cx.record_id()?;
    let prompt = match cx.get("prompt") {
        Some(v) => Some(cx.prompt(v, cx.path("prompt"))?),
        None => None,
    };
    let side = |name: &'static str| -> Result<Side<'_>, PairError> {
        let v = cx.require(name)?;
        let s = v.as_str().ok_or_else(|| PairError::WrongType {
            field: cx.path(name).to_owned(),
            expected: "a human/assistant transcript string",
            found: type_name(v),
        })?;
        if !looks_like_hh(s) {
            return match &prompt {
                // A plain response after a transcript prompt.
                Some(turns) => Ok(Side {
                    turns: turns.clone(),
                    response: Cow::Borrowed(s),
                }),
                None => Err(PairError::TranscriptUnparsable(format!(
                    "{name}: no human/assistant markers"
                ))),
            };
        }
        let mut turns =
            split_turns(s).map_err(|p| PairError::TranscriptUnparsable(format!("{name}: {p}")))?;
        let response = match turns.pop() {
            Some(last) if last.role == ASSISTANT => last.content,
            _ => return Err(PairError::NoFinalAssistant(name)),
        };
        if let Some(prompt) = &prompt
            && let Some(turn) = first_difference(&turns, prompt)
        {
            return Err(PairError::TranscriptPromptMismatch {
                side: name,
                prompt: cx.path("prompt").to_owned(),
                turn,
            });
        }
        Ok(Side { turns, response })
    };
    let chosen = side("chosen")?;
    let rejected = side("rejected")?;
    if let Some(turn) = first_difference(&chosen.turns, &rejected.turns) {
        return Err(PairError::PromptMismatch(turn));
    }
    finish(id, chosen.turns, &chosen.response, &rejected.response)
}
