//! The stage-2 checks of the researchqa pipeline that need no model: whether a query stands
//! alone, and the rubric item checks (well-formed "Does the response …?", grounded in the
//! section it was mined from, no near-duplicate within a query). Each check says why it refuses,
//! so the pipeline can write the reason into a reject row.
//!
//! Grounding is key-term overlap: the content words of an item (stop words and rubric
//! boilerplate such as "discuss" or "explain" left out, plurals folded, words cut to a 6-character
//! stem) must
//! occur in the section's text, its heading path or the works it cites, for at least
//! `grounding_threshold` of them. Near-duplicates are found with the Jaccard similarity of the
//! items' normalised token sets (lowercased, stemmed, stop words and boilerplate removed);
//! within one query of at most a few dozen items the exact pairwise comparison is cheaper than
//! MinHash and has no false negatives.

use std::collections::HashSet;

use rubricmill_core::RubricItem;

pub use rubricmill_core::text::source_reference;

/// The stem a word is compared by: lowercased, plural "-ies"/"-s" removed, at most six
/// characters.
fn stem(word: &str) -> String {
    let lower = word.to_lowercase();
    let singular = if let Some(base) = lower.strip_suffix("ies").filter(|b| b.len() >= 2) {
        format!("{base}y")
    } else if lower.len() > 3 && lower.ends_with('s') && !lower.ends_with("ss") {
        lower[..lower.len() - 1].to_owned()
    } else {
        lower
    };
    singular.chars().take(6).collect()
}

/// Normalised content tokens of `text`: stems of words of two or more characters that are not
/// stop words.
pub fn content_stems(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .filter(|w| !rubricmill_core::text::is_stopword(&w.to_lowercase()))
        .map(stem)
        .collect()
}

/// Jaccard similarity of two token sets (1.0 for two empty sets).
pub fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let shared = a.intersection(b).count();
    shared as f64 / (a.len() + b.len() - shared) as f64
}

/// Checks the form of an item: one yes/no question starting "Does the response", of a sensible
/// length.
pub fn well_formed(item: &str) -> Result<(), String> {
    let text = item.trim();
    if !text.starts_with("Does the response ") {
        return Err("not phrased as \"Does the response …?\"".into());
    }
    if !text.ends_with('?') {
        return Err("does not end with a question mark".into());
    }
    let words = text.split_whitespace().count();
    if words < 6 {
        return Err(format!("too short to check anything ({words} words)"));
    }
    if text.chars().count() > 500 {
        return Err("longer than 500 characters".into());
    }
    Ok(())
}

/// The share of the item's content stems that occur in `section_stems` (0.0 when the item has
/// none: it asks about nothing in particular).
pub fn grounding(item: &str, section_stems: &HashSet<String>) -> f64 {
    let stems: Vec<String> = content_stems(item)
        .into_iter()
        .filter(|s| s.chars().count() >= 4)
        .collect();
    if stems.is_empty() {
        return 0.0;
    }
    let found = stems.iter().filter(|s| section_stems.contains(*s)).count();
    found as f64 / stems.len() as f64
}

/// Settings of [`check_items`].
#[derive(Debug, Clone, Copy)]
pub struct ItemChecks {
    /// Minimum grounding share; 0 turns the check off.
    pub grounding_threshold: f64,
    /// Jaccard similarity at which a later item is a near-duplicate of an earlier one.
    pub near_duplicate_threshold: f64,
}

