//! Simulated answers (test and dry-run only) to the nuggets prompts
//! (`configs/prompts/nuggets_generate.md`, `configs/prompts/nuggets_support.md`).
//!
//! Passages are the `<passage id="ID">…</passage>` blocks of `<passages>`.
//!
//! The generator takes from each passage its first sentence of at least three words (sentences
//! end at ". ", "? ", "! " or a line break) as the `span`, copied verbatim (its end mark
//! included), and as the `nugget` the same text ending with a period. The passage sharing the
//! most key terms with `<question>` (the first one on a tie) gives the one "vital" nugget, the
//! others are "okay". A short question (under [`SHORT_QUESTION_WORDS`] words) gets the vital
//! nugget only; the list stops at the prompt's `at most N` (passage order, the vital nugget
//! always kept).
//!
//! The support check reads `<claims_to_check>` lines `[<n>] (<passage id>) <claim>`: a claim
//! is supported when at least half of its key terms are words of the passage it names
//! (case-insensitive), or, when it has no key terms, when all its words are; a claim naming an
//! unknown passage is not. The caller's `errs(n)` flips claim `n`'s check (the judge error
//! rate).

use serde_json::json;

use super::{key_terms, numbered_line, stated_max, tagged, word_set};

/// Questions with fewer words than this are short factual ones: one nugget.
pub(crate) const SHORT_QUESTION_WORDS: usize = 8;
/// Nuggets written when the prompt states no maximum.
const DEFAULT_MAX_NUGGETS: usize = 10;

/// One `<passage id="…">` block.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Passage<'a> {
    id: &'a str,
    text: &'a str,
}

/// The passages of `prompt`'s `<passages>`, in order.
fn passages(prompt: &str) -> Vec<Passage<'_>> {
    const OPEN: &str = "<passage id=\"";
    let mut found = Vec::new();
    let mut rest = tagged(prompt, "passages").unwrap_or("");
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some((id, after)) = after.split_once('"') else {
            break;
        };
        let Some((_, body)) = after.split_once('>') else {
            break;
        };
        let end = body.find("</passage>").unwrap_or(body.len());
        found.push(Passage {
            id,
            text: body[..end].trim(),
        });
        rest = &body[end..];
    }
    found
}

/// The sentences of `text`, trimmed, each a slice of it: a sentence ends after '.', '?' or '!'
/// followed by whitespace, or at a line break.
fn sentences(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next_is_space = chars.peek().is_some_and(|(_, n)| n.is_whitespace());
        let end = match c {
            '\n' => Some((at, at + 1)),
            '.' | '?' | '!' if next_is_space => Some((at + 1, at + 1)),
            _ => None,
        };
        if let Some((end, resume)) = end {
            found.push(text[start..end].trim());
            start = resume;
        }
    }
    found.push(text[start..].trim());
    found.retain(|s| !s.is_empty());
    found
}

/// The first sentence of `text` with at least three words.
fn first_span(text: &str) -> Option<&str> {
    sentences(text)
        .into_iter()
        .find(|s| s.split_whitespace().count() >= 3)
}

/// `span` as a nugget: the same words, ending with one period.
fn nugget_of(span: &str) -> String {
    let body = span.trim_end_matches(['.', '?', '!', ';', ':', ',']);
    format!("{}.", body.trim_end())
}

