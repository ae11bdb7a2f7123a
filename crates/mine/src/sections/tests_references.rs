//! Reference lists and inline citations in the styles publishers use, each test one defect seen
//! on unseen surveys, with small hand-written inputs.

use super::tests::{opts, para};
use super::*;

fn one(entry: &str) -> Reference {
    let refs = parse_reference_list(entry);
    assert_eq!(refs.len(), 1, "{entry}: {refs:#?}");
    refs.into_iter().next().expect("one entry")
}

#[test]
fn numbered_lists_may_start_anywhere_and_use_parentheses() {
    let list = "[37] A. Smith, “A first title on models,” in Proc. X, 2019.\n[38] B. Jones, “A second title on data,” J. Y, 2020.\n[39] C. Brown, “A third title on results,” in Proc. Z, 2021.\n";
    let keys: Vec<String> = parse_reference_list(list)
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["37", "38", "39"]);
    let list = "(1) Smith, J.; Jones, K. Title of the first work. J. Chem. Phys. 2016, 12, 3–4.\n(2) Brown, L. Title of the second work. Anal. Chem. 2018, 90, 1–9.\n(3) Green, M.; White, N. Title of the third work. ACS Nano 2020, 14, 5–6.\n";
    let keys: Vec<String> = parse_reference_list(list)
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["1", "2", "3"]);
}

#[test]
fn an_entry_whose_capital_was_lost_still_starts_at_its_number() {
    let list = "19. Minor, E.S.; Urban, D.L. A graph-theory framework for landscape connectivity. Conserv. Biol. 2008, 22, 297–307.\n20. hrysochoos, A.; Louche, H. An infrared image processing method. Int. J. Eng. Sci. 2000, 38, 1759–1788.\n21. Smith, J. A third title of a work. J. Things 2010, 1, 1–2.\n";
    let refs = parse_reference_list(list);
    let keys_years: Vec<(&str, Option<&str>)> = refs
        .iter()
        .map(|r| (r.key.as_str(), r.year.as_deref()))
        .collect();
    assert_eq!(
        keys_years,
        [
            ("19", Some("2008")),
            ("20", Some("2000")),
            ("21", Some("2010"))
        ]
    );
}

#[test]
fn author_year_entries_glued_on_one_line_are_split() {
    let list = "Smith, J., 2O15. A first title of a work. J. Things 29, 225-238.\nTeizer,J., Cheng,T.,2013.A second title of a work. Autom. Constr. 35, 53-68. Teizer,J., Vela,P.A., 2oo9. A third title of a work. Adv. Eng. Inf. 23, 452-462.\n";
    let refs = parse_reference_list(list);
    let keys: Vec<&str> = refs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        ["Smith 2015", "Teizer 2013", "Teizer 2009"],
        "{refs:#?}"
    );
}

#[test]
fn first_author_year_and_title_in_the_common_styles() {
    let cases = [
        // MDPI / ACS
        (
            "1. Smith, J.; Jones, K.L. Title of the first work. J. Chem. Phys. 2016, 12, 3–4.",
            "Smith",
            "2016",
            "Title of the first work",
        ),
        // Vancouver
        (
            "2. Golden SH, Brown A, Cauley JA, et al. Health disparities in endocrine disorders. J Clin Endocrinol Metab. 2012;97:E1579–639.",
            "Golden",
            "2012",
            "Health disparities in endocrine disorders",
        ),
        // APA
        (
            "Smith, J., & Jones, K. (2016). Title of the first work. Journal of Things, 12(3), 3–4. https://doi.org/10.1000/xyz123",
            "Smith",
            "2016",
            "Title of the first work",
        ),
        // IEEE
        (
            "[3] J. Smith and K. Jones, “Title of the first work,” IEEE Trans. Things, vol. 1, no. 2, pp. 3–4, 2016.",
            "Smith",
            "2016",
            "Title of the first work",
        ),
        // Vancouver with a question in the title
        (
            "117. Maynard DG, Greenwood MA. Who cares about sarcastic tweets? Investigating the impact of sarcasm. In: LREC 2014 Proceedings. ELRA; 2014.",
            "Maynard",
            "2014",
            "Who cares about sarcastic tweets? Investigating the impact of sarcasm",
        ),
        // APA with a report type; LaTeX left in a Vancouver author list
        (
            "Dutta, D. (2017). Developing an intelligent chat-bot tool to assist students (Tech. rep.) Georgia Institute of Technology.",
            "Dutta",
            "2017",
            "Developing an intelligent chat-bot tool to assist students",
        ),
        (
            "82. Peng W, Chen JQ, Liu $\\mathrm { C } ,$ et al. Loss of PTEN promotes resistance to immunotherapy. Cancer Discov 2016;6:202–16.",
            "Peng",
            "2016",
            "Loss of PTEN promotes resistance to immunotherapy",
        ),
        (
            "22. Zhang L, Liu Y. Potential interventions for novel coronavirus in China: A systemic review. J Med Virol. 2020.",
            "Zhang",
            "2020",
            "Potential interventions for novel coronavirus in China: A systemic review",
        ),
        // Springer
        (
            "Smith J, Jones K (2016) Title of the first work. J Med 12:3–4",
            "Smith",
            "2016",
            "Title of the first work",
        ),
    ];
    for (entry, author, year, title) in cases {
        let r = one(entry);
        assert_eq!(r.first_author.as_deref(), Some(author), "{entry}");
        assert_eq!(r.year.as_deref(), Some(year), "{entry}");
        assert_eq!(r.title.as_deref(), Some(title), "{entry}");
    }
    let r = one(
        "[3] J. Smith and K. Jones, “Title of the first work,” IEEE Trans. Things, vol. 1, no. 2, pp. 3–4, 2016. doi: 10.1109/TT.2016.123",
    );
    assert_eq!(
        r.url.as_deref(),
        Some("https://doi.org/10.1109/TT.2016.123")
    );
}

