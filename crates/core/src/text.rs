//! Shared word lists for text checks: the pipelines' filters and the simulated provider that
//! must agree with them.

/// Phrases that tie a text to the document it was mined from ("this survey", "the authors");
/// a standalone research query contains none of them.
pub const SOURCE_REFERENCES: &[&str] = &[
    "this survey",
    "this section",
    "this paper",
    "this review",
    "this article",
    "this chapter",
    "this work",
    "the authors",
    "the survey",
    "the present review",
    "the present survey",
    "in the above",
];

/// Common English words that carry no topic (sorted, for binary search).
pub const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "across",
    "address",
    "addresses",
    "after",
    "again",
    "against",
    "all",
    "also",
    "among",
    "an",
    "and",
    "another",
    "any",
    "approach",
    "approaches",
    "are",
    "as",
    "assistant",
    "at",
    "based",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "by",
    "can",
    "cannot",
    "cite",
    "cites",
    "compare",
    "compares",
    "concept",
    "could",
    "current",
    "define",
    "della",
    "describe",
    "describes",
    "detail",
    "different",
    "discuss",
    "discusses",
    "do",
    "does",
    "doing",
    "during",
    "each",
    "either",
    "every",
    "explain",
    "explains",
    "first",
    "following",
    "for",
    "found",
    "from",
    "further",
    "give",
    "given",
    "have",
    "having",
    "how",
    "however",
    "human",
    "identify",
    "in",
    "include",
    "includes",
    "including",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "large",
    "later",
    "like",
    "made",
    "make",
    "many",
    "mention",
    "mentions",
    "might",
    "more",
    "most",
    "much",
    "must",
    "note",
    "of",
    "on",
    "only",
    "or",
    "other",
    "others",
    "outline",
    "over",
    "paper",
    "papers",
    "previous",
    "provide",
    "provides",
    "rather",
    "recent",
    "response",
    "review",
    "role",
    "same",
    "section",
    "several",
    "should",
    "show",
    "shown",
    "since",
    "some",
    "studies",
    "study",
    "such",
    "survey",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "three",
    "through",
    "thus",
    "to",
    "under",
    "until",
    "use",
    "used",
    "using",
    "various",
    "very",
    "well",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "why",
    "with",
    "within",
    "without",
    "work",
    "works",
    "would",
    "your",
];

/// True for words in [`STOPWORDS`] (expects lowercase).
pub fn is_stopword(word: &str) -> bool {
    STOPWORDS.binary_search(&word).is_ok()
}

/// The first source reference `text` contains on word boundaries, if any (case-insensitive).
pub fn source_reference(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    SOURCE_REFERENCES
        .iter()
        .copied()
        .find(|phrase| contains_phrase(&lower, phrase))
}

/// `phrase` occurs in `text` on word boundaries.
fn contains_phrase(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        before.is_none_or(|c| !c.is_alphanumeric()) && after.is_none_or(|c| !c.is_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwords_are_sorted_and_found() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stopword("which"));
        assert!(!is_stopword("fairness"));
        assert_eq!(
            source_reference("What does This Survey conclude?"),
            Some("this survey")
        );
        assert_eq!(source_reference("How do caches evict prefixes?"), None);
        assert_eq!(
            source_reference("Is this surveyor's method sound?"),
            None,
            "word boundaries"
        );
    }
}
