//! Simulated answers (test and dry-run only) to the score pipeline's response prompt
//! (`configs/prompts/score_respond.md`).
//!
//! The request seed picks the quality: with an even seed (or none) the response is a good one
//! built on the key terms of `<conversation_to_answer>` (at least 12 words, naming each term);
//! with an odd seed it is [`POOR_RESPONSE`], short and vague, naming none of them. So the score
//! pipeline's responses to one conversation differ, and the simulated grader ranks them.

use serde_json::json;

use super::{key_terms, tagged};

/// The poor response: under 12 words and no word of five letters or more, so it can name no
/// key term (key terms are words of five letters or more).
pub(crate) const POOR_RESPONSE: &str = "It is hard to say; it may vary.";

/// Speaker labels of a rendered conversation, which are not its subject.
const ROLE_WORDS: &[&str] = &["assistant", "system"];

/// "a", "a and b", "a, b and c".
fn join_and(terms: &[String]) -> String {
    match terms {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The good response on `terms` (the conversation's key terms, most frequent first).
fn good_response(terms: &[String]) -> String {
    let mut text = match terms {
        [] => "Here is a careful answer: start with the main point".to_owned(),
        [first, rest @ ..] => {
            let mut text = format!(
                "On {}: {first} matters most because it decides the outcome",
                join_and(terms)
            );
            if let Some(second) = rest.first() {
                text.push_str(&format!(", and {second} should be handled with care"));
            }
            if let Some(third) = rest.get(1) {
                text.push_str(&format!("; {third} also plays a part"));
            }
            text
        }
    };
    text.push_str(". Check each point in turn before you act, and ask if anything is unclear.");
    text
}

/// The response to `prompt`'s `<conversation_to_answer>`, as `{"response": "..."}`: good for
/// an even seed or none, poor for an odd one.
pub(super) fn respond(prompt: &str, seed: Option<u64>) -> String {
    let response = if seed.is_some_and(|s| s % 2 == 1) {
        POOR_RESPONSE.to_owned()
    } else {
        let conversation = tagged(prompt, "conversation_to_answer").unwrap_or(prompt);
        let terms: Vec<String> = key_terms(conversation, 5)
            .into_iter()
            .filter(|t| !ROLE_WORDS.contains(&t.as_str()))
            .take(3)
            .collect();
        good_response(&terms)
    };
    json!({ "response": response }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::word_set;

    const PROMPT: &str = "<conversation_to_answer>\nuser: how should tomato seedlings be hardened off before planting\n\
        assistant: gradually.\nuser: how many days for tomato seedlings?\n</conversation_to_answer>";

    fn response(seed: Option<u64>) -> String {
        let value: serde_json::Value = serde_json::from_str(&respond(PROMPT, seed)).unwrap();
        value["response"].as_str().unwrap().to_owned()
    }

    #[test]
    fn even_seeds_answer_well_with_the_key_terms_and_odd_seeds_poorly_without() {
        let terms = key_terms(tagged(PROMPT, "conversation_to_answer").unwrap(), 3);
        assert!(terms.contains(&"seedlings".to_owned()), "{terms:?}");
        for seed in [None, Some(0), Some(2), Some(1_000)] {
            let good = response(seed);
            let words = word_set(&good);
            assert!(
                words.contains("tomato") && words.contains("seedlings"),
                "{good}"
            );
            assert!(!words.contains("assistant"), "{good}");
            assert!(good.split_whitespace().count() >= 12, "{good}");
        }
        for seed in [1, 3, 99] {
            let poor = response(Some(seed));
            let words = word_set(&poor);
            assert!(terms.iter().all(|t| !words.contains(t)), "{poor}");
            assert!(poor.split_whitespace().count() < 12, "{poor}");
        }
        assert_eq!(response(Some(4)), response(Some(4)));
        assert_ne!(response(Some(4)), response(Some(5)));
    }

    #[test]
    fn the_good_response_reads_well_for_any_number_of_terms() {
        assert!(good_response(&[]).starts_with("Here is a careful answer"));
        let one = good_response(&["yeast".to_owned()]);
        assert!(one.starts_with("On yeast: yeast matters most"), "{one}");
        let three: Vec<String> = ["yeast", "gluten", "flour"].map(String::from).into();
        let text = good_response(&three);
        assert!(text.starts_with("On yeast, gluten and flour: "), "{text}");
        assert!(text.contains("flour also plays a part"), "{text}");
    }
}
