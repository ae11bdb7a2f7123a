//! Simulated answers to the crg prompts.
//!
//! The generator writes, first, a contrast rule quoting up to three words of the chosen
//! response that the rejected one lacks (“…” quotes), then hard rules from the constraints the
//! conversation states, then three principles picked by a hash of the conversation and the
//! request seed (so a regenerated rubric differs). The judge scores each response by how many
//! quoted words of the rubric it contains and prefers the higher score ("tie" when equal); it
//! therefore recovers the human label whenever the rubric holds a contrast rule, and errs (picks
//! the other response) when the caller's error draw says so.

use std::collections::HashSet;

use serde_json::json;

use super::{key_terms, tagged};

/// Explicit constraints a prompt states, as hard rules.
fn hard_rules(request_text: &str) -> Vec<String> {
    let lower = request_text.to_lowercase();
    let mut rules = Vec::new();
    let checks: [(&str, &str); 6] = [
        ("bullet", "The response is formatted as a bulleted list."),
        ("list", "The response presents its answer as a list."),
        (
            "words",
            "The response respects the length limit the user set.",
        ),
        ("in french", "The response is written in French."),
        ("in spanish", "The response is written in Spanish."),
        ("step", "The response explains the answer step by step."),
    ];
    for (cue, rule) in checks {
        if lower.contains(cue) && !rules.iter().any(|r: &String| r == rule) {
            rules.push(rule.to_owned());
        }
    }
    let terms = key_terms(request_text, 2);
    let subject = if terms.is_empty() {
        "the user's request".to_owned()
    } else {
        terms.join(" and ")
    };
    rules.insert(
        0,
        format!("The response directly addresses the user's question about {subject}."),
    );
    rules
}

const PRINCIPLES: &[&str] = &[
    "The response is factually accurate and avoids unsupported claims.",
    "The response is organised so the key point comes first.",
    "The response declines harmful requests while offering a safe alternative.",
    "The response uses plain language suited to the user's apparent expertise.",
    "The response stays concise and avoids irrelevant detail.",
    "The response acknowledges uncertainty where the evidence is incomplete.",
];

/// Lowercase words of `text` (letters and digits).
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Up to three words of `chosen` that `rejected` lacks: its key terms first, then any word of
/// three letters or more.
fn contrast_terms(chosen: &str, rejected: &str) -> Vec<String> {
    let absent = words(rejected);
    let mut terms: Vec<String> = key_terms(chosen, 40)
        .into_iter()
        .filter(|t| !absent.contains(t))
        .take(3)
        .collect();
    if terms.is_empty() {
        for word in chosen.split(|c: char| !c.is_alphabetic()) {
            let word = word.to_lowercase();
            if word.chars().count() >= 3 && !absent.contains(&word) && !terms.contains(&word) {
                terms.push(word);
            }
            if terms.len() == 3 {
                break;
            }
        }
    }
    terms
}

/// A contrast rule, hard rules from the constraints the conversation states, and principles
/// picked by a hash of the conversation and `seed`.
pub(super) fn generate(prompt: &str, seed: Option<u64>) -> String {
    let conversation = tagged(prompt, "conversation").unwrap_or(prompt);
    let mut items: Vec<serde_json::Value> = Vec::new();
    if let (Some(chosen), Some(rejected)) = (
        tagged(prompt, "chosen_response"),
        tagged(prompt, "rejected_response"),
    ) {
        let terms = contrast_terms(chosen, rejected);
        if !terms.is_empty() {
            let quoted: Vec<String> = terms.iter().map(|t| format!("“{t}”")).collect();
            items.push(json!({
                "text": format!("The response covers {}.", quoted.join(", ")),
                "kind": "hard_rule",
            }));
        }
    }
    items.extend(
        hard_rules(conversation)
            .into_iter()
            .map(|text| json!({"text": text, "kind": "hard_rule"})),
    );
    let salt = seed.map(|s| s.to_string()).unwrap_or_default();
    let hash = rubricmill_core::content_hash(format!("{conversation}\u{0}{salt}").as_bytes());
    let start = usize::from_str_radix(&hash[..2], 16).unwrap_or(0) % PRINCIPLES.len();
    for offset in 0..3 {
        let text = PRINCIPLES[(start + offset) % PRINCIPLES.len()];
        items.push(json!({"text": text, "kind": "principle"}));
    }
    json!({"items": items}).to_string()
}

