//! Simulated answers (test and dry-run only) to the reference prompts.
//!
//! The generator writes, from the key terms of the prompt and of the reference answer, one
//! essential criterion about the prompt's subject, one important criterion per reference key
//! term (up to the requested maximum), an optional communication criterion and one pitfall with
//! negative points. Points stay in [-10, 10], so the answers exercise the pipeline's parsing
//! and accounting, never its range checks.
//!
//! The degrader (the self-check's worse answer) always writes [`DEGRADED_ANSWER`]: a short,
//! hedged answer whose only words of five letters or more are those of [`PITFALL_MARKER`], so
//! it holds none of the reference's key terms (which [`key_terms`] draws from words of five
//! letters or more) and the simulated grader finds the pitfall in it.

use serde_json::json;

use super::{key_terms, stated_max, tagged};

/// The phrase that makes the simulated grader count a pitfall criterion as met; the
/// degraded answer carries it.
pub(crate) const PITFALL_MARKER: &str = "contrary to common advice";

/// The simulated degraded answer: under 12 words (so the grader's "enough words" rule for
/// criteria without key terms never credits it), and no word of five letters or more besides
/// the marker's.
pub(crate) const DEGRADED_ANSWER: &str = "Hard to say; contrary to common advice, you can skip it.";

/// The degraded answer to the `<answer_to_degrade>` of `prompt`, as `{"answer": "..."}`. It is
/// the same for every prompt: it can hold none of the reference's key terms only by naming
/// nothing at all.
pub(super) fn degrade(_prompt: &str) -> String {
    json!({ "answer": DEGRADED_ANSWER }).to_string()
}

pub(super) fn generate(prompt: &str) -> String {
    let conversation = tagged(prompt, "prompt").unwrap_or(prompt);
    let reference = tagged(prompt, "reference_answer").unwrap_or("");
    let max = stated_max(prompt, 6).max(2);
    let subject = key_terms(conversation, 2);
    let subject = if subject.is_empty() {
        "the user's question".to_owned()
    } else {
        subject.join(" and ")
    };
    let mut criteria = vec![json!({
        "criterion": format!("The response directly answers the question about {subject}."),
        "points": 8,
        "category": "essential",
        "tags": ["axis:completeness", "level:example"],
    })];
    for term in key_terms(reference, 3) {
        if criteria.len() + 1 >= max {
            break;
        }
        criteria.push(json!({
            "criterion": format!("The response explains the role of {term}."),
            "points": 5,
            "category": "important",
            "tags": ["axis:accuracy", "level:example"],
        }));
    }
    if criteria.len() + 1 < max {
        criteria.push(json!({
            "criterion": "The response is clear and well organised.",
            "points": 2,
            "category": "optional",
            "tags": ["axis:communication_quality", "level:example"],
        }));
    }
    criteria.push(json!({
        "criterion": format!("The response makes a factual claim about {subject} that the evidence contradicts."),
        "points": -6,
        "category": "pitfall",
        "tags": ["axis:accuracy", "level:example"],
    }));
    json!({ "criteria": criteria }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::word_set;

    #[test]
    fn the_degraded_answer_has_the_marker_and_none_of_the_reference_terms() {
        let reference = "Move seedlings outdoors gradually over a week; shelter seedlings from wind \
            and water them in the morning before the afternoon sun.";
        let prompt = format!(
            "<prompt>\nuser: how should tomato seedlings be hardened off\n</prompt>\n\
             <answer_to_degrade>\n{reference}\n</answer_to_degrade>"
        );
        let answer: serde_json::Value = serde_json::from_str(&degrade(&prompt)).unwrap();
        let text = answer["answer"].as_str().unwrap();
        assert!(text.to_lowercase().contains(PITFALL_MARKER), "{text}");
        let words = word_set(text);
        for term in key_terms(reference, 40) {
            assert!(!words.contains(&term), "{term} in {text}");
        }
        assert!(text.split_whitespace().count() < 12, "{text}");
        assert_eq!(degrade(&prompt), degrade(&prompt));
        // Only the marker's words are five letters or more, so no key term can slip in.
        let long: Vec<String> = words.into_iter().filter(|w| w.len() >= 5).collect();
        assert!(
            long.iter().all(|w| PITFALL_MARKER.contains(w.as_str())),
            "{long:?}"
        );
    }

    #[test]
    fn generate_reads_the_maximum_even_with_trailing_punctuation() {
        let prompt = "Write at most 3 criteria, at least 2.\n<prompt>\nuser: why does bread rise\n</prompt>\n\
            <reference_answer>\nYeast ferments sugars and releases carbon dioxide; gluten traps the gas.\n</reference_answer>";
        let answer: serde_json::Value = serde_json::from_str(&generate(prompt)).unwrap();
        let criteria = answer["criteria"].as_array().unwrap();
        assert_eq!(criteria.len(), 3, "{criteria:?}");
        assert_eq!(criteria.last().unwrap()["category"], "pitfall");
        assert_eq!(stated_max("Write at most 7.", 1), 7);
        assert_eq!(stated_max("no limit here", 4), 4);
    }
}
