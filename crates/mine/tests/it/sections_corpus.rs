//! Section extraction over the 20 real PDF-converted surveys in `../shared/corpus/surveys`:
//! bounds on kept sections, no reference-list text in kept sections, every heading accounted
//! for, and heading paths and citations checked by hand on samples from several surveys.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use rubricmill_mine::sections::{ParsedSurvey, Section, SectionOptions, parse_markdown_survey};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/surveys"
);

fn corpus_files() -> Option<Vec<PathBuf>> {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return None;
    }
    let mut files = Vec::new();
    for field in ["computer_science", "medicine"] {
        let dir = root.join(field);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for e in entries {
            let path = e.expect("directory entry").path();
            if path.extension().is_some_and(|x| x == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    Some(files)
}

fn parse(path: &Path) -> ParsedSurvey {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_markdown_survey(&text, &SectionOptions::default())
}

/// The survey whose file name starts with `prefix`.
fn survey(prefix: &str) -> Option<ParsedSurvey> {
    let files = corpus_files()?;
    let path = files
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no survey starting with {prefix}"));
    Some(parse(path))
}

/// The first kept section (or part) whose heading starts with `heading`.
fn section<'a>(p: &'a ParsedSurvey, heading: &str) -> &'a Section {
    p.sections
        .iter()
        .find(|s| s.heading.starts_with(heading))
        .unwrap_or_else(|| {
            let all: Vec<&str> = p.sections.iter().map(|s| s.heading.as_str()).collect();
            panic!("no section {heading:?} among {all:#?}")
        })
}

/// All parts of the section `heading` (a split section has several).
fn parts<'a>(p: &'a ParsedSurvey, heading: &str) -> Vec<&'a Section> {
    let parts: Vec<&Section> = p
        .sections
        .iter()
        .filter(|s| s.heading == heading || s.heading.starts_with(&format!("{heading} (part ")))
        .collect();
    assert!(!parts.is_empty(), "no section {heading:?}");
    parts
}

/// (first author, year) of every work cited in the parts of `heading`.
fn cited(p: &ParsedSurvey, heading: &str) -> Vec<(String, String)> {
    parts(p, heading)
        .iter()
        .flat_map(|s| s.citations.iter())
        .map(|r| {
            (
                r.first_author.clone().unwrap_or_default(),
                r.year.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn assert_cites(p: &ParsedSurvey, heading: &str, author: &str, year: &str) {
    let cites = cited(p, heading);
    assert!(
        cites.iter().any(|(a, y)| a == author && y == year),
        "{heading:?} should cite {author} {year}; it cites {cites:?}"
    );
}

// reference-entry shapes, written independently of the module's own detector: numbered
// ("[12] A. Smith", "12. Smith J,", "1. A.Aho,"), APA ("Smith, J. (2019)"), Harvard ("Azar,E.R.,
// McCabe, B., 2012."), name-initials lists and full names ("Himan Abdollahpouri and Robin
// Burke. Title. …, 2019."), each with a year
static REF_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[\d{1,4}\]\s*\p{Lu}").unwrap());
static REF_NUMBERED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\d{1,4}\.?\s*(?:\p{Lu}[\p{L}'’-]+(?: \p{Lu}[\p{L}'’-]+)? \p{Lu}{1,3}[,.]|\p{Lu}[\p{L}'’-]+, ?(?:\p{Lu}\.){1,3}|(?:\p{Lu}\.\s?){1,3}\p{Lu}[\p{L}'’-]+,)").unwrap()
});
static REF_APA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\p{Lu}[\p{L}'’-]+, (?:\p{Lu}\.\s?){1,3}.{0,200}\((?:19|20)\d\d[a-z]?\)").unwrap()
});
static REF_INITIALS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\p{Lu}[\p{L}'’-]+ \p{Lu}{1,3}, \p{Lu}[\p{L}'’-]+ \p{Lu}{1,3}[,.].*\b(?:19|20)\d\d\b",
    )
    .unwrap()
});
static REF_HARVARD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\p{Lu}[\p{L}'’-]+, ?(?:\p{Lu}\.){1,3}, ?.*\b(?:19|20)\d\d[a-z]?\. ").unwrap()
});
static REF_FULL_NAMES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\p{Lu}[\p{L}'’-]+ (?:\p{Lu}\. )?\p{Lu}[\p{L}'’-]+, )*\p{Lu}[\p{L}'’-]+ (?:\p{Lu}\. )?\p{Lu}[\p{L}'’-]+,? and \p{Lu}[\p{L}'’-]+ (?:\p{Lu}\. )?\p{Lu}[\p{L}'’-]+\. .*\b(?:19|20)\d\d[a-z]?\.\s*$").unwrap()
});
static YEAR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(?:19|20)\d\d[a-z]?\b").unwrap());

