//! Section kinds: which headings name non-content sections (references, back matter,
//! abstracts) and the classification pass that drops them.

use super::*;

pub(super) static REFERENCES_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:references?|bibliography|literature cited|works cited|cited literature|references and notes|reference list|notes and references)$",
    )
});
pub(super) static ABSTRACT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:abstract|summary points|key points|highlights|graphical abstract|structured abstract)\b",
    )
});
pub(super) static NON_CONTENT_NAMES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (
            re(r"^acknowledge?ments?\b|^acknowledge?ment of"),
            "acknowledgements",
        ),
        (
            re(
                r"^(?:authors?[’']?s?[’']?\s+(?:contributions?|information|details|and\s+af\w*liations?|biograph\w*)|author contributions?|contributors(?:hip)?|af\w*liations?|about the authors?|biograph(?:y|ies))(?:\s+statement)?$",
            ),
            "author information",
        ),
        (
            re(
                r"^(?:funding|financial support|financial disclosure|sources? of funding|grant support)(?:\s+(?:information|statement|sources?))?$",
            ),
            "funding",
        ),
        (
            re(
                r"^(?:conflicts? of interests?|competing (?:financial )?interests?|declaration of (?:competing|conflicting) interests?|disclosures?|duality of interest|potential conflicts)\b",
            ),
            "conflicts of interest",
        ),
        (
            re(
                r"^declarations?$|^ethics(?: approval| statement| declarations?)?(?: and consent.*)?$|^ethical (?:approval|statement|considerations)(?: and consent.*)?$|^consent for publication",
            ),
            "declarations",
        ),
        (
            re(
                r"^(?:data (?:and (?:code|materials) )?availability|availability of (?:data|supporting data)|code availability|supplementary (?:materials?|information|data)|supporting information)\b",
            ),
            "data availability",
        ),
        (
            re(r"^(?:abbreviations|list of abbreviations|nomenclature|acronyms)$"),
            "abbreviations",
        ),
        (re(r"^(?:table of contents|contents)$"), "table of contents"),
        (
            re(
                r"^(?:publisher[’']?s note|ready to submit your research|at bmc, research is always in progress|open access|copyright|orcid|additional information)\b",
            ),
            "publisher boilerplate",
        ),
    ]
});
/// A keyword list: like an abstract, an unheaded introduction may follow it.
pub(super) static KEYWORDS_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:keywords?|key words|index terms)$"));
pub(super) static TOP_LEVEL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:introduction|background|conclusions?|concluding remarks|conclusions? and .*|discussion|summary and .*|appendix.*|appendices|methods?|methodology|materials and methods|results|results and discussion|limitations|future (?:work|directions|research).*)$",
    )
});
pub(super) static INTRO_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:introduction|background)\b"));
pub(super) static GENERIC_SUB_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:examples?|explanation)$"));
pub(super) static STRUCTURED_ABSTRACT_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:background|objectives?|aims?|purpose|methods?|methodology|results?|findings|conclusions?|interpretation|significance|keywords?|key words|design|setting|participants|introduction|context|evidence|review methods)[^:：]{0,40}[:：]",
    )
});

pub(super) fn non_content_kind(name: &str) -> Option<&'static str> {
    if REFERENCES_NAME.is_match(name) {
        return Some("references");
    }
    // "Funding sources for open science" is a content heading; back-matter names are short
    if name.chars().count() > 60 {
        return None;
    }
    NON_CONTENT_NAMES
        .iter()
        .find(|(r, _)| r.is_match(name))
        .map(|(_, k)| *k)
}

