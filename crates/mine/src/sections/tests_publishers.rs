//! Section detection on surveys from publishers and converters the first rules were not written
//! for: each test is one defect seen on unseen surveys, with a small hand-written input.

use super::tests::{accounted, opts, para};
use super::*;

/// Prose with ordinary word lengths (the `para` helper's tokens are short and unique).
fn prose(sentences: usize, topic: &str) -> String {
    (0..sentences)
        .map(|i| {
            format!(
                "Work on {topic} number {i} compares several models and reports that the results depend on the data used for training."
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn headings(p: &ParsedSurvey) -> Vec<&str> {
    p.sections.iter().map(|s| s.heading.as_str()).collect()
}

fn reasons(p: &ParsedSurvey) -> Vec<String> {
    p.dropped
        .iter()
        .map(|d| format!("{}: {}", d.heading, d.reason))
        .collect()
}

const ENTRIES: &str = "[1] A. Smith, “A first title on models,” in Proc. X, 2019.\n[2] B. Jones, “A second title on data,” J. Y, 2020.\n[3] C. Brown, “A third title on results,” in Proc. Z, 2021.\n";

#[test]
fn letter_spaced_and_run_together_reference_headings_are_references() {
    for heading in [
        "B i b l i o g r a p h y",
        "L I T E R A T U R E  C I T E D",
        "LITERATURECITED",
        "R EFERENCES",
    ] {
        let md = format!(
            "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# 2 Models\n\n{b}\n\n# {heading}\n\n{ENTRIES}",
            a = para(80, "a"),
            b = para(80, "b"),
        );
        let p = parse_markdown_survey(&md, &opts(100, 10_000));
        assert_eq!(headings(&p), ["1 Introduction", "2 Models"], "{heading}");
        assert_eq!(p.references.len(), 3, "{heading}");
        assert!(
            reasons(&p)
                .iter()
                .any(|r| r.ends_with("non-content section: references")),
            "{heading}: {:?}",
            reasons(&p)
        );
        accounted(&p);
    }
}

#[test]
fn roman_numerals_past_fifteen_are_numbering() {
    let mut md = String::from("# A Survey\n\n");
    let numerals = [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV",
        "XV", "XVI", "XVII", "XVIII",
    ];
    for (k, n) in numerals.iter().enumerate().take(17) {
        md.push_str(&format!(
            "# {n}. TOPIC {k}\n\n{}\n\n",
            para(80, &format!("t{k}x"))
        ));
    }
    md.push_str(&format!("# XVIII. REFERENCES\n\n{ENTRIES}"));
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.sections.len(), 17);
    assert_eq!(p.sections[16].heading, "XVII. TOPIC 16");
    assert_eq!(p.sections[16].level, 1);
    assert_eq!(p.references.len(), 3);
    accounted(&p);
}

#[test]
fn back_matter_paragraphs_are_cut_out_of_the_last_section() {
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# 2 Conclusions\n\n{b}\n\nFunding: This research received no external funding.\n\n**Author Contributions:** Conceptualization, A.B.; writing, C.D. All authors have read and agreed to the published version of the manuscript.\n\nConflicts of Interest: The authors declare no conflict of interest.\n\nCopyright: © 2023 by the authors. Licensee MDPI, Basel, Switzerland. This article is an open access article distributed under the terms and conditions of the Creative Commons Attribution (CC BY) license.\n\n# References\n\n{ENTRIES}",
        a = para(80, "a"),
        b = para(80, "b"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(headings(&p), ["1 Introduction", "2 Conclusions"]);
    let last = &p.sections[1].text;
    for gone in [
        "Funding",
        "Author Contributions",
        "Conflicts of Interest",
        "Creative Commons",
    ] {
        assert!(!last.contains(gone), "{gone} left in {last}");
    }
    assert!(last.contains("b79."));
    let cut: Vec<&str> = p
        .dropped
        .iter()
        .filter(|d| d.partial)
        .map(|d| d.reason.as_str())
        .collect();
    assert_eq!(
        cut,
        [
            "back matter inside a section: funding",
            "back matter inside a section: author information",
            "back matter inside a section: conflicts of interest",
            "back matter inside a section: licence"
        ]
    );
    accounted(&p);
}

#[test]
fn author_and_affiliation_blocks_are_not_sections() {
    for block in [
        "A. B. Name · C. D. Other · E. Third",
        "Ann Smith1,2, Bo Jones2* and Cy Brown3",
        "Ann Smith \\cdot Bo Jones \\cdot Cy Brown",
    ] {
        let md = format!(
            "# A Survey of Things\n\n# {block}\n\n1 University of Somewhere, City, Country\n\n# 1 Introduction\n\n{a}\n\n# 2 Models\n\n{b}\n",
            a = para(80, "a"),
            b = para(80, "b"),
        );
        let p = parse_markdown_survey(&md, &opts(100, 10_000));
        assert_eq!(headings(&p), ["1 Introduction", "2 Models"], "{block}");
        assert!(
            reasons(&p)
                .iter()
                .any(|r| r.ends_with("non-content section: author information")),
            "{block}: {:?}",
            reasons(&p)
        );
        accounted(&p);
    }
}

#[test]
fn keyword_and_ethics_headings_with_content_are_kept() {
    let md = format!(
        "# A Survey\n\n# Keywords\n\nrubrics; evaluation; surveys\n\n{intro}\n\n# 2 Keyword co-occurrence analysis\n\n{a}\n\n# 3 Keywords-in-context\n\n{b}\n\n# 4 Ethical considerations, security and privacy\n\n{c}\n\n# 5 Ethical considerations\n\n{d}\n\n# Funding\n\nNone.\n",
        intro = prose(6, "introductions"),
        a = para(80, "a"),
        b = para(80, "b"),
        c = para(80, "c"),
        d = prose(40, "ethics"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(
        headings(&p),
        [
            "Introduction",
            "2 Keyword co-occurrence analysis",
            "3 Keywords-in-context",
            "4 Ethical considerations, security and privacy",
            "5 Ethical considerations"
        ],
        "{:?}",
        reasons(&p)
    );
    assert!(!p.sections[0].text.contains("rubrics; evaluation"));
    accounted(&p);
}

#[test]
fn table_dominated_sections_are_dropped_with_their_own_reason() {
    let rows: String = (0..30)
        .map(|i| format!("<tr><td>Study {i}</td><td>Author {i} et al.</td><td>2019</td></tr>"))
        .collect();
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# Appendix A Included studies\n\nTable A1 lists the studies.\n\n<table>{rows}</table>\n\n# 3 Markdown table\n\n| Study | Year | Model |\n|---|---|---|\n{md_rows}",
        a = para(80, "a"),
        md_rows = (0..30)
            .map(|i| format!("| Study number {i} | 2019 | Model {i} |\n"))
            .collect::<String>(),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(headings(&p), ["1 Introduction"], "{:?}", reasons(&p));
    let table_drops = p
        .dropped
        .iter()
        .filter(|d| d.reason.starts_with("table-dominated section"))
        .count();
    assert_eq!(table_drops, 2, "{:?}", reasons(&p));
    accounted(&p);
}

#[test]
fn garbled_sections_are_dropped_with_their_own_reason() {
    let glued = (0..20)
        .map(|i| format!("Theresultsofstudy{i}showthatthemodelsperformwellonthebenchmarkdatasets."))
        .collect::<Vec<_>>()
        .join(" ");
    let duplicated: String = (0..12)
        .map(|i| {
            let line = format!("Line {i} of a paragraph the converter emitted more than once.");
            format!("{line}\n{line}\n")
        })
        .collect();
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# 2 Glued\n\n{glued}\n\n# 3 Doubled\n\n{duplicated}\n# 4 Models\n\n{b}\n",
        a = prose(8, "models"),
        b = prose(8, "data"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(
        headings(&p),
        ["1 Introduction", "4 Models"],
        "{:?}",
        reasons(&p)
    );
    let garbled: Vec<&str> = p
        .dropped
        .iter()
        .filter(|d| d.reason.starts_with("garbled text"))
        .map(|d| d.heading.as_str())
        .collect();
    assert_eq!(garbled, ["2 Glued", "3 Doubled"]);
    accounted(&p);
}

#[test]
fn review_method_sections_are_marked() {
    let method_body = "We searched PubMed, Scopus and Web of Science for studies published up to 2023. Two reviewers screened titles and abstracts against the inclusion criteria, and disagreements were resolved by discussion. The PRISMA flow diagram shows the records identified, screened and included in this review.";
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# 2 Methods\n\n{method_body} {method_body}\n\n# 2.1 Search strategy\n\n{method_body}\n\n# 2.2 Eligibility criteria\n\n{e}\n\n# 3 Methods for anomaly detection\n\n{b}\n\n# 4 Methods\n\n{c}\n",
        a = prose(8, "models"),
        e = prose(5, "criteria"),
        b = prose(8, "detectors"),
        c = prose(8, "learners"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    let kinds = heading_kinds(&p);
    assert_eq!(
        kinds,
        [
            ("1 Introduction", SectionKind::Content),
            ("2 Methods", SectionKind::ReviewMethod),
            ("2.1 Search strategy", SectionKind::ReviewMethod),
            ("2.2 Eligibility criteria", SectionKind::ReviewMethod),
            ("3 Methods for anomaly detection", SectionKind::Content),
            ("4 Methods", SectionKind::Content),
        ]
    );
    assert_eq!(SectionKind::ReviewMethod.as_str(), "review_method");
    accounted(&p);
}

#[test]
fn a_reference_list_under_an_unknown_heading_is_found_by_its_share() {
    // entries broken over two lines each: half the lines look like entries
    let entries: String = (1..=6)
        .map(|i| format!("[{i}] A. Author{i}, “Title number {i} of a work,”\nin Proceedings of the Conference, pp. 1–10, 2019.\n"))
        .collect();
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a} [1]\n\n# Sources used\n\n{entries}",
        a = para(80, "a"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(headings(&p), ["1 Introduction"], "{:?}", reasons(&p));
    assert_eq!(p.references.len(), 6);
    assert_eq!(p.sections[0].citations.len(), 1);
    accounted(&p);
}

#[test]
fn empty_sections_are_dropped_even_without_a_minimum_length() {
    // found by the property test: with min_section_chars = 0 a heading without text was kept
    let p = parse_markdown_survey("# \n# \n# .", &opts(0, 1));
    assert!(
        p.sections.iter().all(|s| !s.text.trim().is_empty()),
        "{p:#?}"
    );
    accounted(&p);
}

#[test]
fn a_methods_chapter_with_review_steps_under_it_is_the_review_method() {
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n# 2 Methods\n\n# 2.1 Design\n\n{d}\n\n# 2.2 Search strategy\n\n{s}\n\n# 3 Results\n\n{r}\n",
        a = prose(8, "models"),
        d = prose(5, "designs"),
        s = prose(5, "searches"),
        r = prose(8, "results"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    let kinds = heading_kinds(&p);
    assert_eq!(
        kinds,
        [
            ("1 Introduction", SectionKind::Content),
            ("2.1 Design", SectionKind::ReviewMethod),
            ("2.2 Search strategy", SectionKind::ReviewMethod),
            ("3 Results", SectionKind::Content),
        ]
    );
}

/// Each kept section's heading with its kind.
fn heading_kinds(p: &ParsedSurvey) -> Vec<(&str, SectionKind)> {
    p.sections
        .iter()
        .map(|s| (s.heading.as_str(), s.kind))
        .collect()
}