fn looks_like_reference_entry(line: &str) -> bool {
    let l = line.trim();
    l.len() > 40
        && YEAR.is_match(l)
        && (REF_BRACKET.is_match(l)
            || REF_NUMBERED.is_match(l)
            || REF_APA.is_match(l)
            || REF_INITIALS.is_match(l)
            || REF_HARVARD.is_match(l)
            || REF_FULL_NAMES.is_match(l))
}

#[test]
fn every_survey_yields_bounded_content_sections_and_accounts_for_every_heading() {
    let Some(files) = corpus_files() else { return };
    assert_eq!(files.len(), 20, "the corpus has 20 surveys");
    let mut total = 0usize;
    let mut counts = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("readable survey");
        let p = parse_markdown_survey(&text, &SectionOptions::default());
        let opts = SectionOptions::default();
        // bounds set after reading the surveys: the shortest (TCM) has 6 content sections, the
        // longest (GAN review) 69
        assert!(
            (5..=100).contains(&p.sections.len()),
            "{name}: {} sections",
            p.sections.len()
        );
        assert!(
            p.title.as_deref().is_some_and(|t| t.len() > 20),
            "{name}: title {:?}",
            p.title
        );
        for s in &p.sections {
            let len = s.text.chars().count();
            assert!(
                len <= opts.max_section_chars,
                "{name}: {:?} has {len} chars",
                s.heading
            );
            // merging lifts short sections; only a section that absorbed nothing stays short
            assert!(len >= 200, "{name}: {:?} has only {len} chars", s.heading);
            assert!(
                !s.heading_path.is_empty() && s.heading_path.len() == s.level,
                "{name}: {s:?}"
            );
            assert!(
                s.heading
                    .starts_with(s.heading_path.last().map(String::as_str).unwrap_or(""))
            );
            assert!(
                !s.text.contains("![]("),
                "{name}: image link kept in {:?}",
                s.heading
            );
        }
        assert!(
            p.sections.iter().enumerate().all(|(i, s)| s.index == i),
            "{name}: indexes"
        );
        // inputs = outputs + rejects: every heading is kept, dropped or merged
        assert_eq!(
            p.kept_units() + p.dropped_units() + p.merged,
            p.units,
            "{name}: unit accounting"
        );
        // and the units are the file's headings minus the title and noise headings ("#",
        // "Full-size DOI", "Box 1 |", a sentence made a heading under an empty FUNDING)
        let headings = text.lines().filter(|l| l.starts_with('#')).count();
        let after_title: String = text
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('#'))
            .collect();
        let preamble = usize::from(!after_title.trim().is_empty());
        assert!(
            p.units <= headings - 1 + preamble && p.units + 3 >= headings - 1,
            "{name}: {} units for {headings} heading lines",
            p.units
        );
        // the References heading and its list never survive
        assert!(
            p.dropped
                .iter()
                .any(|d| d.reason == "non-content section: references"),
            "{name}: no references dropped"
        );
        assert!(
            p.references.len() >= 50,
            "{name}: only {} references parsed",
            p.references.len()
        );
        total += p.sections.len();
        counts.push((name, p.sections.len()));
    }
    println!("sections per survey: {counts:#?}\ntotal: {total}");
    assert!((400..=900).contains(&total), "{total} sections in all");
}

