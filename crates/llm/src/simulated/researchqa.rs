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
    // A model that follows the prompt never ties the query to its source document.
    let mut topic = topic_of(heading);
    for phrase in rubricmill_core::text::SOURCE_REFERENCES {
        topic = topic.replace(phrase, "the field");
    }
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

/// `response_format` name of the researchqa query judge.
pub const RESEARCHQA_JUDGE_TASK: &str = "researchqa_query_judge";
/// `response_format` name of the researchqa field classification.
pub const RESEARCHQA_CLASSIFY_TASK: &str = "researchqa_classify";

/// A verdict on the query between `<query>` tags: mostly accepting, but a query that points at
/// its source document is not standalone and one of fewer than eight words is not specific.
pub(super) fn judge(prompt: &str) -> String {
    let query = tagged(prompt, "query").unwrap_or("");
    let words = query.split_whitespace().count();
    let mention = rubricmill_core::text::source_reference(query);
    let standalone = mention.is_none();
    let specific = words >= 8;
    let answerable = !key_terms(query, 1).is_empty();
    let reason = match (mention, specific, answerable) {
        (Some(phrase), _, _) => format!("the query refers to its source (\"{phrase}\")"),
        (None, false, _) => format!("the query is too vague ({words} words)"),
        (None, true, false) => "the query names no research topic".to_owned(),
        (None, true, true) => "standalone, specific and answerable from the literature".to_owned(),
    };
    json!({"standalone": standalone, "specific": specific, "answerable": answerable, "reason": reason})
        .to_string()
}

/// The taxonomy entry (one per line between `<taxonomy>` tags) whose words occur most often in
/// the document's title (weighted three times) and excerpt; ties go to the earlier entry.
pub(super) fn classify(prompt: &str) -> String {
    let title = tagged(prompt, "document_title")
        .unwrap_or("")
        .to_lowercase();
    let excerpt = tagged(prompt, "document_excerpt")
        .unwrap_or("")
        .to_lowercase();
    let entries: Vec<&str> = tagged(prompt, "taxonomy")
        .map(|t| {
            t.lines()
                .map(|l| l.trim().trim_start_matches("- ").trim())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let score = |entry: &str| -> usize {
        entry
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() >= 4)
            .map(|w| {
                let w = w.to_lowercase();
                3 * title.matches(w.as_str()).count() + excerpt.matches(w.as_str()).count()
            })
            .sum()
    };
    let mut best: Option<(&str, usize)> = None;
    for entry in entries {
        let s = score(entry);
        if best.is_none_or(|(_, top)| s > top) {
            best = Some((entry, s));
        }
    }
    json!({"label": best.map(|(e, _)| e).unwrap_or("")}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(query: &str) -> serde_json::Value {
        let prompt =
            format!("<context_heading>2 Caching</context_heading>\n<query>{query}</query>");
        serde_json::from_str(&judge(&prompt)).unwrap()
    }

    #[test]
    fn the_judge_accepts_specific_standalone_queries_only() {
        let good = verdict(
            "How do eviction policies for prefix caches trade hit rate against memory pressure?",
        );
        assert_eq!(good["standalone"], true);
        assert_eq!(good["specific"], true);
        assert_eq!(good["answerable"], true);
        let tied = verdict("What does this survey conclude about eviction policies for caches?");
        assert_eq!(tied["standalone"], false);
        assert!(tied["reason"].as_str().unwrap().contains("this survey"));
        let vague = verdict("What about caching?");
        assert_eq!(vague["standalone"], true);
        assert_eq!(vague["specific"], false);
    }

    #[test]
    fn the_classifier_picks_the_entry_matching_the_document() {
        let prompt = "<taxonomy>\nMedicine > Oncology > Precision Oncology\nComputer Science > \
            Information Retrieval > Recommender Systems\n</taxonomy>\n<document_title>Fairness in \
            recommender systems</document_title>\n<document_excerpt>\nRecommender systems rank items \
            for users.\n</document_excerpt>";
        let answer: serde_json::Value = serde_json::from_str(&classify(prompt)).unwrap();
        assert_eq!(
            answer["label"],
            "Computer Science > Information Retrieval > Recommender Systems"
        );
    }

    #[test]
    fn generated_queries_never_name_their_source() {
        let prompt = "<max_items>3</max_items>\n<section_heading>1 Scope of this survey</section_heading>\n\
            <section_text>Eviction policies decide which cached prefixes survive.</section_text>";
        let answer: serde_json::Value = serde_json::from_str(&generate(prompt)).unwrap();
        let query = answer["query"].as_str().unwrap();
        assert!(!query.contains("this survey"), "{query}");
    }
}
