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
                r"^declarations?$|^ethics\b|^ethical (?:approval|statement|considerations)|^consent for publication",
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
                r"^(?:publisher[’']?s note|ready to submit your research|at bmc, research is always in progress|open access|copyright|orcid|additional information|keywords?)\b",
            ),
            "publisher boilerplate",
        ),
    ]
});
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
                split_abstract(&mut units[i], ctx);
            } else {
                strip_reference_runs(&mut units[i], ctx);
            }
            continue;
        }
        if ABSTRACT_NAME.is_match(&name) {
            split_abstract(&mut units[i], ctx);
            continue;
        }
        if let Some(kind) = non_content_kind(&name) {
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
        strip_reference_runs(&mut units[i], ctx);
    }
}

/// Drops the abstract paragraphs of a unit; substantial text after them is the unheaded
/// introduction and stays, headed "Introduction".
pub(super) fn split_abstract(u: &mut Unit, ctx: &mut Ctx<'_>) {
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
        ctx.drop_part(&heading, "non-content section: abstract", &abstract_text);
        u.heading = "Introduction".into();
        u.body = rest;
        strip_reference_runs(u, ctx);
    } else {
        u.non_content = Some("abstract".into());
        ctx.drop_unit(u, "non-content section: abstract");
    }
}
