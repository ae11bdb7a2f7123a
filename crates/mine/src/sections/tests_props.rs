//! Property tests: the section parser, the reference-list parser and citation resolution never
//! panic on arbitrary input, and what they return stays tied to the input.

use proptest::prelude::*;

use super::*;

/// Lines a PDF-converted survey is made of, plus arbitrary text.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "#{1,3} [A-Za-z0-9 .:|]{0,24}",
        "#{1,2} (?:[IVXL]{1,5}|[0-9]{1,2}(?:\\.[0-9]{1,2}){0,2})\\.? [A-Z][A-Za-z ]{0,20}",
        "\\[[0-9]{1,3}\\] [A-Z]\\. [A-Z][a-z]{2,8}, “[A-Za-z ]{8,30},” [A-Za-z. ]{0,20}(?:19|20)[0-9O]{2}\\.",
        "\\(?[0-9]{1,3}[.)] [A-Z][a-z]{2,8}, [A-Z]\\.(?:; [A-Z][a-z]{2,8}, [A-Z]\\.)? [A-Za-z ]{8,30}\\. [A-Za-z. ]{0,12}(?:19|20)[0-9]{2}, [0-9]{1,3}\\.",
        "[A-Z][a-z]{2,8}, [A-Z]\\. \\((?:19|20)[0-9]{2}[a-z]?\\)\\. [A-Za-z ]{8,40}\\.",
        "[A-Za-z ,;.]{0,60}(?:\\[[0-9]{1,3}(?:[,–-][0-9]{1,3})?\\]|\\([A-Z][a-z]{2,8}(?: et al\\.)?, (?:19|20)[0-9]{2}\\)|<sup>[0-9]{1,2}</sup>|Eq\\. \\([0-9]\\)\\.)[A-Za-z ,.]{0,40}",
        "(?:Funding|Conflicts of Interest|Author Contributions): [A-Za-z ]{0,40}\\.",
        "<table><tr><td>[A-Za-z0-9 ]{0,20}</td></tr></table>",
        "\\|[A-Za-z0-9 ]{0,10}\\|[A-Za-z0-9 ]{0,10}\\|",
        ".{0,80}",
        Just(String::new()),
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..60).prop_map(|lines| lines.join("\n"))
}

/// A heading number as the parser rewrites it ("2.3", "IV.", "B.").
fn is_numbering_label(word: &str) -> bool {
    let w = word.trim_end_matches('.');
    !w.is_empty()
        && (w.chars().all(|c| c.is_ascii_digit() || c == '.')
            || w.chars().all(|c| "IVXL".contains(c))
            || (w.len() == 1 && w.chars().all(|c| c.is_ascii_uppercase())))
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_section_parser_accounts_for_every_unit_and_keeps_only_input_text(
        text in document(),
        min in 0usize..300,
        extra in 1usize..3_000,
    ) {
        let opts = SectionOptions { min_section_chars: min, max_section_chars: min + extra };
        let p = parse_markdown_survey(&text, &opts);
        prop_assert_eq!(p.kept_units() + p.dropped_units() + p.merged, p.units);
        let squashed = without_whitespace(&text);
        for (i, s) in p.sections.iter().enumerate() {
            prop_assert_eq!(s.index, i);
            prop_assert!(!s.text.trim().is_empty(), "empty section {:?}", s.heading);
            prop_assert!(s.text.chars().count() <= opts.max_section_chars.max(1));
            // every word of a section is input text (headings of merged subsections are cleaned
            // of spacing, so compare without whitespace; "Introduction" may be supplied, and
            // numbering is rewritten: "02.03." → "2.3")
            for word in s.text.split_whitespace() {
                prop_assert!(
                    squashed.contains(word)
                        || word == "Introduction"
                        || is_numbering_label(word),
                    "{:?} of section {:?} is not in the input", word, s.heading
                );
            }
            for cited in &s.citations {
                prop_assert!(p.references.contains(cited));
            }
        }
    }

    #[test]
    fn the_reference_parser_returns_fields_found_in_each_entry(text in document()) {
        let refs = parse_reference_list(&text);
        let mut numbered = HashSet::new();
        for r in &refs {
            prop_assert!(!r.raw.is_empty());
            prop_assert!(!r.key.is_empty());
            if r.key.chars().all(|c| c.is_ascii_digit()) {
                prop_assert!(numbered.insert(r.key.clone()), "key {} twice", r.key);
            }
            let repaired = repair_ocr_years(&r.raw);
            if let Some(year) = &r.year {
                let digits: String = year.chars().take(4).collect();
                prop_assert!(digits.starts_with("19") || digits.starts_with("20"), "{}", year);
                prop_assert!(repaired.contains(year.as_str()), "{} not in {}", year, r.raw);
            }
            if let Some(title) = &r.title {
                prop_assert!(repaired.contains(title.as_str()), "{} not in {}", title, r.raw);
            }
        }
    }

    #[test]
    fn citation_resolution_returns_listed_works_once(
        refs_text in document(),
        body in document(),
        paren in any::<bool>(),
        superscript in any::<bool>(),
    ) {
        let refs = parse_reference_list(&refs_text);
        let index = CitationIndex::new(&refs);
        let cited = index.resolve(&body, CiteStyle { paren, superscript }, &refs);
        let mut keys = HashSet::new();
        for r in &cited {
            prop_assert!(refs.contains(r));
            prop_assert!(keys.insert((r.key.clone(), r.raw.clone())), "{} cited twice", r.key);
        }
    }
}