#[test]
fn years_are_not_taken_from_arxiv_ids_and_ocr_years_are_repaired() {
    let r = one("[4] A. Author, “Scaling laws for things,” arXiv:1905.01234, 2021.");
    assert_eq!(r.year.as_deref(), Some("2021"));
    let r = one("[5] A. Author, “Scaling laws for things,” arXiv preprint arXiv:2010.11929.");
    assert_eq!(r.year, None);
    let r = one("Smith, J. (2O18). Title of the first work. Journal of Things, 12, 3–4.");
    assert_eq!(r.year.as_deref(), Some("2018"));
}

fn doc(body: &str, refs: &str) -> ParsedSurvey {
    let md = format!(
        "# A Survey\n\n# 1 Introduction\n\n{a}\n\n{body}\n\n# References\n\n{refs}",
        a = para(60, "a"),
    );
    parse_markdown_survey(&md, &opts(100, 10_000))
}

fn cited_keys(p: &ParsedSurvey) -> Vec<String> {
    p.sections
        .iter()
        .flat_map(|s| s.citations.iter().map(|r| r.key.clone()))
        .collect()
}

const PAREN_LIST: &str = "(1) Smith, J.; Jones, K. Title of the first work. J. Chem. 2016, 12, 3–4.\n(2) Brown, L. Title of the second work. Anal. Chem. 2018, 90, 1–9.\n(3) Green, M. Title of the third work. ACS Nano 2020, 14, 5–6.\n(4) Black, O. Title of the fourth work. Nano Lett. 2021, 21, 7–8.\n(5) Gray, P. Title of the fifth work. Small 2022, 18, 9–10.\n(6) Blue, Q. Title of the sixth work. Small 2022, 18, 11–12.\n";

#[test]
fn equation_figure_and_table_numbers_are_not_citations() {
    let body = "Models improve (1). Data matter (2). Results vary (3), and more (4). Others agree (5). The loss falls as shown by Eq. (6), by Fig. (6). and by Table (6).";
    let p = doc(body, PAREN_LIST);
    assert_eq!(cited_keys(&p), ["1", "2", "3", "4", "5"]);
}

#[test]
fn superscript_citations_in_markup_resolve() {
    let body = "Models improve<sup>1</sup> and data matter<sup>2,3</sup>; results vary$^{4-6}$. See Table 2 and Fig.6 for details.";
    let p = doc(body, PAREN_LIST);
    assert_eq!(cited_keys(&p), ["1", "2", "3", "4", "5", "6"]);
}