/// The nuggets for `prompt`'s `<question>` and `<passages>`, as
/// `{"nuggets": [{"nugget", "passage_id", "span", "importance"}]}`.
pub(super) fn generate(prompt: &str) -> String {
    let question = tagged(prompt, "question").unwrap_or("");
    let max = stated_max(prompt, DEFAULT_MAX_NUGGETS).max(1);
    let question_terms = key_terms(question, 40);
    let candidates: Vec<(Passage<'_>, &str)> = passages(prompt)
        .into_iter()
        .filter_map(|p| first_span(p.text).map(|span| (p, span)))
        .collect();
    let mut vital = None;
    let mut best = 0;
    for (index, (passage, _)) in candidates.iter().enumerate() {
        let words = word_set(passage.text);
        let shared = question_terms.iter().filter(|t| words.contains(*t)).count();
        if vital.is_none() || shared > best {
            vital = Some(index);
            best = shared;
        }
    }
    let others = if question.split_whitespace().count() < SHORT_QUESTION_WORDS {
        0
    } else {
        max - 1
    };
    let mut kept_others = 0;
    let mut nuggets = Vec::new();
    for (index, (passage, span)) in candidates.iter().enumerate() {
        let is_vital = Some(index) == vital;
        if !is_vital {
            if kept_others == others {
                continue;
            }
            kept_others += 1;
        }
        nuggets.push(json!({
            "nugget": nugget_of(span),
            "passage_id": passage.id,
            "span": span,
            "importance": if is_vital { "vital" } else { "okay" },
        }));
    }
    json!({ "nuggets": nuggets }).to_string()
}

/// One line of `<claims_to_check>`: number, passage id and claim text. The id is matched
/// against the known passage ids first (the longest that fits), so an id may hold ')'.
fn parse_claim<'a>(line: &'a str, known: &[Passage<'_>]) -> Option<(u64, &'a str, &'a str)> {
    let (number, rest) = numbered_line(line)?;
    let rest = rest.strip_prefix('(')?;
    let id_len = known
        .iter()
        .filter(|p| {
            rest.strip_prefix(p.id)
                .is_some_and(|after| after.starts_with(')'))
        })
        .map(|p| p.id.len())
        .max()
        .or_else(|| rest.find(')'))?;
    Some((number, &rest[..id_len], rest[id_len + 1..].trim()))
}

/// Whether `passage` supports `claim`.
fn supports(passage: &str, claim: &str) -> bool {
    let words = word_set(passage);
    let terms = key_terms(claim, 40);
    if terms.is_empty() {
        let claim_words = word_set(claim);
        return !claim_words.is_empty() && claim_words.iter().all(|w| words.contains(w));
    }
    let present = terms.iter().filter(|t| words.contains(*t)).count();
    2 * present >= terms.len()
}

/// The support checks of `prompt`'s `<claims_to_check>` against its `<passages>`, as
/// `{"checks": [{"claim", "supported"}]}`; `errs(n)` flips claim `n`'s check.
pub(super) fn support(prompt: &str, errs: impl Fn(u64) -> bool) -> String {
    let known = passages(prompt);
    let mut checks: Vec<serde_json::Value> = Vec::new();
    for line in tagged(prompt, "claims_to_check").unwrap_or("").lines() {
        let Some((number, id, claim)) = parse_claim(line, &known) else {
            continue;
        };
        let honest = known
            .iter()
            .find(|p| p.id == id)
            .is_some_and(|p| supports(p.text, claim));
        checks.push(json!({ "claim": number, "supported": honest != errs(number) }));
    }
    json!({ "checks": checks }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::{NUGGETS_SUPPORT_TASK, SimulatedOptions, simulated_answer_with};
    use crate::{ChatRequest, ResponseFormat};
    use rubricmill_core::Message;

    const PASSAGES: &str = "<passage id=\"P1\">\nBread is baked in ovens. Ovens reach high temperatures quickly.\n</passage>\n\
        <passage id=\"doc-7\">\nYes. Yeast ferments sugars in dough and releases carbon dioxide! The dough traps it.\n</passage>\n\
        <passage id=\"wiki:gluten\">\nGluten forms an elastic network\nthat holds gas bubbles.\n</passage>";

    fn generate_prompt(question: &str, max: usize) -> String {
        format!(
            "Write at most {max}. Do not state a fact twice.\n<question>\n{question}\n</question>\n<passages>\n{PASSAGES}\n</passages>"
        )
    }

    fn nuggets(answer: &str) -> Vec<serde_json::Value> {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["nuggets"].as_array().unwrap().clone()
    }

    #[test]
    fn passages_and_sentences_are_split_as_documented() {
        let prompt = generate_prompt("q", 3);
        let found = passages(&prompt);
        let ids: Vec<&str> = found.iter().map(|p| p.id).collect();
        assert_eq!(ids, ["P1", "doc-7", "wiki:gluten"]);
        assert_eq!(
            sentences(found[1].text),
            [
                "Yes.",
                "Yeast ferments sugars in dough and releases carbon dioxide!",
                "The dough traps it."
            ]
        );
        assert_eq!(
            first_span(found[2].text),
            Some("Gluten forms an elastic network")
        );
        assert_eq!(nugget_of("Why is it so?"), "Why is it so.");
    }

    #[test]
    fn a_long_question_gets_one_nugget_per_passage_with_verbatim_spans() {
        let question = "Explain how yeast and fermentation make bread dough rise in the oven";
        let found = nuggets(&generate(&generate_prompt(question, 5)));
        assert_eq!(found.len(), 3, "{found:?}");
        let texts: Vec<(&str, &str)> = found
            .iter()
            .map(|n| {
                (
                    n["passage_id"].as_str().unwrap(),
                    n["span"].as_str().unwrap(),
                )
            })
            .collect();
        let prompt = generate_prompt(question, 5);
        let by_id = passages(&prompt);
        for (id, span) in &texts {
            let passage = by_id.iter().find(|p| p.id == *id).unwrap();
            assert!(passage.text.contains(span), "{span} not in {id}");
        }
        assert_eq!(
            texts[1].1,
            "Yeast ferments sugars in dough and releases carbon dioxide!"
        );
        assert_eq!(
            found[1]["nugget"],
            "Yeast ferments sugars in dough and releases carbon dioxide."
        );
        let importance: Vec<&str> = found
            .iter()
            .map(|n| n["importance"].as_str().unwrap())
            .collect();
        assert_eq!(importance, ["okay", "vital", "okay"]);
    }

    #[test]
    fn a_short_question_gets_only_the_vital_nugget_and_the_maximum_keeps_it() {
        let found = nuggets(&generate(&generate_prompt("What does gluten form?", 5)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0]["passage_id"], "wiki:gluten");
        assert_eq!(found[0]["importance"], "vital");
        let question = "Explain how yeast and fermentation make bread dough rise in the oven";
        let capped = nuggets(&generate(&generate_prompt(question, 2)));
        let ids: Vec<&str> = capped
            .iter()
            .map(|n| n["passage_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["P1", "doc-7"]);
        let one = nuggets(&generate(&generate_prompt(question, 1)));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["passage_id"], "doc-7");
        // No key term shared: the first passage is the vital one.
        let unrelated = nuggets(&generate(&generate_prompt("Who won?", 4)));
        assert_eq!(unrelated[0]["passage_id"], "P1");
        assert_eq!(unrelated[0]["importance"], "vital");
    }

    fn support_prompt(claims: &str) -> String {
        format!(
            "<passages>\n{PASSAGES}\n</passages>\n<claims_to_check>\n{claims}\n</claims_to_check>"
        )
    }

    fn checks(answer: &str) -> Vec<(u64, bool)> {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["claim"].as_u64().unwrap(),
                    c["supported"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    const CLAIMS: &str = "[1] (doc-7) Yeast ferments sugars and releases carbon dioxide.\n\
        [2] (P1) Yeast ferments sugars and releases carbon dioxide.\n\
        [3] (P9) Bread is baked in ovens.\n\
        [4] (wiki:gluten) Gluten forms an elastic network.\n\
        [5] (P1) Ovens cool slowly overnight.";

    #[test]
    fn claims_are_supported_by_the_passage_they_name_only() {
        assert_eq!(
            checks(&support(&support_prompt(CLAIMS), |_| false)),
            [(1, true), (2, false), (3, false), (4, true), (5, false)]
        );
        assert_eq!(
            checks(&support(&support_prompt(CLAIMS), |n| n == 3)),
            [(1, true), (2, false), (3, true), (4, true), (5, false)]
        );
        // Without key terms every word of the claim must be in the passage.
        assert!(supports("It is hot, they say.", "it is hot"));
        assert!(!supports("It is hot.", "it is cold"));
    }

    #[test]
    fn the_error_rate_flips_checks_per_claim() {
        let request = |seed: u64| ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", support_prompt(CLAIMS))],
            temperature: 0.0,
            max_tokens: 400,
            seed: Some(seed),
            response_format: Some(ResponseFormat {
                name: NUGGETS_SUPPORT_TASK.into(),
                schema: json!({}),
            }),
        };
        let honest = [true, false, false, true, false];
        let options = SimulatedOptions {
            judge_error_rate: 0.2,
        };
        let flipped: usize = (0..400)
            .map(|seed| {
                checks(&simulated_answer_with(&request(seed), &options))
                    .iter()
                    .zip(honest)
                    .filter(|((_, s), h)| s != h)
                    .count()
            })
            .sum();
        assert!((320..480).contains(&flipped), "{flipped} of 2000 flipped");
        let all = SimulatedOptions {
            judge_error_rate: 1.0,
        };
        let inverted: Vec<bool> = checks(&simulated_answer_with(&request(0), &all))
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(inverted, honest.map(|h| !h));
    }
}