/// The judge's preference between `<response_a>` and `<response_b>` under `<rubric>`: the
/// response containing more of the rubric's quoted words; flipped when `errs`.
pub(super) fn judge(prompt: &str, errs: bool) -> String {
    let rubric = tagged(prompt, "rubric").unwrap_or("");
    let terms: Vec<String> = rubric
        .split('“')
        .skip(1)
        .filter_map(|rest| rest.split_once('”').map(|(term, _)| term.to_lowercase()))
        .collect();
    let score = |tag: &str| {
        let present = words(tagged(prompt, tag).unwrap_or(""));
        terms.iter().filter(|t| present.contains(*t)).count()
    };
    let (a, b) = (score("response_a"), score("response_b"));
    let honest = match a.cmp(&b) {
        std::cmp::Ordering::Greater => "A",
        std::cmp::Ordering::Less => "B",
        std::cmp::Ordering::Equal => "tie",
    };
    let preferred = match (errs, honest) {
        (false, p) => p,
        (true, "A") => "B",
        (true, _) => "A",
    };
    json!({
        "preferred": preferred,
        "reason": format!("response A meets {a} and response B meets {b} of the rubric's contrast criteria"),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulated::{CRG_JUDGE_TASK, SimulatedOptions, request_draw, simulated_answer_with};
    use crate::{ChatRequest, ResponseFormat};
    use rubricmill_core::Message;

    fn preferred(answer: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(answer).unwrap();
        value["preferred"].as_str().unwrap().to_owned()
    }

    fn judge_prompt(a: &str, b: &str) -> String {
        format!(
            "<rubric>\n1. The response covers “ginger”, “honey”. [Hard Rule]\n</rubric>\n<response_a>\n{a}\n</response_a>\n<response_b>\n{b}\n</response_b>"
        )
    }

    #[test]
    fn the_contrast_rule_quotes_words_only_the_chosen_response_has() {
        let prompt = "<conversation>user: what helps a sore throat</conversation>\n\
            <chosen_response>Warm tea with ginger and honey soothes it.</chosen_response>\n\
            <rejected_response>Just ignore it, tea is useless.</rejected_response>";
        let answer: serde_json::Value = serde_json::from_str(&generate(prompt, None)).unwrap();
        let first = answer["items"][0]["text"].as_str().unwrap();
        assert!(first.contains("“ginger”"), "{first}");
        assert!(first.contains("“honey”"), "{first}");
        assert!(
            !first.contains("“tea”"),
            "tea is in both responses: {first}"
        );
        // Another seed may pick other principles, never another contrast rule.
        let other: serde_json::Value = serde_json::from_str(&generate(prompt, Some(7))).unwrap();
        assert_eq!(other["items"][0]["text"], answer["items"][0]["text"]);
    }

    #[test]
    fn the_judge_follows_the_rubric_in_both_orders_and_errs_on_demand() {
        let good = "Ginger and honey in warm water.";
        let bad = "Nothing helps.";
        assert_eq!(preferred(&judge(&judge_prompt(good, bad), false)), "A");
        assert_eq!(preferred(&judge(&judge_prompt(bad, good), false)), "B");
        assert_eq!(preferred(&judge(&judge_prompt(good, bad), true)), "B");
        assert_eq!(preferred(&judge(&judge_prompt(bad, bad), false)), "tie");
        assert_eq!(preferred(&judge(&judge_prompt(bad, bad), true)), "A");
    }

    #[test]
    fn the_error_rate_is_met_and_each_request_draws_alike_every_time() {
        let request = |seed: u64| ChatRequest {
            model: "m".into(),
            messages: vec![Message::new(
                "user",
                judge_prompt("Ginger and honey.", "Nothing."),
            )],
            temperature: 0.0,
            max_tokens: 100,
            seed: Some(seed),
            response_format: Some(ResponseFormat {
                name: CRG_JUDGE_TASK.into(),
                schema: json!({}),
            }),
        };
        let options = SimulatedOptions {
            judge_error_rate: 0.3,
        };
        let wrong = (0..2000)
            .filter(|&seed| preferred(&simulated_answer_with(&request(seed), &options)) == "B")
            .count();
        assert!((500..700).contains(&wrong), "{wrong} of 2000 answers wrong");
        assert_eq!(request_draw(&request(5)), request_draw(&request(5)));
        assert_ne!(request_draw(&request(5)), request_draw(&request(6)));
        let never = SimulatedOptions::default();
        assert!((0..200).all(|s| preferred(&simulated_answer_with(&request(s), &never)) == "A"));
    }
}