/// Runs the item checks in order (form, grounding, near-duplicates against the items kept so
/// far). Returns the kept items and each dropped item with its reason; together they are the
/// input, in its order.
pub fn check_items(
    items: Vec<RubricItem>,
    section_stems: &HashSet<String>,
    checks: ItemChecks,
) -> (Vec<RubricItem>, Vec<(RubricItem, String)>) {
    let mut kept: Vec<(RubricItem, HashSet<String>)> = Vec::with_capacity(items.len());
    let mut dropped = Vec::new();
    for item in items {
        if let Err(reason) = well_formed(&item.rubric_item) {
            dropped.push((item, format!("malformed: {reason}")));
            continue;
        }
        if checks.grounding_threshold > 0.0 {
            let share = grounding(&item.rubric_item, section_stems);
            if share < checks.grounding_threshold {
                dropped.push((
                    item,
                    format!(
                        "not grounded in the section: {:.0}% of its key terms occur there (needs {:.0}%)",
                        share * 100.0,
                        checks.grounding_threshold * 100.0
                    ),
                ));
                continue;
            }
        }
        let tokens = content_stems(&item.rubric_item);
        let duplicate = kept.iter().enumerate().find_map(|(i, (_, other))| {
            let similarity = jaccard(&tokens, other);
            (similarity >= checks.near_duplicate_threshold).then_some((i, similarity))
        });
        if let Some((i, similarity)) = duplicate {
            dropped.push((
                item,
                format!(
                    "near-duplicate of item {} (token jaccard {similarity:.2})",
                    i + 1
                ),
            ));
            continue;
        }
        kept.push((item, tokens));
    }
    (kept.into_iter().map(|(item, _)| item).collect(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str) -> RubricItem {
        RubricItem {
            rubric_item: text.into(),
            types: vec!["Explanation".into()],
            citation_metadata: None,
        }
    }

    const SECTION: &str = "Eviction policies decide which cached prefixes survive under memory \
        pressure. LRU and frequency-based eviction are compared on shared prefixes by Okafor.";

    fn checks() -> ItemChecks {
        ItemChecks {
            grounding_threshold: 0.5,
            near_duplicate_threshold: 0.8,
        }
    }

    #[test]
    fn source_references_are_found_on_word_boundaries() {
        assert_eq!(
            source_reference("What does this survey conclude about caching?"),
            Some("this survey")
        );
        assert_eq!(
            source_reference("How do The Authors define eviction?"),
            Some("the authors")
        );
        assert_eq!(
            source_reference("How do surveys of this surveyor population differ?"),
            None
        );
        assert_eq!(
            source_reference("How do eviction policies trade hit rate for memory?"),
            None
        );
    }

    #[test]
    fn malformed_items_are_dropped_with_the_reason() {
        let (kept, dropped) = check_items(
            vec![
                item("Explains eviction policies under memory pressure."),
                item("Does the response explain eviction policies under memory pressure"),
                item("Does the response eviction?"),
                item("Does the response explain how eviction policies handle memory pressure?"),
            ],
            &content_stems(SECTION),
            checks(),
        );
        assert_eq!(kept.len(), 1);
        let reasons: Vec<&str> = dropped.iter().map(|(_, r)| r.as_str()).collect();
        assert!(reasons[0].contains("Does the response"), "{reasons:?}");
        assert!(reasons[1].contains("question mark"), "{reasons:?}");
        assert!(reasons[2].contains("too short"), "{reasons:?}");
    }

    #[test]
    fn ungrounded_items_are_dropped_and_the_check_can_be_turned_off() {
        let items = vec![
            item("Does the response compare LRU and frequency-based eviction of shared prefixes?"),
            item("Does the response describe quantum annealing hardware for protein folding?"),
        ];
        let stems = content_stems(SECTION);
        let (kept, dropped) = check_items(items.clone(), &stems, checks());
        assert_eq!(kept, items[..1]);
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].1.contains("not grounded"), "{}", dropped[0].1);
        assert!(grounding(&items[0].rubric_item, &stems) >= 0.99);
        assert!(grounding(&items[1].rubric_item, &stems) < 0.01);
        let off = ItemChecks {
            grounding_threshold: 0.0,
            ..checks()
        };
        assert_eq!(check_items(items, &stems, off).0.len(), 2);
    }

    #[test]
    fn near_duplicates_within_a_query_are_dropped_keeping_the_first() {
        let items = vec![
            item("Does the response explain how eviction policies handle memory pressure?"),
            item("Does the response explain how the eviction policy handles memory pressure?"),
            item("Does the response compare LRU and frequency-based eviction on shared prefixes?"),
        ];
        let (kept, dropped) = check_items(items.clone(), &content_stems(SECTION), checks());
        assert_eq!(kept, vec![items[0].clone(), items[2].clone()]);
        assert_eq!(dropped.len(), 1);
        assert!(
            dropped[0].1.starts_with("near-duplicate of item 1"),
            "{}",
            dropped[0].1
        );
        // At threshold 1.0 only identical token sets are duplicates.
        let exact = ItemChecks {
            near_duplicate_threshold: 1.0,
            ..checks()
        };
        let (kept, _) = check_items(items, &content_stems(SECTION), exact);
        assert_eq!(
            kept.len(),
            2,
            "policies/policy stem alike, handle/handles too"
        );
    }

    #[test]
    fn jaccard_of_token_sets() {
        let a = content_stems("eviction policies memory");
        let b = content_stems("eviction policy pressure");
        assert!((jaccard(&a, &b) - 0.5).abs() < 1e-9, "{}", jaccard(&a, &b));
        assert_eq!(jaccard(&HashSet::new(), &HashSet::new()), 1.0);
    }
}
