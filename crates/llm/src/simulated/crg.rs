//! Simulated answers to the crg prompts.

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

/// Hard rules from the constraints the conversation states, plus principles picked by a hash
/// of the conversation.
pub(super) fn generate(prompt: &str) -> String {
    let conversation = tagged(prompt, "conversation").unwrap_or(prompt);
    let mut items: Vec<serde_json::Value> = hard_rules(conversation)
        .into_iter()
        .map(|text| json!({"text": text, "kind": "hard_rule"}))
        .collect();
    let seed = rubricmill_core::content_hash(conversation.as_bytes());
    let start = usize::from_str_radix(&seed[..2], 16).unwrap_or(0) % PRINCIPLES.len();
    for offset in 0..3 {
        let text = PRINCIPLES[(start + offset) % PRINCIPLES.len()];
        items.push(json!({"text": text, "kind": "principle"}));
    }
    json!({"items": items}).to_string()
}