#[test]
fn author_year_citations_survive_nbsp_and_ocr_years() {
    let refs = "Smith, J., & Jones, K. (2018). Title of the first work. Journal of Things, 12, 3–4.\nBrown, L. (2020). Title of the second work. Journal of Things, 13, 5–6.\nGreen, M. (2019). Title of the third work. Journal of Things, 14, 7–8.\n";
    let body = "Earlier work (Smith\u{a0}et\u{a0}al., 2018) and Brown et\u{a0}al. (2020) disagree; Green (2O19) agrees.";
    let p = doc(body, refs);
    assert_eq!(
        cited_keys(&p),
        ["Smith 2018", "Brown 2020", "Green 2019"],
        "{:#?}",
        p.references
    );
}

#[test]
fn marker_tally_counts_every_number_and_those_that_resolve() {
    // six entries: [2-4] is three markers, [7] and [9] are past the list, "[1]-[3]" adds the 2
    // between its ends, "Eq. [5]" is not a citation
    let list = PAREN_LIST.replace('(', "[").replace(')', "]");
    let body = "Models improve [1]. Data matter [2-4]. Results vary [7], see [9] and [1]-[3]. The loss falls by Eq. [5].";
    let p = doc(body, &list);
    assert_eq!(
        p.citation_markers,
        MarkerTally {
            found: 9,
            resolved: 7
        },
        "{:#?}",
        p.references
    );
    assert_eq!(p.citation_markers.share(), Some(7.0 / 9.0));
}

#[test]
fn marker_tally_of_an_author_year_list_counts_author_year_pairs_only() {
    let refs = "Smith, J., & Jones, K. (2018). Title of the first work. Journal of Things, 12, 3–4.\nBrown, L. (2020). Title of the second work. Journal of Things, 13, 5–6.\n";
    // three pairs resolve (Smith 2018, Brown 2020 twice), two do not (Smith 2017, White 2015);
    // the bracketed number is not this document's style
    let body = "Earlier work (Smith et al., 2018; Smith et al., 2017) and Brown (2020) disagree [3]; see also (White, 2015; Brown, 2020).";
    let p = doc(body, refs);
    assert_eq!(
        p.citation_markers,
        MarkerTally {
            found: 5,
            resolved: 3
        }
    );
}

#[test]
fn marker_tally_is_empty_without_a_reference_list() {
    let p = doc("Models improve [1] (Smith, 2018).", "");
    assert_eq!(p.citation_markers.found, 0);
    assert_eq!(p.citation_markers.share(), None);
}

#[test]
fn a_title_case_title_before_the_year_is_not_taken_for_authors() {
    // Vancouver books and journals put the year after a capitalised title
    let r = one(
        "1. Brown K, Green L, White M. Quiet Rivers: How Towns Shape Water. Riverside: Valley Press; 2015.",
    );
    assert_eq!(r.first_author.as_deref(), Some("Brown"));
    assert_eq!(
        r.title.as_deref(),
        Some("Quiet Rivers: How Towns Shape Water")
    );
    assert_eq!(r.year.as_deref(), Some("2015"));
    let r = one(
        "2. Grey L, Black Y. Possible Treatments for Winter Colds: A Short Review. J Cold Res. 2020; 92: 1-9.",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Possible Treatments for Winter Colds: A Short Review")
    );
}

#[test]
fn a_single_vancouver_author_ends_at_the_initials() {
    for (entry, author, title) in [
        (
            "7. Stone QW. Particles in living systems. Chem Int Ed. 2011;50(6):1242–58.",
            "Stone",
            "Particles in living systems",
        ),
        (
            "8. Fox-Hart A. Plant-drug interactions. Lancet. 2000; 355: 134-8.",
            "Fox-Hart",
            "Plant-drug interactions",
        ),
    ] {
        let r = one(entry);
        assert_eq!(r.first_author.as_deref(), Some(author), "{entry}");
        assert_eq!(r.title.as_deref(), Some(title), "{entry}");
    }
    // several initials close the author even when the title goes on with "and"
    let r = one(
        "9. Dale BR. Synthesis and properties of metal particles: size and shape. Thin Films. 2010;518(12):3127–50.",
    );
    assert_eq!(r.first_author.as_deref(), Some("Dale"));
    // a middle initial of a given-name-first author is not the end of the name
    let r = one(
        "Mary D. Stone, Ann Hill, and Bo Li. Popularity biases in evaluation. In Proc. X, 2018.",
    );
    assert_eq!(r.first_author.as_deref(), Some("Stone"));
}

