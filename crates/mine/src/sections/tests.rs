use super::*;

pub(super) fn opts(min: usize, max: usize) -> SectionOptions {
    SectionOptions {
        min_section_chars: min,
        max_section_chars: max,
    }
}

pub(super) fn para(words: usize, seed: &str) -> String {
    (0..words)
        .map(|i| format!("{seed}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
        + "."
}

pub(super) fn accounted(p: &ParsedSurvey) {
    assert_eq!(
        p.kept_units() + p.dropped_units() + p.merged,
        p.units,
        "{p:#?}"
    );
}

#[test]
fn flat_numbered_headings_rebuild_the_hierarchy_and_paths() {
    let md = format!(
        "# A Survey of Things\n\n# Abstract\n\n{abs}\n\n# 1 Introduction\n\n{a}\n\n# 2 Methods\n\n{b}\n\n# 2.1 Data\n\n{c}\n\n# 2.1.1 Sources\n\n{d}\n\n# 2.2 Models\n\n{e}\n\n# 3 Conclusion\n\n{f}\n\n# References\n\n[1] A. Smith, “A title here,” in Proc. X, 2019.\n",
        abs = para(40, "abs"),
        a = para(80, "a"),
        b = para(80, "b"),
        c = para(80, "c"),
        d = para(80, "d"),
        e = para(80, "e"),
        f = para(80, "f"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.title.as_deref(), Some("A Survey of Things"));
    let headings: Vec<&str> = p.sections.iter().map(|s| s.heading.as_str()).collect();
    assert_eq!(
        headings,
        [
            "1 Introduction",
            "2 Methods",
            "2.1 Data",
            "2.1.1 Sources",
            "2.2 Models",
            "3 Conclusion"
        ]
    );
    let sources = &p.sections[3];
    assert_eq!(sources.level, 3);
    assert_eq!(
        sources.heading_path,
        ["2 Methods", "2.1 Data", "2.1.1 Sources"]
    );
    assert_eq!(p.sections[4].heading_path, ["2 Methods", "2.2 Models"]);
    assert_eq!(p.sections[5].level, 1);
    assert!(p.sections.iter().enumerate().all(|(i, s)| s.index == i));
    let reasons: Vec<&str> = p.dropped.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "non-content section: abstract",
            "non-content section: references"
        ]
    );
    assert_eq!(p.references.len(), 1);
    accounted(&p);
}

#[test]
fn noisy_numbering_is_understood() {
    let cases = [
        ("1」INTRODUCTION", vec![1], "INTRODUCTION"),
        ("3IMETHODS", vec![3], "METHODS"),
        ("3.1 I Search procedures", vec![3, 1], "Search procedures"),
        ("4.1lScratch contents", vec![4, 1], "Scratch contents"),
        ("5.1丨Typifying", vec![5, 1], "Typifying"),
        ("2.1．Literature search", vec![2, 1], "Literature search"),
        (
            "3.4.1.L1.1 object detection",
            vec![3, 4, 1],
            "L1.1 object detection",
        ),
        ("4.Discussion", vec![4], "Discussion"),
        ("1 INTRODUCTION", vec![1], "INTRODUCTION"),
    ];
    for (h, num, title) in cases {
        let (n, t) = parse_numbering(h).unwrap_or_else(|| panic!("{h} not numbered"));
        assert_eq!(n, Numbering::Arabic(num), "{h}");
        assert_eq!(t, title, "{h}");
    }
    for h in [
        "3D cultures",
        "2019-nCoV outbreak",
        "Background",
        "5G networks",
    ] {
        assert!(parse_numbering(h).is_none(), "{h} parsed as numbered");
    }
}

#[test]
fn unnumbered_surveys_use_caps_and_run_in_headings() {
    let md = format!(
        "# Title of It\n\n# INTRODUCTION\n\n{a}\n\n# METHODS\n\n{b}\n\n# Search strategy\n\n{c}\n\n# Language.\n\n{d}\n\n# RESULTS\n\n{e}\n",
        a = para(80, "a"),
        b = para(80, "b"),
        c = para(80, "c"),
        d = para(80, "d"),
        e = para(80, "e"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    let paths: Vec<Vec<String>> = p.sections.iter().map(|s| s.heading_path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            vec!["INTRODUCTION".to_string()],
            vec!["METHODS".into()],
            vec!["METHODS".into(), "Search strategy".into()],
            vec![
                "METHODS".into(),
                "Search strategy".into(),
                "Language".into()
            ],
            vec!["RESULTS".into()],
        ]
    );
}

#[test]
fn short_sections_merge_into_their_parent_and_intro_forward() {
    let md = format!(
        "# T\n\n# 1 Big\n\nShort intro of one.\n\n# 1.1 Long\n\n{a}\n\n# 1.2 Tiny\n\nTiny text here.\n\n# 2 Other\n\n{b}\n",
        a = para(80, "a"),
        b = para(80, "b"),
    );
    let p = parse_markdown_survey(&md, &opts(200, 10_000));
    let headings: Vec<&str> = p.sections.iter().map(|s| s.heading.as_str()).collect();
    // "1.2 Tiny" merges into "1 Big"; "1 Big" is then still short and goes forward into 1.1
    assert_eq!(headings, ["1.1 Long", "2 Other"]);
    assert!(
        p.sections[0]
            .text
            .starts_with("1 Big\n\nShort intro of one.")
    );
    assert!(p.sections[0].text.contains("1.2 Tiny\n\nTiny text here."));
    assert_eq!(p.merged, 2);
    assert!(p.dropped.is_empty());
    accounted(&p);
}

#[test]
fn short_first_section_without_anything_to_merge_into_is_dropped() {
    let md = format!(
        "# T\n\n# Lonely\n\nfew words\n\n# Body\n\n{}\n",
        para(80, "x")
    );
    let p = parse_markdown_survey(&md, &opts(200, 10_000));
    assert_eq!(p.sections.len(), 1);
    assert_eq!(p.dropped.len(), 1);
    assert!(
        p.dropped[0].reason.starts_with("too short (9 chars)"),
        "{:?}",
        p.dropped
    );
    accounted(&p);
}

#[test]
fn long_sections_split_at_paragraph_boundaries() {
    let paras: Vec<String> = (0..9).map(|i| para(40, &format!("p{i}w"))).collect();
    let md = format!("# T\n\n# 3.2 Methods\n\n{}\n", paras.join("\n\n"));
    let total = paras.iter().map(|p| p.chars().count()).sum::<usize>() + 16;
    let max = total / 3 + 50;
    let p = parse_markdown_survey(&md, &opts(100, max));
    assert_eq!(p.sections.len(), 3, "{:#?}", p.sections);
    for (k, s) in p.sections.iter().enumerate() {
        assert_eq!(s.heading, format!("3.2 Methods (part {}/3)", k + 1));
        assert_eq!(s.part, Some((k + 1, 3)));
        assert_eq!(s.heading_path, ["3.2 Methods"]);
        assert!(s.text.chars().count() <= max);
        // every part is made of whole paragraphs
        for chunk in s.text.split("\n\n") {
            assert!(
                paras.iter().any(|p| p == chunk),
                "cut inside a paragraph: {chunk}"
            );
        }
    }
    let rejoined: Vec<&str> = p
        .sections
        .iter()
        .flat_map(|s| s.text.split("\n\n"))
        .collect();
    assert_eq!(
        rejoined,
        paras.iter().map(String::as_str).collect::<Vec<_>>()
    );
    accounted(&p);
}

#[test]
fn numeric_citations_resolve_with_ranges_and_lists() {
    let md = format!(
        "# T\n\n# 1 Intro\n\nGANs were proposed [3] and extended [1, 4]; see also [2–3] and [5-6]. {}\n\n# REFERENCES\n\n[1] L. J. Ratliff, S. A. Burden, and S. S. Sastry, “Characterization and computation of local nash equilibria,” in Allerton, pp. 917–924, 2013.\n[2] J. Schmidhuber, “Learning factorial codes by predictability minimization,” Neural Computation, vol. 4, 1992.\n[3] I. Goodfellow, J. Pouget-Abadie, and Y. Bengio, “Generative adversarial nets,” in NeurIPS, pp. 2672–2680, 2014. [4] A. Radford, L. Metz, and S. Chintala, “Unsupervised representation learning with deep convolutional GANs,” arXiv preprint arXiv:1511.06434, 2015.\n5. Margetts H, John P, Hale S. Political turbulence: how social media shape collective action. Princeton; 2015. doi:10.1515/9781400873555\n",
        para(60, "w")
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.references.len(), 5, "{:#?}", p.references);
    let r3 = &p.references[2];
    assert_eq!(r3.key, "3");
    assert_eq!(r3.first_author.as_deref(), Some("Goodfellow"));
    assert_eq!(r3.title.as_deref(), Some("Generative adversarial nets"));
    assert_eq!(r3.year.as_deref(), Some("2014"));
    let r5 = &p.references[4];
    assert_eq!(r5.first_author.as_deref(), Some("Margetts"));
    assert_eq!(r5.year.as_deref(), Some("2015"));
    assert_eq!(
        r5.title.as_deref(),
        Some("Political turbulence: how social media shape collective action")
    );
    assert_eq!(
        r5.url.as_deref(),
        Some("https://doi.org/10.1515/9781400873555")
    );
    let keys: Vec<&str> = p.sections[0]
        .citations
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(keys, ["3", "1", "4", "2", "5"]);
}

#[test]
fn author_year_citations_resolve() {
    let md = format!(
        "# T\n\n# Background\n\nFairness matters [Jannach and Jugovac, 2019]. Others agree (Smith et al., 2020a; Brown, 2018). Lee et al. (2017) disagree, and (Nobody, 2001) is not in the list. {}\n\n# References\n\nDietmar Jannach and Michael Jugovac. Measuring the business value of recommender systems. ACM Transactions on Management Information Systems, 10(4):1–23, 2019.\nSmith, J., & Jones, K. (2020a). A first paper on things. Journal of Things, 1(2), 3–4.\nSmith, J., & Jones, K. (2020b). A second paper on things. Journal of Things, 2(2), 3–4.\nBrown A, Green B (2018) Colours of research. Color J 3:1–9. https://doi.org/10.1000/ color.2018\nLee A, Kim B, Park C. 2017. Deep things revisited. In: Proc. Conf. 1–10.\n",
        para(60, "w")
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.references.len(), 5, "{:#?}", p.references);
    assert_eq!(p.references[0].key, "Jannach 2019");
    assert_eq!(
        p.references[0].title.as_deref(),
        Some("Measuring the business value of recommender systems")
    );
    assert_eq!(
        p.references[3].url.as_deref(),
        Some("https://doi.org/10.1000/color.2018")
    );
    assert_eq!(
        p.references[4].title.as_deref(),
        Some("Deep things revisited")
    );
    let keys: Vec<&str> = p.sections[0]
        .citations
        .iter()
        .map(|r| r.key.as_str())
        .collect();
    assert_eq!(
        keys,
        ["Jannach 2019", "Smith 2020a", "Brown 2018", "Lee 2017"]
    );
}

#[test]
fn references_and_back_matter_are_dropped_and_accounted() {
    let md = format!(
        "# T\n\n# Introduction\n\n{a}\n\n# Acknowledgments\n\nWe thank everyone.\n\n# Conflicts of Interest\n\nNone declared.\n\n# References\n\n1. Golden SH, Brown A. Health disparities in endocrine disorders. J Clin Endocrinol Metab 2012;97:E1579.\n2. Chin MH. Creating the business case for health equity. J Gen Intern Med 2016;31:792–796\n\n# FUNDING\n\n# NP received a University of Auckland PhD Scholarship and was funded by a grant.\n\n3. Peek ME, Vela MB. Practical lessons for teaching about race. Acad Med 2020;95:1–5\n\n# Box With Content\n\n{b}\n",
        a = para(80, "a"),
        b = para(80, "b"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    let headings: Vec<&str> = p.sections.iter().map(|s| s.heading.as_str()).collect();
    assert_eq!(headings, ["Introduction", "Box With Content"]);
    let reasons: Vec<&str> = p.dropped.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "non-content section: acknowledgements",
            "non-content section: conflicts of interest",
            "non-content section: references",
            "non-content section: funding"
        ]
    );
    // the entry after the stray FUNDING heading is still in the reference list
    let keys: Vec<&str> = p.references.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["1", "2", "3"]);
    accounted(&p);
}

#[test]
fn reference_lists_without_a_heading_are_cut_out() {
    let md = format!(
        "# T\n\n# 5 Conclusion\n\n{a}\n\n[1] A. Smith, “One paper on a thing,” in Proc. A, 2019.\n[2] B. Jones, “Two papers on a thing,” in Proc. B, 2020.\n[3] C. Brown, “Three papers on a thing,” in Proc. C, 2021.\n",
        a = para(80, "a")
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.sections.len(), 1);
    assert!(
        !p.sections[0].text.contains("[1]"),
        "{}",
        p.sections[0].text
    );
    assert_eq!(p.references.len(), 3);
    assert!(p.dropped.iter().all(|d| d.partial));
    accounted(&p);
}

#[test]
fn abstract_is_dropped_and_an_unheaded_introduction_after_it_kept() {
    let md = format!(
        "# T\n\n# Abstract\n\n{abs}\n\n{intro1}\n\n{intro2}\n\n# Properties\n\n{body}\n",
        abs = para(40, "abs"),
        intro1 = para(60, "i"),
        intro2 = para(60, "j"),
        body = para(80, "b"),
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.sections[0].heading, "Introduction");
    assert!(p.sections[0].text.starts_with("i0 i1"), "{p:#?}");
    assert!(!p.sections[0].text.contains("abs0"));
    assert_eq!(p.dropped.len(), 1);
    assert!(p.dropped[0].partial);
    assert_eq!(p.dropped[0].reason, "non-content section: abstract");
    accounted(&p);
}

#[test]
fn noise_headings_stay_text() {
    let md = format!(
        "# T\n\n# Results\n\n{a}\n\n# Full-size DOI: 10.7717/peerjcs.1400/fig-2\n\nmore text\n\n#\n\nand more\n",
        a = para(80, "a")
    );
    let p = parse_markdown_survey(&md, &opts(100, 10_000));
    assert_eq!(p.units, 1);
    assert_eq!(p.sections.len(), 1);
    assert!(p.sections[0].text.contains("more text") && p.sections[0].text.contains("and more"));
}

#[test]
fn structured_surveys_parse_and_bad_shapes_are_errors() {
    let v = serde_json::json!({
        "id": "s1",
        "title": "A structured survey",
        "sections": [
            {"heading": "Abstract", "text": para(30, "a")},
            {"heading": "1 Intro", "level": 1, "text": format!("{} As shown in [1].", para(60, "b"))},
            {"heading": "1.1 Detail", "text": format!("{} (Smith et al., 2020)", para(60, "c"))},
        ],
        "references": [
            "A. Smith, “Something important about x,” in Proc., 2020.",
            {"title": "Other", "authors": ["Jones, K."], "year": 2019, "url": "https://x.org"}
        ]
    });
    let p = parse_structured_survey(&v, &opts(100, 10_000)).unwrap();
    assert_eq!(p.title.as_deref(), Some("A structured survey"));
    assert_eq!(p.sections.len(), 2);
    assert_eq!(p.sections[1].heading_path, ["1 Intro", "1.1 Detail"]);
    assert_eq!(p.sections[0].citations.len(), 1);
    assert_eq!(
        p.sections[0].citations[0].first_author.as_deref(),
        Some("Smith")
    );
    assert_eq!(p.references[1].first_author.as_deref(), Some("Jones"));
    assert_eq!(p.references[1].year.as_deref(), Some("2019"));
    accounted(&p);

    let err =
        |v: serde_json::Value| parse_structured_survey(&v, &SectionOptions::default()).unwrap_err();
    assert_eq!(
        err(serde_json::json!({"title": "x"})),
        "missing field `sections`"
    );
    assert_eq!(
        err(serde_json::json!({"sections": "x"})),
        "`sections` is not an array"
    );
    assert_eq!(
        err(serde_json::json!({"sections": [{"heading": "a", "text": "t"}, {"heading": "b"}]})),
        "section 1 has no text"
    );
    assert_eq!(
        err(serde_json::json!([1, 2])),
        "survey is not a JSON object"
    );
    assert_eq!(
        err(serde_json::json!({"sections": [], "references": [3]})),
        "reference 0 is neither a string nor an object"
    );
}

#[test]
fn first_author_handles_the_common_styles() {
    let cases = [
        (
            "L. J. Ratliff, S. A. Burden, and S. S. Sastry, “Characterization,” 2013.",
            "Ratliff",
        ),
        (
            "Abdel-Karim BM, Pfeufer N, Hinz O (2021) Machine learning",
            "Abdel-Karim",
        ),
        (
            "AbuShawar, B., & Atwell, E. (2015). Alice chatbot",
            "AbuShawar",
        ),
        (
            "Himan Abdollahpouri and Robin Burke. Multi-stakeholder recommendation",
            "Abdollahpouri",
        ),
        (
            "Robin Burke. Multisided fairness for recommendation. 2017.",
            "Burke",
        ),
        (
            "Von Hoff DD, Stephenson Jr. JJ, Rosen P, et al. Pilot study",
            "Von Hoff",
        ),
        (
            "A.Aho, Computation and computational thinking. Ubiquity. 2011",
            "Aho",
        ),
        (
            "Liu YW et al. Human embryonic stem cell-derived cardiomyocytes",
            "Liu",
        ),
        (
            "Sarma, S.V.M. Applications of Graph Theory in Human Life. 2012",
            "Sarma",
        ),
    ];
    for (entry, want) in cases {
        assert_eq!(first_author(entry).as_deref(), Some(want), "{entry}");
    }
}

#[test]
fn non_content_names_match_whole_headings_only() {
    for (h, kind) in [
        ("acknowledgements", Some("acknowledgements")),
        ("authors and afliations", Some("author information")),
        ("author contributions", Some("author information")),
        ("funding", Some("funding")),
        ("conflict of interest", Some("conflicts of interest")),
        ("abbreviations", Some("abbreviations")),
        ("references", Some("references")),
        (
            "affiliation network modelling using graphs in social network",
            None,
        ),
        ("funding models for open science", None),
        ("authors", None),
        ("authors' impact", None),
    ] {
        assert_eq!(non_content_kind(h), kind, "{h}");
    }
}

#[test]
fn bracketed_ranges_between_brackets_resolve() {
    let refs: Vec<Reference> = (1..=5)
        .map(|n| Reference {
            key: n.to_string(),
            raw: format!("entry {n}"),
            ..Default::default()
        })
        .collect();
    let index = CitationIndex::new(&refs);
    let style = CiteStyle {
        paren: false,
        superscript: false,
    };
    let keys: Vec<String> = index
        .resolve("hinge loss based GAN [2]-[4] and [5]", style, &refs)
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["2", "3", "4", "5"]);
}

#[test]
fn expand_numbers_handles_ranges_and_lists() {
    assert_eq!(expand_numbers("3–5, 9"), [3, 4, 5, 9]);
    assert_eq!(expand_numbers("1,4"), [1, 4]);
    assert_eq!(expand_numbers("1-500"), Vec::<u32>::new());
}