#[test]
fn no_kept_section_contains_reference_list_text() {
    let Some(files) = corpus_files() else { return };
    for path in &files {
        let p = parse(path);
        for s in &p.sections {
            let entries: Vec<&str> = s
                .text
                .lines()
                .filter(|l| looks_like_reference_entry(l))
                .collect();
            assert!(
                entries.len() < 3,
                "{}: {:?} contains reference entries: {entries:#?}",
                path.display(),
                s.heading
            );
            assert!(!s.heading.eq_ignore_ascii_case("references"));
        }
    }
}

#[test]
fn the_reference_detector_of_this_test_does_fire_on_reference_lists() {
    // guard against a vacuous check above: the dropped References sections are full of entries
    let Some(files) = corpus_files() else { return };
    let mut weak = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable survey");
        let n = text
            .lines()
            .filter(|l| looks_like_reference_entry(l))
            .count();
        if n < 20 {
            weak.push((path.file_name().map(|n| n.to_string_lossy().to_string()), n));
        }
    }
    assert!(weak.is_empty(), "too few reference-like lines: {weak:#?}");
}

#[test]
fn heading_paths_on_a_hand_checked_sample() {
    let Some(fair) = survey("Fairness_in_recommender") else {
        return;
    };
    assert_eq!(
        fair.title.as_deref(),
        Some("Fairness in Recommender Systems: Research Landscape and Future Directions")
    );
    let s = section(&fair, "4.3 Categorization");
    assert_eq!(
        s.heading_path,
        [
            "4 Landscape of Fairness Research in Recommender Systems",
            "4.3 Categorization of Notions of Fairness in Literature"
        ]
    );
    assert_eq!(s.level, 2);
    assert_eq!(
        section(&fair, "1 Introduction").heading_path,
        ["1 Introduction"]
    );
    // "Abstract ：" in the file
    assert!(
        fair.dropped
            .iter()
            .any(|d| d.heading == "Abstract" && d.reason == "non-content section: abstract")
    );

    // four numbering levels, all at one `#` level in the file
    let Some(gan) = survey("A_Review_on_Generative") else {
        return;
    };
    assert_eq!(
        section(&gan, "3.3.1.6 Unrolled GAN").heading_path,
        [
            "3 ALGORITHMS",
            "3.3 GANs Training",
            "3.3.1 Objective function",
            "3.3.1.6 Unrolled GAN"
        ]
    );

    // conversion noise between the number and the title: "4.2.1  Code", "5.1丨Typifying", "3IMETHODS"
    let Some(scratch) = survey("Computational_thinking") else {
        return;
    };
    assert_eq!(
        section(&scratch, "4.2.1 Code constructs").heading_path,
        [
            "4 FINDINGS",
            "4.2 CT's CEPs in Scratch",
            "4.2.1 Code constructs"
        ]
    );
    assert_eq!(
        section(&scratch, "5.1 Typifying").heading_path,
        ["5 DISCUSSION", "5.1 Typifying elementary CT in Scratch"]
    );
    assert_eq!(
        section(&scratch, "3.1 Search procedures").heading_path,
        ["3 METHODS", "3.1 Search procedures"]
    );

    // "2.1．Literature search", "3.4.1.L1.1 object detection"
    let Some(cv) = survey("Computer_vision_technologies") else {
        return;
    };
    assert_eq!(
        section(&cv, "2.1 Literature search").heading_path,
        ["2 Methodology", "2.1 Literature search"]
    );
    assert_eq!(
        section(&cv, "3.4.1 L1.1 object detection").heading_path,
        [
            "3 Results",
            "3.4 L1: Detection,recognition, and tracking",
            "3.4.1 L1.1 object detection and recognition"
        ]
    );

    // unnumbered: ALL-CAPS headings above mixed-case ones
    let Some(vqa) = survey("The_multi-modal_fusion") else {
        return;
    };
    assert_eq!(
        section(&vqa, "Scope of attention").heading_path,
        [
            "CLASSIFICATION OF ATTENTION MECHANISMS IN VQA",
            "Scope of attention"
        ]
    );

    // unnumbered: run-in headings ending with a period sit under the heading before them
    let Some(cardio) = survey("Cardiomyocyte_maturation") else {
        return;
    };
    assert_eq!(
        section(&cardio, "Electrophysiology").heading_path,
        ["Properties of maturing cardiomyocytes", "Electrophysiology"]
    );
    // the unheaded introduction under the Abstract heading is kept, the abstract paragraph not
    let intro = section(&cardio, "Introduction");
    assert!(
        intro.text.starts_with("Remarkable progress has been made"),
        "{}",
        &intro.text[..100]
    );
    // the glossary after the references is too short to carry a query
    assert!(
        cardio
            .dropped
            .iter()
            .any(|d| d.heading == "Polyploidy" && d.reason.starts_with("too short"))
    );
}

