//! Simulated answers (test and dry-run only) to the rubric grader prompt
//! (`configs/prompts/rubric_grade.md`), shared by the reference self-check and the score
//! pipeline.
//!
//! Every line of `<rubric_criteria>` formatted `[<n>] (<signed points> points) <text>` is a
//! criterion (a line that is not continues the criterion before it). Each gets one verdict, in
//! order:
//! - positive points: met when at least half of the criterion's key terms ([`key_terms`], less
//!   the generic rubric words of [`GENERIC_WORDS`]) are words of `<graded_response>`
//!   (case-insensitive, whole words); with no key term left, met when the response has at least
//!   [`ENOUGH_WORDS`] words. The pitfall marker is cut out of the response first, so it never
//!   earns positive points.
//! - negative points (a pitfall): met when the response contains [`PITFALL_MARKER`]
//!   (case-insensitive), the phrase the simulated degraded answer carries.
//!
//! The caller's `errs(n)` flips the verdict of criterion `n` (the judge error rate).

use serde_json::json;

use super::reference::PITFALL_MARKER;
use super::{key_terms, numbered_line, tagged, word_set};

/// Rubric words that say nothing about the content a criterion asks for.
pub(crate) const GENERIC_WORDS: &[&str] = &[
    "response",
    "responses",
    "states",
    "explains",
    "mentions",
    "provides",
    "includes",
    "clear",
    "question",
    "directly",
    "answers",
    "about",
    "organised",
    "organized",
    "factual",
    "claim",
    "evidence",
    "contradicts",
    "makes",
    "role",
    // Further verbs and adverbs of rubric phrasing ("The response names ...").
    "names",
    "describes",
    "recommends",
    "identifies",
    "discusses",
    "addresses",
    "covers",
    "notes",
    "suggests",
    "advises",
    "warns",
    "gives",
    "lists",
    "specifies",
    "correctly",
    "accurately",
    "clearly",
];

/// Words a response needs to meet a positive criterion that names nothing specific.
pub(crate) const ENOUGH_WORDS: usize = 12;

/// One line of `<rubric_criteria>`.
#[derive(Debug, Clone, PartialEq)]
struct Criterion {
    number: u64,
    points: i64,
    text: String,
}

/// `[<n>] (<signed points> points) <text>`.
fn parse_criterion(line: &str) -> Option<Criterion> {
    let (number, rest) = numbered_line(line)?;
    let (points, text) = rest.strip_prefix('(')?.split_once(')')?;
    let points = points.split_whitespace().next()?.parse().ok()?;
    Some(Criterion {
        number,
        points,
        text: text.trim().to_owned(),
    })
}

fn criteria(section: &str) -> Vec<Criterion> {
    let mut criteria: Vec<Criterion> = Vec::new();
    for line in section.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match parse_criterion(line) {
            Some(criterion) => criteria.push(criterion),
            None => {
                if let Some(last) = criteria.last_mut() {
                    last.text.push(' ');
                    last.text.push_str(line);
                }
            }
        }
    }
    criteria
}

/// The key terms of a criterion, less the generic rubric words.
fn content_terms(text: &str) -> Vec<String> {
    key_terms(text, 40)
        .into_iter()
        .filter(|t| !GENERIC_WORDS.contains(&t.as_str()))
        .collect()
}

/// The honest verdict on one criterion and its one-sentence rationale.
fn honest_verdict(criterion: &Criterion, response: &str) -> (bool, String) {
    let lower = response.to_lowercase();
    if criterion.points < 0 {
        return if lower.contains(PITFALL_MARKER) {
            (
                true,
                "The response makes the mistake this pitfall describes.".to_owned(),
            )
        } else {
            (
                false,
                "The response does not make the mistake this pitfall describes.".to_owned(),
            )
        };
    }
    let unmarked = lower.replace(PITFALL_MARKER, " ");
    let terms = content_terms(&criterion.text);
    if terms.is_empty() {
        let count = unmarked.split_whitespace().count();
        return (
            count >= ENOUGH_WORDS,
            format!("The criterion names nothing specific and the response has {count} words."),
        );
    }
    let words = word_set(&unmarked);
    let present = terms.iter().filter(|t| words.contains(*t)).count();
    (
        2 * present >= terms.len(),
        format!(
            "The response names {present} of the criterion's {} key terms ({}).",
            terms.len(),
            terms.join(", ")
        ),
    )
}