pub(super) fn classify(units: &mut [Unit], ctx: &mut Ctx<'_>) {
    let refs_at = units.iter().position(|u| {
        u.non_content.is_none() && REFERENCES_NAME.is_match(&heading_name(&u.heading))
    });
    if let Some(r) = refs_at {
        for u in units.iter_mut().skip(r) {
            u.back = true;
        }
    }
    let has_abstract_heading = units
        .iter()
        .any(|u| ABSTRACT_NAME.is_match(&heading_name(&u.heading)));
    for i in 0..units.len() {
        let name = heading_name(&units[i].heading);
        let is_preamble = units[i].preamble;
        // non-content parents take their subsections with them
        if let Some(p) = units[i].parent
            && let Some(kind) = units[p].non_content.clone()
        {
            if kind == "references" {
                ctx.ref_text.push(units[i].body.clone());
            }
            let heading = units[p].heading.clone();
            units[i].non_content = Some(kind.clone());
            ctx.drop_unit(
                &mut units[i],
                format!("non-content section: {kind} (under \u{ab}{heading}\u{bb})"),
            );
            continue;
        }
        if is_preamble {
            let next_name = units
                .get(1)
                .map(|u| heading_name(&u.heading))
                .unwrap_or_default();
            if next_name.starts_with("abstract") {
                units[i].non_content = Some("front matter".into());
                ctx.drop_unit(
                    &mut units[i],
                    "non-content section: front matter before the abstract",
                );
                continue;
            }
            if !has_abstract_heading && INTRO_NAME.is_match(&next_name) {
                split_abstract(&mut units[i], ctx, "abstract");
            } else {
                strip_reference_runs(&mut units[i], ctx);
            }
            continue;
        }
        if ABSTRACT_NAME.is_match(&name) {
            split_abstract(&mut units[i], ctx, "abstract");
            continue;
        }
        if KEYWORDS_NAME.is_match(&name) {
            split_abstract(&mut units[i], ctx, "keywords");
            continue;
        }
        if is_author_block(&units[i].heading) {
            units[i].non_content = Some("author information".into());
            ctx.drop_unit(&mut units[i], "non-content section: author information");
            continue;
        }
        // a long section under an ethics name is a discussion of ethics, not a statement
        let long = units[i].body.chars().count() > LONG_STATEMENT_CHARS;
        let kind = non_content_kind(&name).filter(|k| !(*k == "declarations" && long));
        if let Some(kind) = kind {
            if kind == "references" {
                ctx.ref_text.push(units[i].body.clone());
            } else {
                // reference lists interrupted by a stray heading ("# FUNDING") continue here
                let min_run = if units[i].back { 1 } else { 3 };
                collect_runs(&units[i].body, min_run, &mut ctx.ref_text);
            }
            units[i].non_content = Some(kind.to_string());
            ctx.drop_unit(&mut units[i], format!("non-content section: {kind}"));
            continue;
        }
        if units[i].back && ref_share(&units[i].body) >= 0.5 {
            ctx.ref_text.push(units[i].body.clone());
            ctx.drop_unit(
                &mut units[i],
                "reference-list text after the References heading",
            );
            continue;
        }
        // anywhere else: entry-like lines that are most of the text, even when they do not
        // form runs (entries interleaved with page furniture)
        if ref_char_share(&units[i].body) >= 0.6 {
            ctx.ref_text.push(units[i].body.clone());
            ctx.drop_unit(&mut units[i], "reference-list text (no References heading)");
            continue;
        }
        strip_reference_runs(&mut units[i], ctx);
        if units[i].status != Status::Content {
            continue;
        }
        strip_back_matter(&mut units[i], ctx);
        if units[i].status != Status::Content {
            continue;
        }
        if let Some(reason) = not_prose_reason(&units[i].body) {
            ctx.drop_unit(&mut units[i], reason);
        }
    }
    mark_review_methods(units);
}

/// Ethics or declaration sections longer than this discuss the topic rather than state it.
const LONG_STATEMENT_CHARS: usize = 2_500;