#[test]
fn vancouver_initials_may_be_hyphenated() {
    let r = one(
        "3. Tam BX, Vo GT, Ho Q-H, Lam M-T, et al. Global trends of research in river ecology. J Clin Rivers. 2019;8(3):360.",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Global trends of research in river ecology")
    );
    // given-name-first authors with two-letter surnames are not Vancouver initials
    let r = one(
        "Yun Li, Ying Ge, and Yong Zhang. Tutorial on fairness of river systems. In Proc. X, 2021.",
    );
    assert_eq!(r.first_author.as_deref(), Some("Li"));
    assert_eq!(
        r.title.as_deref(),
        Some("Tutorial on fairness of river systems")
    );
}

#[test]
fn abbreviations_inside_a_title_do_not_end_it() {
    let r = one(
        "5. Reed D. Silent Streams: Smith v. Jones and the Promise of Clean Water. New York, River Press, 2004",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Silent Streams: Smith v. Jones and the Promise of Clean Water")
    );
    let r = one(
        "6. Lane SS, Moss LN. Changes in water use: a national sample of U.S. adults with gardens, 2009 and 2016. Water Care 2018;41:956–962",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Changes in water use: a national sample of U.S. adults with gardens, 2009 and 2016")
    );
    let r = one(
        "Hill, N.T, & Crow, E.A (2004). Evaluations of tutorial strategies employed by the ms. rivertutor. In International conference on tutoring (pp. 1–9).",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Evaluations of tutorial strategies employed by the ms. rivertutor")
    );
}

#[test]
fn a_one_word_hyphenated_title_is_a_title() {
    let r = one(
        "Kale, Z., Mill, K., Mat, J., 2011. Tracking-by-detection. IEEE Transactions on Things 34, 1409-1422.",
    );
    assert_eq!(r.title.as_deref(), Some("Tracking-by-detection"));
}

#[test]
fn an_mdpi_book_title_ends_at_its_semicolon() {
    let r = one(
        "47. Bond, J.A.; Mury, U.S.R. Graphs with Applications; Oxford: New York, NY, USA, 1982.",
    );
    assert_eq!(r.title.as_deref(), Some("Graphs with Applications"));
}

#[test]
fn a_bracketed_number_after_a_plural_noun_is_a_citation() {
    let list = PAREN_LIST.replace('(', "[").replace(')', "]");
    let body = "Models run in earlier steps [1], on gene panels [2] and lookup tables [3]; see Table [4] and Fig. [5].";
    let p = doc(body, &list);
    assert_eq!(cited_keys(&p), ["1", "2", "3"]);
}

#[test]
fn a_narrative_parenthesised_number_followed_by_a_verb_is_a_citation() {
    let body = "Models improve (1). Data matter (2). Results vary (3), and more (4). Others agree (1). A review by Gray et al. (5) examined results, and Blue (6) found more; in step (2) we add.";
    let p = doc(body, PAREN_LIST);
    assert_eq!(cited_keys(&p), ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(
        p.citation_markers.found, 7,
        "\"step (2) we\" is a label, not a marker"
    );
}

#[test]
fn initials_first_authors_then_a_comma_then_the_title() {
    for (entry, author, title) in [
        (
            "1. A.Bell, River flow and river thinking. Ubiquity. 2011, Article No. 1.",
            "Bell",
            "River flow and river thinking",
        ),
        (
            "2. K. Stone and M. Reed, New frameworks for assessing river thinking.Paper presented at the meeting of XYZ 2012, Vancouver,BC. 2012.",
            "Stone",
            "New frameworks for assessing river thinking",
        ),
        (
            "3. Q. Dale， The markings of a new river: Introducing rivers in the middle school, J. River Edu.4 (2012),no.2,121-135.",
            "Dale",
            "The markings of a new river: Introducing rivers in the middle school",
        ),
        (
            "4. B. J. Fox, J. F. Gray, and B. J. Fox, Graphical models for river flows. MIT press, 1998.",
            "Fox",
            "Graphical models for river flows",
        ),
    ] {
        let r = one(entry);
        assert_eq!(r.first_author.as_deref(), Some(author), "{entry}");
        assert_eq!(r.title.as_deref(), Some(title), "{entry}");
    }
    // initials-first authors closed by a period keep their title to the period
    let r = one(
        "5. A. B. Abel and D. Dane-Fox. Recognizing river entailment for flows. In Proc. X, 2016.",
    );
    assert_eq!(
        r.title.as_deref(),
        Some("Recognizing river entailment for flows")
    );
}
