//! Simulated answers to the reference prompt.
//!
//! The generator writes, from the key terms of the prompt and of the reference answer, one
//! essential criterion about the prompt's subject, one important criterion per reference key
//! term (up to the requested maximum), an optional communication criterion and one pitfall with
//! negative points. Points stay in [-10, 10], so the answers exercise the pipeline's parsing
//! and accounting, never its range checks.

use serde_json::json;

use super::{key_terms, tagged};

/// A number written in the prompt as `at most N criteria`, or `default`.
fn stated_max(prompt: &str, default: usize) -> usize {
    prompt
        .split("at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
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