#[test]
fn non_content_sections_are_dropped_with_reasons() {
    let Some(chatbots) = survey("Interacting_with_educational") else {
        return;
    };
    let reasons: Vec<(&str, &str)> = chatbots
        .dropped
        .iter()
        .map(|d| (d.heading.as_str(), d.reason.as_str()))
        .collect();
    assert!(
        reasons.contains(&("Abstract", "non-content section: abstract")),
        "{reasons:#?}"
    );
    assert!(
        reasons.contains(&(
            "Authors and Afliations",
            "non-content section: author information"
        )),
        "{reasons:#?}"
    );
    assert!(
        chatbots
            .sections
            .iter()
            .all(|s| !s.text.contains("@zu.ac.ae")),
        "author e-mails kept"
    );

    // the reference list goes on after a stray "# FUNDING" heading; it is still parsed
    let Some(fs) = survey("A_Review_of_Feature_Selection") else {
        return;
    };
    assert!(
        fs.dropped
            .iter()
            .any(|d| d.heading == "FUNDING" && d.reason == "non-content section: funding")
    );
    assert!(
        fs.references
            .iter()
            .any(|r| r.first_author.as_deref() == Some("Cordell")
                && r.year.as_deref() == Some("2009")),
        "entries after the FUNDING heading are missing"
    );

    let Some(ai) = survey("The_role_of_artificial") else {
        return;
    };
    for boilerplate in [
        "Publisher’s Note",
        "Ready to submit your research? Choose BMC and benefit from",
    ] {
        assert!(
            ai.dropped.iter().any(|d| d.heading == boilerplate),
            "{boilerplate} not dropped: {:#?}",
            ai.dropped
        );
    }
    // a content heading that merely starts like a back-matter name stays
    let Some(graph) = survey("Graph_Theory") else {
        return;
    };
    assert_eq!(
        section(&graph, "3.14 Affiliation Network").heading_path,
        [
            "3 Applications of the Graph Theory in Social Networks (SN)",
            "3.14 Affiliation Network Modelling Using Graphs in Social Network"
        ]
    );
    let Some(nano) = survey("Nanoparticle_classification") else {
        return;
    };
    assert!(
        nano.dropped
            .iter()
            .any(|d| d.heading == "Abbreviations"
                && d.reason == "non-content section: abbreviations")
    );
}

