//! Simulated answers to the researchqa prompts.

use serde_json::json;

use super::{key_terms, tagged, topic_of};

/// A query and typed rubric items from the section's heading, key terms and cited works.
pub(super) fn generate(prompt: &str) -> String {
    let heading = tagged(prompt, "section_heading").unwrap_or("the topic");
    let text = tagged(prompt, "section_text").unwrap_or(prompt);
    let max_items = tagged(prompt, "max_items")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(8)
        .max(1);
    let topic = topic_of(heading);
    let terms = key_terms(text, 6);
    let term = |i: usize| terms.get(i).cloned().unwrap_or_else(|| topic.clone());
    let query = format!(
        "What are the main approaches to {topic} in the literature, and how do they differ in their treatment of {} and {}?",
        term(0),
        term(1)
    );
    let mut rubric = vec![
        json!({"item": format!("Does the response explain the role of {} in {topic}?", term(0)), "types": ["Explanation"], "citation": null}),
        json!({"item": format!("Does the response compare how different methods handle {} and {}?", term(1), term(2)), "types": ["Comparison"], "citation": null}),
    ];
    let cited: Vec<&str> = tagged(prompt, "cited_works")
        .map(|w| w.lines().collect())
        .unwrap_or_default();
    for work in cited.iter().filter(|w| w.starts_with('[')).take(2) {
        let Some((key, rest)) = work[1..].split_once(']') else {
            continue;
        };
        let author = rest
            .trim()
            .split(['(', ',', '.'])
            .next()
            .unwrap_or("")
            .trim();
        let subject = if author.is_empty() {
            format!("reference [{key}]")
        } else {
            author.to_owned()
        };
        rubric.push(json!({
            "item": format!("Does the response cite the work of {subject} on {}?", term(3)),
            "types": ["Citation"],
            "citation": key,
        }));
    }
    rubric.push(json!({"item": format!("Does the response discuss the limitations of current work on {}?", term(4)), "types": ["Limitation"], "citation": null}));
    rubric.push(json!({"item": format!("Does the response describe the practical impact of {} on {topic}?", term(5)), "types": ["Impact"], "citation": null}));
    rubric.truncate(max_items);
    json!({"query": query, "rubric": rubric}).to_string()
}