/// Drops the abstract paragraphs of a unit; substantial text after them is the unheaded
/// introduction and stays, headed "Introduction".
pub(super) fn split_abstract(u: &mut Unit, ctx: &mut Ctx<'_>, label: &str) {
    let paras: Vec<&str> = u
        .body
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .collect();
    let mut n_abs = paras.len().min(1);
    while n_abs < paras.len() {
        let p = paras[n_abs].trim();
        if STRUCTURED_ABSTRACT_LABEL.is_match(p) || p.chars().count() < 200 || p.starts_with('©') {
            n_abs += 1;
        } else {
            break;
        }
    }
    let rest = paras[n_abs..].join("\n\n");
    if rest.chars().count() >= ctx.opts.min_section_chars {
        let abstract_text = paras[..n_abs].join("\n\n");
        let heading = u.heading.clone();
        ctx.drop_part(
            &heading,
            format!("non-content section: {label}"),
            &abstract_text,
        );
        u.heading = "Introduction".into();
        u.body = rest;
        strip_reference_runs(u, ctx);
    } else {
        u.non_content = Some(label.to_string());
        ctx.drop_unit(u, format!("non-content section: {label}"));
    }
}

/// A heading that is a list of authors: names separated by "·" (or LaTeX `\cdot`), an email
/// address, or several names carrying affiliation marks ("Ann Smith1,2, Bo Jones2*").
pub(super) fn is_author_block(heading: &str) -> bool {
    if heading.contains('@') {
        return true;
    }
    let separated: Vec<&str> = heading
        .split(['·', '∙', '•'])
        .flat_map(|s| s.split("\\cdot"))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if separated.len() >= 2 {
        return separated.iter().filter(|s| looks_like_name(s)).count() >= 2;
    }
    let marked = AFFILIATION_MARKED_NAME.find_iter(heading).count();
    marked >= 2 && heading.contains(',')
}

/// "A. B. Name", "Ann Smith", "Ann-Marie de Vries": two to five words, capitalised or initials.
fn looks_like_name(s: &str) -> bool {
    let words: Vec<&str> = s.split_whitespace().collect();
    (2..=5).contains(&words.len())
        && words.iter().all(|w| {
            let w = w.trim_end_matches(|c: char| c.is_ascii_digit() || ",*†‡".contains(c));
            w.chars().next().is_some_and(char::is_uppercase)
                || ["de", "van", "von", "der", "da", "di", "le", "la"].contains(&w)
        })
}

static AFFILIATION_MARKED_NAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"\p{Lu}\p{Ll}+(?:\d(?:,\d)*\*?|\*|†)(?:,|\s|$)"));

// ---------------------------------------------------------------------------------------------
// back matter inside sections

/// A line opening a back-matter statement ("Funding: …", "**Author Contributions:** …").
static BACK_MATTER_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:\*\*|__)?\s*(funding|financial support|author contributions?|authors?['’]? contributions?|conflicts? of interests?|competing interests?|declaration of competing interests?|acknowledge?ments?|data availability|availability of data and materials|institutional review board|informed consent|ethics approval|consent for publication|publisher['’]?s note|disclaimer)(?:\s+statement)?(?:\*\*|__)?\s*[:.：]",
    )
});
/// Open-access licence and copyright wording.
static LICENCE_SIGNAL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)creative commons|open access article|distributed under the terms|this article is licensed under|licensee \p{Lu}|permits unrestricted use|©\s*(?:19|20)\d\d|copyright\s*(?:©|\(c\))|all rights reserved",
    )
});
static LICENCE_START: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)^(?:\*\*)?(?:copyright|©|open access|this (?:is an open access|article is licensed))")
});

fn back_matter_kind(label: &str) -> &'static str {
    let l = label.to_lowercase();
    if l.starts_with("funding") || l.starts_with("financial") {
        "funding"
    } else if l.contains("contribution") {
        "author information"
    } else if l.contains("interest") {
        "conflicts of interest"
    } else if l.starts_with("acknowledg") {
        "acknowledgements"
    } else if l.contains("availability") {
        "data availability"
    } else if l.starts_with("publisher") || l.starts_with("disclaimer") {
        "publisher boilerplate"
    } else {
        "declarations"
    }
}