/// The verdicts on every criterion of `prompt`'s `<rubric_criteria>` for its
/// `<graded_response>`, as `{"verdicts": [{"criterion", "met", "rationale"}]}`; `errs(n)` flips
/// criterion `n`'s verdict.
pub(super) fn grade(prompt: &str, errs: impl Fn(u64) -> bool) -> String {
    let response = tagged(prompt, "graded_response").unwrap_or("");
    let verdicts: Vec<serde_json::Value> =
        criteria(tagged(prompt, "rubric_criteria").unwrap_or(""))
            .iter()
            .map(|criterion| {
                let (met, rationale) = honest_verdict(criterion, response);
                json!({
                    "criterion": criterion.number,
                    "met": met != errs(criterion.number),
                    "rationale": rationale,
                })
            })
            .collect();
    json!({ "verdicts": verdicts }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::reference::DEGRADED_ANSWER;
    use crate::simulated::{RUBRIC_GRADE_TASK, SimulatedOptions, simulated_answer_with};
    use crate::{ChatRequest, ResponseFormat};
    use rubricmill_core::Message;

    const CRITERIA: &str = "[1] (+8 points) The response names yeast and fermentation.\n\
        [2] (+5 points) The response explains the role of gluten.\n\
        [3] (+2 points) The response is clear and well organised.\n\
        [4] (-6 points) The response makes a factual claim about bread that the evidence contradicts.";

    fn prompt(response: &str) -> String {
        format!(
            "<conversation_to_grade>\nuser: why does bread rise\n</conversation_to_grade>\n\
             <rubric_criteria>\n{CRITERIA}\n</rubric_criteria>\n<graded_response>\n{response}\n</graded_response>"
        )
    }

    fn verdicts(answer: &str) -> Vec<(u64, bool)> {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                assert!(!v["rationale"].as_str().unwrap().is_empty());
                (
                    v["criterion"].as_u64().unwrap(),
                    v["met"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn criteria_lines_are_parsed_with_signed_points() {
        let parsed = criteria(CRITERIA);
        assert_eq!(parsed.len(), 4);
        assert_eq!((parsed[0].number, parsed[0].points), (1, 8));
        assert_eq!((parsed[3].number, parsed[3].points), (4, -6));
        assert_eq!(parsed[1].text, "The response explains the role of gluten.");
        assert_eq!(content_terms(&parsed[1].text), ["gluten"]);
        assert!(content_terms(&parsed[2].text).is_empty());
        let wrapped =
            criteria("[1] (+3 points) The response names\n  sourdough.\n[2] (-1 point) Bad.");
        assert_eq!(wrapped[0].text, "The response names sourdough.");
        assert_eq!(wrapped[1].points, -1);
    }

    #[test]
    fn a_good_response_meets_the_positives_and_avoids_the_pitfall() {
        let good = "Yeast drives fermentation: it eats sugars and releases carbon dioxide, \
                    and the GLUTEN network traps the gas so the dough rises.";
        assert_eq!(
            verdicts(&grade(&prompt(good), |_| false)),
            [(1, true), (2, true), (3, true), (4, false)]
        );
    }

    #[test]
    fn half_the_key_terms_are_enough_and_short_answers_miss_the_generic_criterion() {
        let partial = "Yeast does it.";
        assert_eq!(
            verdicts(&grade(&prompt(partial), |_| false)),
            [(1, true), (2, false), (3, false), (4, false)]
        );
    }

    #[test]
    fn the_degraded_answer_meets_only_the_pitfall() {
        assert_eq!(
            verdicts(&grade(&prompt(DEGRADED_ANSWER), |_| false)),
            [(1, false), (2, false), (3, false), (4, true)]
        );
        // The marker alone never earns positive points, even when its words are key terms.
        let marker_terms = "[1] (+4 points) The response mentions common advice.\n\
                            [2] (-3 points) The response gives bad advice.";
        let answer = grade(
            &format!(
                "<rubric_criteria>\n{marker_terms}\n</rubric_criteria>\n\
                 <graded_response>\nCONTRARY to common advice, skip it.\n</graded_response>"
            ),
            |_| false,
        );
        assert_eq!(verdicts(&answer), [(1, false), (2, true)]);
    }

    #[test]
    fn errs_flips_single_verdicts_and_the_error_rate_flips_about_that_share() {
        let good = "Yeast drives fermentation and gluten traps the gas in the dough so the loaf rises well.";
        assert_eq!(
            verdicts(&grade(&prompt(good), |n| n == 2)),
            [(1, true), (2, false), (3, true), (4, false)]
        );
        let request = |seed: u64| ChatRequest {
            model: "m".into(),
            messages: vec![Message::new("user", prompt(good))],
            temperature: 0.0,
            max_tokens: 400,
            seed: Some(seed),
            response_format: Some(ResponseFormat {
                name: RUBRIC_GRADE_TASK.into(),
                schema: json!({}),
            }),
        };
        let honest = [true, true, true, false];
        let options = SimulatedOptions {
            judge_error_rate: 0.25,
        };
        let mut flipped = 0;
        let mut mixed = false;
        for seed in 0..500 {
            let answer = simulated_answer_with(&request(seed), &options);
            assert_eq!(answer, simulated_answer_with(&request(seed), &options));
            let wrong: Vec<bool> = verdicts(&answer)
                .iter()
                .zip(honest)
                .map(|((_, met), h)| *met != h)
                .collect();
            flipped += wrong.iter().filter(|w| **w).count();
            mixed |= wrong.iter().any(|w| *w) && !wrong.iter().all(|w| *w);
        }
        assert!(
            (400..600).contains(&flipped),
            "{flipped} of 2000 verdicts flipped"
        );
        assert!(mixed, "criteria of one request draw apart");
        let never = SimulatedOptions::default();
        let answer = simulated_answer_with(&request(1), &never);
        assert_eq!(
            verdicts(&answer)
                .into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>(),
            honest
        );
    }
}