#[test]
fn numeric_citations_resolve_on_hand_checked_samples() {
    // IEEE style, "[14]"
    let Some(gan) = survey("A_Review_on_Generative") else {
        return;
    };
    let info = section(&gan, "3.2.1 InfoGAN");
    let first = info.citations.first().expect("InfoGAN cites");
    assert_eq!(
        (first.key.as_str(), first.first_author.as_deref()),
        ("14", Some("Chen"))
    );
    assert!(
        first
            .title
            .as_deref()
            .is_some_and(|t| t.starts_with("Infogan: Interpretable representation learning"))
    );

    // Vancouver list, "(12–14)" in parentheses: SDOH, in the unheaded introduction
    let Some(sdoh) = survey("Social_Determinants") else {
        return;
    };
    let intro = section(&sdoh, "Introduction");
    let keys: Vec<&str> = intro.citations.iter().map(|r| r.key.as_str()).collect();
    for k in ["12", "13", "14"] {
        assert!(
            keys.contains(&k),
            "SDOH introduction should cite {k}: {keys:?}"
        );
    }
    assert_cites(&sdoh, "Introduction", "Haire-Joshu", "2019");

    // numbered list, "[10, 11]" and "[12-14]"
    let Some(tcm) = survey("Traditional_Chinese_Medicine") else {
        return;
    };
    let intro = section(&tcm, "Introduction");
    let keys: Vec<&str> = intro.citations.iter().map(|r| r.key.as_str()).collect();
    for k in ["10", "11", "12", "13", "14"] {
        assert!(
            keys.contains(&k),
            "TCM introduction should cite {k}: {keys:?}"
        );
    }
}

#[test]
fn author_year_citations_resolve_on_hand_checked_samples() {
    // "[Binns, 2020]" and "Li et al. [2021c]" in brackets (Fairness)
    let Some(fair) = survey("Fairness_in_recommender") else {
        return;
    };
    let heading = parts(
        &fair,
        "4.3 Categorization of Notions of Fairness in Literature",
    )[0]
    .heading
    .clone();
    let heading = heading
        .split(" (part")
        .next()
        .unwrap_or_default()
        .to_string();
    assert_cites(&fair, &heading, "Binns", "2020");
    // the list prints "Li … 2021." three times; the citation's letter picks the third
    let li = parts(&fair, &heading)
        .iter()
        .flat_map(|s| s.citations.iter())
        .find(|r| r.key == "Li 2021c")
        .cloned();
    assert_eq!(
        li.and_then(|r| r.title),
        Some("Tutorial on fairness of machine learning in recommender systems".to_string())
    );
    let binns = fair
        .references
        .iter()
        .find(|r| r.key == "Binns 2020")
        .expect("Binns 2020 in the list");
    assert_eq!(
        binns.title.as_deref(),
        Some("On the apparent conflict between individual and group fairness")
    );

    // APA: "(AbuShawar and Atwell, 2015)" (educational chatbots, 2 Background)
    let Some(chatbots) = survey("Interacting_with_educational") else {
        return;
    };
    assert_cites(&chatbots, "2 Background", "AbuShawar", "2015");

    // narrative "Anderson et al. (2018)" and "(Vaswani et al., 2017)" (VQA review)
    let Some(vqa) = survey("The_multi-modal_fusion") else {
        return;
    };
    assert_cites(&vqa, "General attention mechanism", "Vaswani", "2017");

    // "(Szymczak et al., 2009)" with a Frontiers-style list "Szymczak, S., … (2009)."
    let Some(fs) = survey("A_Review_of_Feature_Selection") else {
        return;
    };
    assert_cites(
        &fs,
        "1.3 Feature Selection to Reduce SNP Data Dimensionality",
        "Szymczak",
        "2009",
    );

    // Springer style without comma: "(Abdel-Karim et al. 2021)" … resolved against
    // "Abdel-Karim BM, Pfeufer N, Hinz O (2021)"
    let Some(xai) = survey("Applications_of_Explainable") else {
        return;
    };
    let all: usize = xai.sections.iter().map(|s| s.citations.len()).sum();
    assert!(all >= 80, "XAI finance resolves only {all} citations");
    assert!(
        xai.references.iter().all(|r| r.key.contains(' ')),
        "author-year keys"
    );
}