/// What kind of back matter a line is, if it is any.
fn back_matter_line(line: &str) -> Option<&'static str> {
    let t = line.trim();
    if let Some(c) = BACK_MATTER_LINE.captures(t) {
        return Some(back_matter_kind(c.get(1).map_or("", |m| m.as_str())));
    }
    let signals = LICENCE_SIGNAL.find_iter(t).count();
    let licence =
        t.chars().count() < 1_500 && ((signals >= 1 && LICENCE_START.is_match(t)) || signals >= 2);
    licence.then_some("licence")
}

/// Cuts back-matter statements and licence paragraphs out of a content section (the whole
/// section when nothing else is left).
pub(super) fn strip_back_matter(u: &mut Unit, ctx: &mut Ctx<'_>) {
    let mut kept = String::with_capacity(u.body.len());
    let mut cut: Vec<(&'static str, String)> = Vec::new();
    for line in u.body.lines() {
        match back_matter_line(line) {
            Some(kind) => cut.push((kind, line.to_string())),
            None => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    if cut.is_empty() {
        return;
    }
    let kept = clean_body(&kept);
    if kept.is_empty() {
        let kind = cut[0].0;
        u.non_content = Some(kind.to_string());
        ctx.drop_unit(u, format!("non-content section: {kind}"));
        return;
    }
    let heading = u.heading.clone();
    for (kind, text) in cut {
        ctx.drop_part(
            &heading,
            format!("back matter inside a section: {kind}"),
            &text,
        );
    }
    u.body = kept;
}

// ---------------------------------------------------------------------------------------------
// the review's own method

/// Headings that only a review's method section has.
static METHOD_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:search strateg|literature search|search (?:terms|strings?|queries|process)|(?:inclusion|exclusion|eligibility|selection) (?:and exclusion )?criteria|study selection|selection of (?:studies|articles|papers|the literature)|(?:review|survey) methodology|methodology of (?:this|the) (?:review|survey)|paper collection)",
    )
});
/// Headings of a review's method that other sections also use ("Risk of bias" in a reporting
/// guideline, "Data sources" in a dataset survey): a method only with method words in the text.
static METHOD_HEADING_SUPPORTED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:data extraction|data sources|information sources|quality assessment|risk of bias|screening|protocol and registration|research methodology)",
    )
});
/// Headings a method section shares with content sections ("Methods").
static METHOD_HEADING_GENERIC: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:methods?|methodology|materials and methods|review methods?|research methods?|study design|approach)$",
    )
});
/// Words of a review's method: where it searched and how it selected.
static METHOD_TERM: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(pubmed|medline|scopus|web of science|embase|google scholar|ieee xplore|acm digital library|cochrane|prisma|inclusion criteria|exclusion criteria|eligibility criteria|search strings?|search terms|we searched|were searched|screened|full[- ]text|duplicates|data extraction)\b",
    )
});

fn distinct_method_terms(text: &str) -> usize {
    METHOD_TERM
        .find_iter(text)
        .map(|m| m.as_str().to_lowercase())
        .collect::<HashSet<_>>()
        .len()
}

/// Marks sections describing the review's own method, and their subsections.
fn mark_review_methods(units: &mut [Unit]) {
    // a "Methods" chapter whose subsections name the review's steps ("Search strategy") is the
    // review's method, even when its own text is too short to tell
    let mut has_method_child = vec![false; units.len()];
    for u in units.iter() {
        if let Some(p) = u.parent
            && METHOD_HEADING.is_match(&heading_name(&u.heading))
        {
            has_method_child[p] = true;
        }
    }
    for i in 0..units.len() {
        let parent_is_method = units[i]
            .parent
            .is_some_and(|p| units[p].kind == SectionKind::ReviewMethod);
        let name = heading_name(&units[i].heading);
        let is_method = parent_is_method
            || METHOD_HEADING.is_match(&name)
            || (METHOD_HEADING_SUPPORTED.is_match(&name)
                && distinct_method_terms(&units[i].body) >= 1)
            || (METHOD_HEADING_GENERIC.is_match(&name)
                && (has_method_child[i] || distinct_method_terms(&units[i].body) >= 2));
        if is_method {
            units[i].kind = SectionKind::ReviewMethod;
        }
    }
}
