//! Survey section extraction for the researchqa pipeline: turns one survey (PDF-converted
//! Markdown, or the structured `{title, sections, references}` JSON layout) into the content
//! sections a query can be mined from, each with its heading path and the works it cites.
//!
//! Every heading/text unit of the input ends up in exactly one of three places: a kept
//! [`Section`] (possibly split into parts), a [`DroppedSection`] with a reason, or merged into
//! another kept section (counted in [`ParsedSurvey::merged`]). [`ParsedSurvey::units`] counts the
//! units found, so `kept units + dropped (whole) + merged = units` always holds.
//!
//! Decisions, from reading real PDF-converted surveys:
//! - **title**: the first heading when it is not numbered, not an abstract and not a
//!   non-content heading. Article-type labels ("RESEARCH ARTICLE", "Review") are stripped.
//! - **hierarchy**: PDF converters put every heading at the same `#` level, so levels come from
//!   the numbering ("2", "2.1", "2.1.3"; "II." with "A." under it), with conversion noise
//!   tolerated ("1」INTRODUCTION", "3IMETHODS", "4.1lScratch", "2.1．Literature"). An unnumbered
//!   heading in a numbered survey is a subsection of the current numbered section, unless it is
//!   a document-level name (Abstract, References, Conclusion, …). In unnumbered surveys:
//!   ALL-CAPS headings sit above mixed-case ones when both occur, run-in headings ending with
//!   a period ("Morphology.") sit under the previous heading, and "Example(s)"/"Explanation"
//!   sit under the item they explain. When the Markdown levels do vary, they are used for
//!   unnumbered headings.
//! - **abstract**: dropped ("non-content section: abstract"). It summarises the whole survey,
//!   so a query mined from it would be generic and overlap the per-section queries, which is
//!   what ResearchQA mines. Abstract paragraphs are the first one plus structured ones
//!   ("Methods: …", "Keywords: …") and short trailers; substantial text after them (some
//!   converters put the unheaded introduction under the abstract heading) is kept as a section
//!   headed "Introduction". Text between the title and the first heading is treated the same
//!   way when an introduction heading follows it (an unlabelled abstract), as front matter when
//!   an abstract heading follows it, and otherwise kept as "Introduction".
//!   "Key points", "Summary points" and "Highlights" are summaries too and dropped likewise.
//! - **non-content sections** (references, acknowledgements, author information, funding,
//!   conflicts of interest, declarations, data availability, abbreviations, tables of contents,
//!   ethics, publisher notes) are dropped with their subsections. Everything after the
//!   References heading is back matter: reference-list text there is dropped, real content
//!   (boxes, appendices) is kept, and short back-matter sections never merge into the body.
//! - **reference lists without a heading** are found by their shape: runs of three or more
//!   lines that look like entries ("[12] A. Smith, …", "12. Smith J, … 2019", "Smith, J. (2019)
//!   …"). A run is cut out of the section (a partial drop) or, when it is most of the section,
//!   the whole section is dropped; the entries are parsed into the reference list either way.
//! - **noise headings** (empty `#`, "Full-size DOI: …", "Figure 3", "Box 1 |") are not sections:
//!   their line stays in the text of the section around them. A sentence that the converter
//!   made a heading right under an empty non-content heading ("# FUNDING" / "# NP received a
//!   scholarship…") is folded into that heading's text.
//! - **merging**: a section whose text (after its short subsections were merged into it) is
//!   shorter than `min_section_chars` merges into its parent; a top-level one merges forward into
//!   its first kept subsection (a chapter's short intro belongs with what follows), else into
//!   the previous kept section (never across the References heading), else it is dropped as
//!   "too short". Merged text keeps its heading as a line, so structure stays readable. A heading
//!   with no text and nothing merged into it is dropped as "empty".
//! - **splitting**: sections over `max_section_chars` are split at paragraph boundaries into
//!   balanced parts ("3.2 Methods (part 2/3)", [`Section::part`]); an oversized paragraph is cut
//!   at line, then sentence, then character boundaries. `heading_path` stays the structural
//!   path without the part label.
//! - **images**: `![](images/…)` lines are removed from section text (the files are not part
//!   of the input); captions and tables stay.
//! - **citations**: the reference list is parsed into entries (first author surname, title,
//!   year, url/doi) keyed by number ("12") or by "Surname Year". Inline citations are resolved
//!   in numeric ([12], [3–5], [1, 4]; "(12–14)" and superscript-like "text.12" only in surveys
//!   that do not use brackets) and author-year ([Jannach and Jugovac, 2019], (Smith et al.,
//!   2020a; Lee 2019), Smith et al. (2020), Li et al. [2021c]) styles. Citations that do not
//!   resolve are not linked. Each section lists the works it cites once, in order of first
//!   appearance.
//!
//! Regexes are compiled once; every pass is linear in the document size.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use rubricmill_core::CitationMetadata;
use rubricmill_core::row::excerpt;

/// Size bounds of a kept section, in characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionOptions {
    /// Sections shorter than this merge into their parent (or the previous section).
    pub min_section_chars: usize,
    /// Sections longer than this are split at paragraph boundaries.
    pub max_section_chars: usize,
}

impl Default for SectionOptions {
    fn default() -> Self {
        Self {
            min_section_chars: 400,
            max_section_chars: 12_000,
        }
    }
}

/// One content section a query can be mined from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// 0-based order among kept sections; stable for the same input.
    pub index: usize,
    /// This section's own heading, cleaned; split parts carry " (part k/n)".
    pub heading: String,
    /// Headings from the top level down to this one (without the part label).
    pub heading_path: Vec<String>,
    /// 1 = top level.
    pub level: usize,
    pub text: String,
    /// Works cited in `text`, resolved against the reference list, once each, in order of first
    /// appearance.
    pub citations: Vec<Reference>,
    /// `Some((k, n))` for the k-th of n parts of a split section (1-based).
    pub part: Option<(usize, usize)>,
}

/// One entry of a survey's reference list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reference {
    /// "12" for numbered lists, "Jannach 2019" for author-year lists.
    pub key: String,
    /// Surname of the first author.
    pub first_author: Option<String>,
    pub title: Option<String>,
    pub year: Option<String>,
    /// URL, or `https://doi.org/…` for a DOI.
    pub url: Option<String>,
    /// The entry as it appears in the list (whitespace collapsed, number marker removed).
    pub raw: String,
}

impl Reference {
    /// The bibliographic fields rubric items carry.
    pub fn citation_metadata(&self) -> CitationMetadata {
        CitationMetadata {
            first_author: self.first_author.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
            year: self.year.clone(),
        }
    }
}

/// A heading/text unit (or part of one) that did not become a section, with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DroppedSection {
    pub heading: String,
    /// e.g. "non-content section: references", "too short (87 chars) and no parent to merge
    /// into", "empty".
    pub reason: String,
    pub excerpt: String,
    /// True when only part of the unit's text was dropped (reference-list text cut out of a
    /// section, the abstract paragraphs before an unheaded introduction); the rest is kept or
    /// merged, so the unit is accounted there.
    pub partial: bool,
}

/// A survey split into sections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedSurvey {
    pub title: Option<String>,
    pub sections: Vec<Section>,
    pub dropped: Vec<DroppedSection>,
    pub references: Vec<Reference>,
    /// Heading/text units found in the input (headings other than the title and noise
    /// headings, plus the untitled text before the first heading when there is any).
    pub units: usize,
    /// Units whose text was merged into another kept section.
    pub merged: usize,
}

impl ParsedSurvey {
    /// Units that became at least one kept section (a split section counts once).
    pub fn kept_units(&self) -> usize {
        self.sections
            .iter()
            .filter(|s| s.part.is_none_or(|(k, _)| k == 1))
            .count()
    }

    /// Units dropped as a whole.
    pub fn dropped_units(&self) -> usize {
        self.dropped.iter().filter(|d| !d.partial).count()
    }
}

// ---------------------------------------------------------------------------------------------
// regexes

fn re(pattern: &str) -> Regex {
    // the patterns are literals of this module; a bad one is a programming error caught by the
    // unit tests, not a data-dependent failure
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad built-in regex {pattern:?}: {e}"))
}

static HEADING_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^ {0,3}#{1,6}(?:\s+(.*?))?\s*#*\s*$"));
static ARABIC_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,2}(?:[.．]\d{1,2}){0,5})([.．])?(.*)$"));
static ROMAN_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(I|II|III|IV|V|VI|VII|VIII|IX|X|XI|XII|XIII|XIV|XV)[.．]\s+(\S.*)$"));
static LETTER_NUM: LazyLock<Regex> = LazyLock::new(|| re(r"^([A-H])[.．]\s+(\p{Lu}.*)$"));
static TITLE_NOISE_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:[|丨」｜]\s*|[Il]\s+(?:\p{Lu}))"));
static ARTICLE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:RESEARCH ARTICLE|REVIEW ARTICLE|ORIGINAL ARTICLE|REVIEW|Review|Research Article)\s+(\p{Lu})",
    )
});
static NOISE_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:full-size\s+doi\b|doi:|fig(?:ure)?\.?\s*\d|table\s*\d+\s*[.:|]?\s*$|box\s*\d+\s*[|:]?\s*$|source:)",
    )
});
static IMAGE_LINE: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$"));

static REFERENCES_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:references?|bibliography|literature cited|works cited|cited literature|references and notes|reference list|notes and references)$",
    )
});
static ABSTRACT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:abstract|summary points|key points|highlights|graphical abstract|structured abstract)\b",
    )
});
static NON_CONTENT_NAMES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
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
static TOP_LEVEL_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:introduction|background|conclusions?|concluding remarks|conclusions? and .*|discussion|summary and .*|appendix.*|appendices|methods?|methodology|materials and methods|results|results and discussion|limitations|future (?:work|directions|research).*)$",
    )
});
static INTRO_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:introduction|background)\b"));
static GENERIC_SUB_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:examples?|explanation)$"));
static STRUCTURED_ABSTRACT_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:background|objectives?|aims?|purpose|methods?|methodology|results?|findings|conclusions?|interpretation|significance|keywords?|key words|design|setting|participants|introduction|context|evidence|review methods)[^:：]{0,40}[:：]",
    )
});

// reference-list shapes
static REF_NUM_BRACKET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\[\d{1,4}\]\s*\S"));
static REF_NUM_AUTHOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*\d{1,4}\.?\s*(?:\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?,?\s+(?:\p{Lu}{1,3}\b|\p{Lu}\.)|(?:\p{Lu}\.\s?){1,3}\s?\p{Lu}[\p{L}'’\-]+)",
    )
});
static REF_APA: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?,\s?(?:\p{Lu}\.\s?-?){1,3}")
});
static REF_VANCOUVER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?\s\p{Lu}{1,3}(?:,\s|\.\s|\s\(|\s(?:19|20)\d\d)",
    )
});
static REF_FULLNAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:\p{Lu}[\p{L}'’\-]+\s(?:\p{Lu}\.\s)?){1,3}\p{Lu}[\p{L}'’\-]+(?:,\s|\sand\s|\.\s).*(?:19|20)\d\d[a-z]?\.?\s*$",
    )
});
static YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b((?:19|20)\d{2})([a-z])?\b"));
static YEAR_PAREN: LazyLock<Regex> = LazyLock::new(|| re(r"\(((?:19|20)\d{2}[a-z]?)\)"));
static YEAR_AFTER_AUTHORS: LazyLock<Regex> =
    LazyLock::new(|| re(r"[.,]\s?((?:19|20)\d{2}[a-z]?)\.(?:\s|$)"));
static YEAR_VANCOUVER: LazyLock<Regex> = LazyLock::new(|| re(r"\b((?:19|20)\d{2}[a-z]?)\s?;"));
static URL: LazyLock<Regex> = LazyLock::new(|| re(r"https?://\S+"));
static DOI: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bdoi:?\s*(10\.\d{4,9}/\S+)|\b(10\.\d{4,9}/\S+)"));
static ENTRY_MARKER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(?:\[(\d{1,4})\]\s*|(\d{1,4})\.\s*|(\d{1,4})\s+)"));
static INLINE_MARKER: LazyLock<Regex> = LazyLock::new(|| re(r"\s(?:\[(\d{1,4})\]|(\d{1,4})\.)"));
static QUOTED_TITLE: LazyLock<Regex> = LazyLock::new(|| re(r#"[“„"«]([^”"“»]{8,400}?)[,.]?[”"»]"#));
static VANCOUVER_AUTHORS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:[\p{L}'’\-]+(?:\s[\p{L}'’\-]+){0,2}\s\p{Lu}{1,3}(?:,\s|\.\s|,?\set\sal\.\s?))+")
});
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| re(r"[.?!](?:\s|$)"));

// inline citations
static CITE_NUM_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| re(r"\[(\d{1,4}(?:\s*[-–—,;]\s*\d{1,4})*)\]"));
static CITE_NUM_BRACKET_RANGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\[(\d{1,4})\]\s*[-–—]\s*\[(\d{1,4})\]"));
static CITE_NUM_PAREN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\((\d{1,3}(?:\s*[-–—,]\s*\d{1,3})*)\)(?:[.,;:)]|\s*$)"));
static CITE_NUM_SUPER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:[a-z]{2}[.,]?|[a-z][)\]][.,]?)(\d{1,3}(?:[-–,]\d{1,3})*)(?:[.,;:]?(?:\s|$))")
});
static CITE_GROUP: LazyLock<Regex> =
    LazyLock::new(|| re(r"[(\[]([^()\[\]]{2,400}?(?:19|20)\d{2}[a-z]?[^()\[\]]{0,40}?)[)\]]"));
static CITE_NARRATIVE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(\p{Lu}[\p{L}'’\-]+)(\s+et\s+al\.?|\s+(?:and|&)\s+\p{Lu}[\p{L}'’\-]+)?,?\s*[(\[]((?:19|20)\d{2}[a-z]?)[)\]]",
    )
});

// ---------------------------------------------------------------------------------------------
// public entry points

/// Splits a PDF-converted Markdown survey into content sections.
pub fn parse_markdown_survey(text: &str, opts: &SectionOptions) -> ParsedSurvey {
    let raw = read_markdown(text);
    build(raw, opts)
}

/// Splits a survey in the structured JSON layout
/// `{id?, title, field?, sections: [{heading, level?, text}], references?: [string | object]}`.
/// Errors name the first thing that does not have that shape.
pub fn parse_structured_survey(
    value: &serde_json::Value,
    opts: &SectionOptions,
) -> Result<ParsedSurvey, String> {
    let obj = value
        .as_object()
        .ok_or_else(|| "survey is not a JSON object".to_string())?;
    let title = match obj.get("title") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(collapse_ws(s)).filter(|s| !s.is_empty()),
        Some(_) => return Err("`title` is not a string".into()),
    };
    let sections = obj
        .get("sections")
        .ok_or_else(|| "missing field `sections`".to_string())?;
    let sections = sections
        .as_array()
        .ok_or_else(|| "`sections` is not an array".to_string())?;
    let mut units = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let s = s
            .as_object()
            .ok_or_else(|| format!("section {i} is not an object"))?;
        let heading = match s.get("heading").or_else(|| s.get("title")) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(h)) => h.clone(),
            Some(_) => return Err(format!("section {i} has a heading that is not a string")),
        };
        let text = match s.get("text").or_else(|| s.get("content")) {
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(serde_json::Value::Null) | None => return Err(format!("section {i} has no text")),
            Some(_) => return Err(format!("section {i} has a text that is not a string")),
        };
        let level = match s.get("level") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(l) if l >= 1 => Some(l as usize),
                _ => {
                    return Err(format!(
                        "section {i} has a level that is not a positive integer"
                    ));
                }
            },
        };
        units.push(RawUnit {
            heading: Some(heading),
            body: text,
            md_level: level,
        });
    }
    let references = match obj.get("references") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => structured_references(items)?,
        Some(_) => return Err("`references` is not an array".into()),
    };
    let raw = RawDoc {
        title,
        units,
        structured_refs: Some(references),
        explicit_levels: true,
    };
    Ok(build(raw, opts))
}

// ---------------------------------------------------------------------------------------------
// reading

#[derive(Debug, Clone)]
struct RawUnit {
    /// `None` for the text before the first heading (and under the title).
    heading: Option<String>,
    body: String,
    /// Markdown `#` count, or the structured `level`.
    md_level: Option<usize>,
}

#[derive(Debug, Clone)]
struct RawDoc {
    title: Option<String>,
    units: Vec<RawUnit>,
    structured_refs: Option<Vec<Reference>>,
    /// Structured input: `md_level`, when present, is the author's level.
    explicit_levels: bool,
}

fn read_markdown(text: &str) -> RawDoc {
    let mut title: Option<String> = None;
    let mut units: Vec<RawUnit> = vec![RawUnit {
        heading: None,
        body: String::new(),
        md_level: None,
    }];
    let mut in_fence = false;
    let mut seen_heading = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        }
        let heading = if in_fence {
            None
        } else {
            HEADING_LINE.captures(line)
        };
        let Some(caps) = heading else {
            push_line(units.last_mut(), line);
            continue;
        };
        let hashes = line.trim_start().chars().take_while(|c| *c == '#').count();
        let htext = caps.get(1).map_or("", |m| m.as_str()).trim().to_string();
        let cleaned = collapse_ws(&htext);
        // the title: the first heading, when it is not numbered or a known section name
        if !seen_heading {
            seen_heading = true;
            let name = heading_name(&cleaned);
            if !cleaned.is_empty()
                && parse_numbering(&cleaned).is_none()
                && !ABSTRACT_NAME.is_match(&name)
                && !REFERENCES_NAME.is_match(&name)
                && non_content_kind(&name).is_none()
                && !INTRO_NAME.is_match(&name)
            {
                title = Some(clean_title(&cleaned));
                continue;
            }
        }
        // noise headings stay as text of the current unit
        if cleaned.is_empty() || NOISE_HEADING.is_match(&cleaned) {
            push_line(units.last_mut(), &htext);
            continue;
        }
        // a sentence made a heading right under an empty non-content heading is its text
        if let Some(cur) = units.last_mut() {
            let cur_is_empty_non_content = cur.body.trim().is_empty()
                && cur.heading.as_deref().is_some_and(|h| {
                    let n = heading_name(&collapse_ws(h));
                    non_content_kind(&n).is_some()
                });
            if cur_is_empty_non_content
                && parse_numbering(&cleaned).is_none()
                && looks_like_text_line(&cleaned)
            {
                push_line(Some(cur), &htext);
                continue;
            }
        }
        units.push(RawUnit {
            heading: Some(htext),
            body: String::new(),
            md_level: Some(hashes),
        });
    }
    // the untitled preamble only counts when it has text
    if units
        .first()
        .is_some_and(|u| u.heading.is_none() && u.body.trim().is_empty())
    {
        units.remove(0);
    }
    RawDoc {
        title,
        units,
        structured_refs: None,
        explicit_levels: false,
    }
}

fn push_line(unit: Option<&mut RawUnit>, line: &str) {
    if let Some(u) = unit {
        u.body.push_str(line);
        u.body.push('\n');
    }
}

/// A heading line that is really a sentence or a name list.
fn looks_like_text_line(h: &str) -> bool {
    let words = h.split_whitespace().count();
    h.contains('·')
        || h.contains("\\cdot")
        || h.contains('@')
        || (h.ends_with('.') && words >= 6)
        || h.chars().count() > 80
}

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clean_title(t: &str) -> String {
    let t = collapse_ws(t);
    match ARTICLE_LABEL.captures(&t) {
        Some(c) => match c.get(1) {
            Some(m) => t[m.start()..].to_string(),
            None => t,
        },
        None => t,
    }
}

/// Lower-cased heading text without numbering, letter spacing and trailing punctuation; what
/// name-based rules look at.
fn heading_name(cleaned: &str) -> String {
    let text = match parse_numbering(cleaned) {
        Some((_, t)) => t,
        None => cleaned.to_string(),
    };
    // "A B S T R A C T" → "ABSTRACT"
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let text = if tokens.len() >= 4 && tokens.iter().all(|t| t.chars().count() == 1) {
        tokens.concat()
    } else {
        text
    };
    text.trim()
        .trim_end_matches([':', '：', '.', '|', ' ', '\u{3000}'])
        .trim()
        .to_lowercase()
        .replace('’', "'")
}

#[derive(Debug, Clone, PartialEq)]
enum Numbering {
    Arabic(Vec<u32>),
    Roman(String),
    Letter(char),
}

/// Splits a heading into its numbering and its title text, tolerating conversion noise.
fn parse_numbering(h: &str) -> Option<(Numbering, String)> {
    if let Some(c) = ARABIC_NUM.captures(h) {
        let num = c.get(1).map_or("", |m| m.as_str());
        let dotted = c.get(2).is_some();
        let rest = c.get(3).map_or("", |m| m.as_str());
        let parts: Vec<u32> = num
            .split(['.', '．'])
            .filter_map(|p| p.parse().ok())
            .collect();
        let mut chars = rest.chars();
        let first = chars.next();
        let second = chars.next();
        let rest_ok = match first {
            None => false,
            Some(c) if c.is_whitespace() => true,
            Some('|' | '丨' | '」' | '｜') => true,
            Some('I' | 'l') => second.is_some_and(|s| s.is_whitespace() || s.is_uppercase()),
            Some(_) => dotted,
        };
        let top_ok = parts.first().is_some_and(|n| *n <= 40);
        if rest_ok && top_ok && !parts.is_empty() {
            let mut title = rest.trim_start();
            // one noise separator between the number and the title
            if let Some(m) = TITLE_NOISE_PREFIX.find(title) {
                let noise_len = m.as_str().chars().next().map_or(0, char::len_utf8);
                title = title[noise_len..].trim_start();
            } else if !rest.starts_with(char::is_whitespace) && !dotted {
                // "3IMETHODS": the noise letter is glued to the number
                title = &rest[1..];
            }
            let title = title.trim();
            if title.chars().any(char::is_alphabetic) {
                return Some((Numbering::Arabic(parts), title.to_string()));
            }
        }
    }
    if let Some(c) = ROMAN_NUM.captures(h) {
        let roman = c.get(1).map_or("", |m| m.as_str()).to_string();
        let title = c.get(2).map_or("", |m| m.as_str()).trim().to_string();
        return Some((Numbering::Roman(roman), title));
    }
    if let Some(c) = LETTER_NUM.captures(h) {
        let letter = c
            .get(1)
            .and_then(|m| m.as_str().chars().next())
            .unwrap_or('A');
        let title = c.get(2).map_or("", |m| m.as_str()).trim().to_string();
        return Some((Numbering::Letter(letter), title));
    }
    None
}

fn non_content_kind(name: &str) -> Option<&'static str> {
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

fn is_caps_heading(text: &str) -> bool {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() >= 3 && letters.iter().all(|c| c.is_uppercase())
}

// ---------------------------------------------------------------------------------------------
// the unit pipeline

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Content,
    Dropped,
    Merged,
}

#[derive(Debug, Clone)]
struct Unit {
    heading: String,
    level: usize,
    body: String,
    /// After the References heading.
    back: bool,
    status: Status,
    parent: Option<usize>,
    /// Dropped as a non-content section (its subsections go with it).
    non_content: Option<String>,
    /// The untitled text before the first heading.
    preamble: bool,
}

struct Ctx<'a> {
    opts: &'a SectionOptions,
    dropped: Vec<DroppedSection>,
    ref_text: Vec<String>,
}

impl Ctx<'_> {
    fn drop_unit(&mut self, u: &mut Unit, reason: impl Into<String>) {
        self.dropped.push(DroppedSection {
            heading: u.heading.clone(),
            reason: reason.into(),
            excerpt: excerpt(u.body.trim()),
            partial: false,
        });
        u.status = Status::Dropped;
    }

    fn drop_part(&mut self, heading: &str, reason: impl Into<String>, text: &str) {
        self.dropped.push(DroppedSection {
            heading: heading.to_string(),
            reason: reason.into(),
            excerpt: excerpt(text.trim()),
            partial: true,
        });
    }
}

fn build(raw: RawDoc, opts: &SectionOptions) -> ParsedSurvey {
    let mut ctx = Ctx {
        opts,
        dropped: Vec::new(),
        ref_text: Vec::new(),
    };
    let n_units = raw.units.len();
    let mut units = assign_levels(&raw);
    link_parents(&mut units);
    classify(&mut units, &mut ctx);
    let merged = merge_short(&mut units, &mut ctx);

    let references = match raw.structured_refs {
        Some(refs) => refs,
        None => parse_reference_list(&ctx.ref_text.join("\n")),
    };
    let index = CitationIndex::new(&references);
    let style = CiteStyle::detect(&units, &index);

    let mut sections = Vec::new();
    for (i, u) in units.iter().enumerate() {
        if u.status != Status::Content {
            continue;
        }
        let path = heading_path(&units, i);
        let parts = split_text(&u.body, opts.max_section_chars, opts.min_section_chars);
        let n = parts.len();
        for (k, part) in parts.into_iter().enumerate() {
            let citations = index.resolve(&part, style, &references);
            let (heading, part_no) = if n > 1 {
                (
                    format!("{} (part {}/{})", u.heading, k + 1, n),
                    Some((k + 1, n)),
                )
            } else {
                (u.heading.clone(), None)
            };
            sections.push(Section {
                index: sections.len(),
                heading,
                heading_path: path.clone(),
                level: u.level,
                text: part,
                citations,
                part: part_no,
            });
        }
    }
    ParsedSurvey {
        title: raw.title,
        sections,
        dropped: ctx.dropped,
        references,
        units: n_units,
        merged,
    }
}

fn assign_levels(raw: &RawDoc) -> Vec<Unit> {
    let cleaned: Vec<Option<String>> = raw
        .units
        .iter()
        .map(|u| u.heading.as_deref().map(collapse_ws))
        .collect();
    let numbering: Vec<Option<(Numbering, String)>> = cleaned
        .iter()
        .map(|h| h.as_deref().and_then(parse_numbering))
        .collect();
    let arabic = numbering
        .iter()
        .filter(|n| matches!(n, Some((Numbering::Arabic(_), _))))
        .count();
    let roman = numbering
        .iter()
        .filter(|n| matches!(n, Some((Numbering::Roman(_), _))))
        .count();
    let numbered_doc = arabic >= 3 || roman >= 2;
    // markdown levels are informative only when they vary
    let md_levels: Vec<usize> = raw.units.iter().filter_map(|u| u.md_level).collect();
    let md_min = md_levels.iter().copied().min().unwrap_or(1);
    let md_varies = raw.explicit_levels || md_levels.iter().any(|l| *l != md_min);
    // all-caps headings above mixed-case ones, when both occur
    let plain: Vec<&str> = cleaned
        .iter()
        .zip(&numbering)
        .filter_map(|(h, n)| match (h, n) {
            (Some(h), None) => Some(h.as_str()),
            _ => None,
        })
        .filter(|h| !ABSTRACT_NAME.is_match(&heading_name(h)))
        .collect();
    let caps = plain.iter().filter(|h| is_caps_heading(h)).count();
    let caps_rule = !numbered_doc && caps >= 2 && caps < plain.len();

    let mut out = Vec::with_capacity(raw.units.len());
    let mut last_num_level = 0usize;
    let mut last_plain_level = 1usize;
    let mut seen_caps = false;
    let mut flat = FlatLevels::default();
    let empty: Vec<bool> = raw
        .units
        .iter()
        .map(|u| clean_body(&u.body).is_empty())
        .collect();
    for (i, u) in raw.units.iter().enumerate() {
        let Some(h) = &cleaned[i] else {
            let mut p = unit("Introduction".into(), 1, &u.body);
            p.preamble = true;
            out.push(p);
            continue;
        };
        let name = heading_name(h);
        let (heading, level) = match &numbering[i] {
            Some((Numbering::Arabic(parts), title)) => {
                let label = parts
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(".");
                last_num_level = parts.len();
                (
                    format!("{label} {}", strip_heading_punct(title)),
                    parts.len(),
                )
            }
            Some((Numbering::Roman(r), title)) if numbered_doc => {
                last_num_level = 1;
                (format!("{r}. {}", strip_heading_punct(title)), 1)
            }
            Some((Numbering::Letter(l), title)) if roman >= 2 => {
                last_num_level = 2;
                (format!("{l}. {}", strip_heading_punct(title)), 2)
            }
            _ => {
                let caps_h = is_caps_heading(h);
                if caps_rule {
                    seen_caps |= caps_h;
                }
                let is_top = ABSTRACT_NAME.is_match(&name)
                    || non_content_kind(&name).is_some()
                    || TOP_LEVEL_NAME.is_match(&name);
                let level = if raw.explicit_levels && u.md_level.is_some() {
                    u.md_level.unwrap_or(1)
                } else if is_top {
                    1
                } else if numbered_doc {
                    if last_num_level > 0 {
                        last_num_level + 1
                    } else {
                        1
                    }
                } else if md_varies {
                    u.md_level.map_or(1, |l| l + 1 - md_min)
                } else if GENERIC_SUB_NAME.is_match(&name) || is_run_in(h) {
                    last_plain_level + 1
                } else if caps_rule {
                    let l = if caps_h || !seen_caps { 1 } else { 2 };
                    last_plain_level = l;
                    l
                } else {
                    let l = flat.level(h, empty[i] && i + 1 < raw.units.len());
                    last_plain_level = l;
                    l
                };
                if is_top && !numbered_doc {
                    last_plain_level = 1;
                    flat.top(empty[i] && i + 1 < raw.units.len());
                }
                (strip_heading_punct(h), level.max(1))
            }
        };
        out.push(unit(heading, level, &u.body));
    }
    out
}

/// Levels of plain headings in a survey with neither numbering nor varying Markdown levels.
/// A heading with no text right before another heading opens a group: the plain headings after
/// it are its subsections until the next such heading (a sibling group) or a document-level name.
/// A heading that starts like an earlier one ("PRISMA-DTA item 5 …") is that one's sibling.
#[derive(Debug, Default)]
struct FlatLevels {
    /// Level of the open group's heading.
    group: Option<usize>,
    /// The previous heading was an empty document-level name ("Discussion" right before
    /// "Existing Issues").
    after_empty_top: bool,
    prefixes: HashMap<String, usize>,
}

impl FlatLevels {
    fn top(&mut self, empty_before_heading: bool) {
        self.group = None;
        self.after_empty_top = empty_before_heading;
    }

    fn level(&mut self, heading: &str, empty_before_heading: bool) -> usize {
        let words: Vec<String> = heading
            .split_whitespace()
            .take(3)
            .map(str::to_lowercase)
            .collect();
        let prefix = (words.len() == 3).then(|| words[..2].join(" "));
        let after_empty_top = std::mem::take(&mut self.after_empty_top);
        if let Some(&l) = prefix.as_ref().and_then(|p| self.prefixes.get(p)) {
            if self.group.is_some_and(|g| g >= l) || (l == 1 && !empty_before_heading) {
                self.group = None;
            }
            return l;
        }
        let level = if empty_before_heading {
            let l = match self.group {
                _ if after_empty_top => 2,
                Some(g) => g,
                None => 1,
            };
            self.group = Some(l);
            l
        } else {
            self.group.map_or(1, |g| g + 1)
        };
        if let Some(p) = prefix {
            self.prefixes.entry(p).or_insert(level);
        }
        level
    }
}

fn unit(heading: String, level: usize, body: &str) -> Unit {
    Unit {
        heading,
        level,
        body: clean_body(body),
        back: false,
        status: Status::Content,
        parent: None,
        non_content: None,
        preamble: false,
    }
}

/// A run-in heading: "Morphology.", "Detection tasks: The granularity of taxonomies."
fn is_run_in(h: &str) -> bool {
    let t = h.trim();
    t.ends_with('.') && !t.ends_with("et al.") && !t.ends_with("...")
}

fn strip_heading_punct(h: &str) -> String {
    let t = collapse_ws(h);
    let t = t.trim_end_matches([':', '：', ' ', '\u{3000}', '|']);
    let t = if is_run_in(t) {
        t.trim_end_matches('.')
    } else {
        t
    };
    // "A B S T R A C T" → "ABSTRACT"
    let tokens: Vec<&str> = t.split_whitespace().collect();
    if tokens.len() >= 4
        && tokens
            .iter()
            .all(|x| x.chars().count() == 1 && x.chars().all(char::is_alphabetic))
    {
        return tokens.concat();
    }
    t.trim().to_string()
}

/// Section text: image links removed, trailing spaces trimmed, blank-line runs collapsed.
fn clean_body(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut blank = true;
    for line in body.lines() {
        if IMAGE_LINE.is_match(line) {
            continue;
        }
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
        blank = false;
    }
    out.trim().to_string()
}

fn link_parents(units: &mut [Unit]) {
    // stack of (level, index)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for (i, u) in units.iter_mut().enumerate() {
        let level = u.level;
        while stack.last().is_some_and(|(l, _)| *l >= level) {
            stack.pop();
        }
        u.parent = stack.last().map(|(_, j)| *j);
        stack.push((level, i));
    }
}

fn heading_path(units: &[Unit], i: usize) -> Vec<String> {
    let mut path = vec![units[i].heading.clone()];
    let mut cur = units[i].parent;
    while let Some(p) = cur {
        path.push(units[p].heading.clone());
        cur = units[p].parent;
    }
    path.reverse();
    path
}

fn classify(units: &mut [Unit], ctx: &mut Ctx<'_>) {
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
fn split_abstract(u: &mut Unit, ctx: &mut Ctx<'_>) {
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

// ---------------------------------------------------------------------------------------------
// reference-list shapes

fn is_ref_line(line: &str) -> bool {
    let l = line.trim();
    if l.chars().count() < 30 {
        return false;
    }
    if REF_NUM_BRACKET.is_match(l) {
        return true;
    }
    let has_year = YEAR.is_match(l);
    if !has_year {
        return false;
    }
    REF_NUM_AUTHOR.is_match(l)
        || REF_APA.is_match(l)
        || REF_VANCOUVER.is_match(l)
        || REF_FULLNAME.is_match(l)
}

/// Share of the non-empty lines of `text` that look like reference entries.
fn ref_share(text: &str) -> f64 {
    let mut total = 0usize;
    let mut refs = 0usize;
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        total += 1;
        if is_ref_line(l) {
            refs += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        refs as f64 / total as f64
    }
}

/// Byte ranges (line-aligned) of runs of at least `min_run` reference-like lines, allowing up to
/// two continuation lines between entries.
fn reference_runs(text: &str, min_run: usize) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    let mut count = 0usize;
    let mut gap = 0usize;
    let mut offset = 0usize;
    for line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        if line.trim().is_empty() {
            continue;
        }
        if is_ref_line(line) {
            if start.is_none() {
                start = Some(line_start);
                count = 0;
            }
            count += 1;
            gap = 0;
            end = offset;
        } else if start.is_some() {
            gap += 1;
            // a short lower-case line right after an entry is its continuation
            if gap > 2 {
                if let Some(s) = start.take()
                    && count >= min_run
                {
                    runs.push((s, end));
                }
                count = 0;
                gap = 0;
            }
        }
    }
    if let Some(s) = start
        && count >= min_run
    {
        runs.push((s, end));
    }
    runs
}

fn collect_runs(text: &str, min_run: usize, out: &mut Vec<String>) {
    for (s, e) in reference_runs(text, min_run) {
        out.push(text[s..e].to_string());
    }
}

/// Cuts reference-list runs out of a content unit (the whole unit when they are most of it).
fn strip_reference_runs(u: &mut Unit, ctx: &mut Ctx<'_>) {
    let runs = reference_runs(&u.body, 3);
    if runs.is_empty() {
        return;
    }
    let cut: usize = runs.iter().map(|(s, e)| e - s).sum();
    for (s, e) in &runs {
        ctx.ref_text.push(u.body[*s..*e].to_string());
    }
    let non_ws = u.body.chars().filter(|c| !c.is_whitespace()).count().max(1);
    let cut_non_ws: usize = runs
        .iter()
        .map(|(s, e)| {
            u.body[*s..*e]
                .chars()
                .filter(|c| !c.is_whitespace())
                .count()
        })
        .sum();
    if cut_non_ws * 10 >= non_ws * 6 {
        ctx.drop_unit(u, "reference-list text (no References heading)");
        return;
    }
    let mut kept = String::with_capacity(u.body.len() - cut);
    let mut removed = String::new();
    let mut pos = 0usize;
    for (s, e) in runs {
        kept.push_str(&u.body[pos..s]);
        removed.push_str(&u.body[s..e]);
        pos = e;
    }
    kept.push_str(&u.body[pos..]);
    let heading = u.heading.clone();
    ctx.drop_part(
        &heading,
        "reference-list text inside a section (no References heading)",
        &removed,
    );
    u.body = clean_body(&kept);
}

// ---------------------------------------------------------------------------------------------
// merging and splitting

fn merge_short(units: &mut [Unit], ctx: &mut Ctx<'_>) -> usize {
    let min = ctx.opts.min_section_chars;
    let max_level = units.iter().map(|u| u.level).max().unwrap_or(1);
    let mut merged = 0usize;
    for level in (1..=max_level).rev() {
        for i in 0..units.len() {
            if units[i].level != level || units[i].status != Status::Content {
                continue;
            }
            let len = units[i].body.chars().count();
            if len >= min {
                continue;
            }
            let has_kept_child = units
                .iter()
                .skip(i + 1)
                .any(|u| u.parent == Some(i) && u.status == Status::Content);
            if len == 0 {
                let reason = if has_kept_child {
                    "empty (heading only; its subsections are kept)"
                } else {
                    "empty"
                };
                ctx.drop_unit(&mut units[i], reason);
                continue;
            }
            let block = format!("{}\n\n{}", units[i].heading, units[i].body);
            // 1. the parent
            if let Some(p) = units[i].parent
                && units[p].status == Status::Content
            {
                let parent = &mut units[p];
                if !parent.body.is_empty() {
                    parent.body.push_str("\n\n");
                }
                parent.body.push_str(&block);
                units[i].status = Status::Merged;
                merged += 1;
                continue;
            }
            // 2. a top-level intro goes forward into its first kept subsection
            if let Some(c) = (i + 1..units.len())
                .find(|&c| units[c].parent == Some(i) && units[c].status == Status::Content)
            {
                let child = &mut units[c];
                child.body = format!("{block}\n\n{}", child.body);
                units[i].status = Status::Merged;
                merged += 1;
                continue;
            }
            // 3. the previous kept section, never across the References heading
            let back = units[i].back;
            if let Some(j) = (0..i)
                .rev()
                .take_while(|&j| units[j].back == back)
                .find(|&j| units[j].status == Status::Content)
            {
                let prev = &mut units[j];
                prev.body.push_str("\n\n");
                prev.body.push_str(&block);
                units[i].status = Status::Merged;
                merged += 1;
                continue;
            }
            ctx.drop_unit(
                &mut units[i],
                format!("too short ({len} chars) and no parent to merge into"),
            );
        }
    }
    merged
}

/// Splits `text` into parts of at most `max` characters at paragraph boundaries, balanced in
/// size; a single part when it fits.
fn split_text(text: &str, max: usize, min: usize) -> Vec<String> {
    let max = max.max(1);
    let total = text.chars().count();
    if total <= max {
        return vec![text.to_string()];
    }
    // pieces: paragraphs, oversized ones cut further
    let mut pieces: Vec<String> = Vec::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        cut_piece(para.trim(), max, &mut pieces);
    }
    let n = total.div_ceil(max);
    let target = total.div_ceil(n);
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for p in pieces {
        let plen = p.chars().count();
        let sep = if cur.is_empty() { 0 } else { 2 };
        // close the part before a paragraph that would overshoot the target by more than half
        if !cur.is_empty() && (cur_len + sep + plen > max || cur_len + sep + plen / 2 > target) {
            parts.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
            cur_len += 2;
        }
        cur.push_str(&p);
        cur_len += plen;
    }
    if !cur.is_empty() {
        // a tiny tail joins the previous part when that still fits
        if cur_len < min
            && let Some(last) = parts.last_mut()
            && last.chars().count() + 2 + cur_len <= max
        {
            last.push_str("\n\n");
            last.push_str(&cur);
        } else {
            parts.push(cur);
        }
    }
    parts
}

/// Cuts one paragraph into pieces of at most `max` chars: at line, then sentence, then char
/// boundaries.
fn cut_piece(para: &str, max: usize, out: &mut Vec<String>) {
    if para.chars().count() <= max {
        out.push(para.to_string());
        return;
    }
    let mut units: Vec<&str> = para.split_inclusive('\n').collect();
    if units.len() <= 1 {
        units = split_sentences(para);
    }
    let mut cur = String::new();
    for u in units {
        if u.chars().count() > max {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur).trim().to_string());
            }
            if u.len() == para.len() {
                hard_cut(u, max, out);
            } else {
                cut_piece(u.trim(), max, out);
            }
            continue;
        }
        if cur.chars().count() + u.chars().count() > max {
            out.push(std::mem::take(&mut cur).trim().to_string());
        }
        cur.push_str(u);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
}

fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for m in SENTENCE_END.find_iter(text) {
        out.push(&text[start..m.end()]);
        start = m.end();
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn hard_cut(text: &str, max: usize, out: &mut Vec<String>) {
    let mut cur = String::new();
    let mut n = 0usize;
    for c in text.chars() {
        if n == max {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
        cur.push(c);
        n += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
}

// ---------------------------------------------------------------------------------------------
// reference list parsing

fn parse_reference_list(text: &str) -> Vec<Reference> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    let numbered = lines.iter().filter(|l| ENTRY_MARKER.is_match(l)).count();
    let entries = if numbered * 5 >= lines.len() * 2 {
        numbered_entries(&lines)
    } else {
        author_year_entries(&lines)
    };
    let mut refs: Vec<Reference> = Vec::with_capacity(entries.len());
    let mut seen_keys: HashSet<String> = HashSet::new();
    for (i, (num, raw)) in entries.into_iter().enumerate() {
        let raw = collapse_ws(&raw);
        if raw.chars().count() < 15 {
            continue;
        }
        let mut r = parse_entry(&raw);
        match num {
            Some(n) => r.key = n.to_string(),
            None => {
                if r.year.is_none() {
                    // publisher notes and other non-entries in an author-year list
                    continue;
                }
                r.key = match (&r.first_author, &r.year) {
                    (Some(a), Some(y)) => format!("{a} {y}"),
                    _ => format!("ref-{}", i + 1),
                };
            }
        }
        if num.is_some() && !seen_keys.insert(r.key.clone()) {
            continue;
        }
        refs.push(r);
    }
    disambiguate_keys(&mut refs);
    refs
}

/// Same first author and year more than once ("Li 2021" ×3): keys get the letters an
/// author-year style prints ("Li 2021a", "Li 2021b", …), in list order.
fn disambiguate_keys(refs: &mut [Reference]) {
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in refs.iter().enumerate() {
        if r.key.contains(' ') && r.key.chars().last().is_some_and(|c| c.is_ascii_digit()) {
            groups.entry(r.key.clone()).or_default().push(i);
        }
    }
    for members in groups.values().filter(|m| m.len() > 1 && m.len() <= 26) {
        for (k, &i) in members.iter().enumerate() {
            if let Some(letter) = char::from_u32('a' as u32 + k as u32) {
                refs[i].key.push(letter);
            }
        }
    }
}

/// Entries of a numbered list: a line starting with an unseen number close to the last one
/// starts an entry; numbers glued into a line ("… 2019. [4] A. Adhikari …") split it.
fn numbered_entries(lines: &[&str]) -> Vec<(Option<u32>, String)> {
    let mut out: Vec<(Option<u32>, String)> = Vec::new();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut last = 0u32;
    for line in lines {
        let mut rest: &str = line;
        if let Some(c) = ENTRY_MARKER.captures(line) {
            let n = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .and_then(|m| m.as_str().parse::<u32>().ok());
            if let (Some(n), Some(m)) = (n, c.get(0))
                && !seen.contains(&n)
                && n >= 1
                && n <= last + 5
                && starts_entry(&line[m.end()..])
            {
                seen.insert(n);
                last = last.max(n);
                out.push((Some(n), String::new()));
                rest = &line[m.end()..];
            }
        }
        // inline markers for the next numbers
        loop {
            let mut split_at: Option<(usize, usize, u32)> = None;
            for c in INLINE_MARKER.captures_iter(rest) {
                let Some(m) = c.get(0) else { continue };
                let n = c
                    .get(1)
                    .or(c.get(2))
                    .and_then(|x| x.as_str().parse::<u32>().ok());
                if let Some(n) = n
                    && n > last
                    && n <= last + 3
                    && !seen.contains(&n)
                    && starts_entry(&rest[m.end()..])
                {
                    split_at = Some((m.start(), m.end(), n));
                    break;
                }
            }
            match split_at {
                Some((s, e, n)) => {
                    append_text(&mut out, &rest[..s]);
                    seen.insert(n);
                    last = n;
                    out.push((Some(n), String::new()));
                    rest = &rest[e..];
                }
                None => break,
            }
        }
        append_text(&mut out, rest);
    }
    out
}

fn starts_entry(s: &str) -> bool {
    s.trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c == '“' || c == '"')
}

fn append_text(out: &mut [(Option<u32>, String)], text: &str) {
    if let Some((_, cur)) = out.last_mut() {
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(text.trim());
    }
}

/// Entries of an author-year list: a capitalised line starts a new entry once the current one
/// has its year; other lines continue it.
fn author_year_entries(lines: &[&str]) -> Vec<(Option<u32>, String)> {
    let mut out: Vec<(Option<u32>, String)> = Vec::new();
    for line in lines {
        let starts_upper = line.chars().next().is_some_and(char::is_uppercase);
        let cur_has_year = out.last().is_some_and(|(_, t)| YEAR.is_match(t));
        if out.is_empty() || (starts_upper && cur_has_year) {
            out.push((None, line.to_string()));
        } else {
            append_text(&mut out, line);
        }
    }
    out
}

fn parse_entry(raw: &str) -> Reference {
    let body = match ENTRY_MARKER.find(raw) {
        Some(m)
            if m.start() == 0
                && raw[m.end()..]
                    .chars()
                    .next()
                    .is_some_and(|c| !c.is_ascii_digit()) =>
        {
            &raw[m.end()..]
        }
        _ => raw,
    };
    let body = body.trim();
    let url = find_url(body);
    let no_urls = DOI
        .replace_all(&URL.replace_all(body, " "), " ")
        .to_string();
    let year = find_year(&no_urls);
    Reference {
        key: String::new(),
        first_author: first_author(body),
        title: find_title(body, year.as_deref()),
        year,
        url,
        raw: body.to_string(),
    }
}

fn find_url(s: &str) -> Option<String> {
    let trim = |u: &str| {
        u.trim_end_matches(['.', ',', ';', ')', ']', '>'])
            .to_string()
    };
    if let Some(m) = URL.find(s) {
        let mut u = m.as_str().to_string();
        // converters break long urls after a slash: "https://doi.org/10.1007/ s12525-…"
        if u.ends_with('/')
            && let Some(next) = s[m.end()..].split_whitespace().next()
            && !next.starts_with("http")
        {
            u.push_str(next);
        }
        return Some(trim(&u));
    }
    let c = DOI.captures(s)?;
    let doi = c.get(1).or(c.get(2))?.as_str();
    Some(format!("https://doi.org/{}", trim(doi)))
}

fn find_year(s: &str) -> Option<String> {
    for r in [&*YEAR_PAREN, &*YEAR_AFTER_AUTHORS, &*YEAR_VANCOUVER] {
        if let Some(c) = r.captures(s)
            && let Some(m) = c.get(1)
        {
            return Some(m.as_str().to_string());
        }
    }
    YEAR.find_iter(s).last().map(|m| m.as_str().to_string())
}

fn is_initials(tok: &str) -> bool {
    let t = tok.trim_end_matches([',', '.']);
    if t.is_empty() {
        return false;
    }
    let letters: Vec<char> = t.chars().filter(|c| c.is_alphabetic()).collect();
    !letters.is_empty()
        && letters.len() <= 3
        && letters.iter().all(|c| c.is_uppercase())
        && t.chars().all(|c| c.is_alphabetic() || c == '.' || c == '-')
}

/// Surname of the first author of a reference entry.
fn first_author(body: &str) -> Option<String> {
    let body = body.trim_start_matches(|c: char| !c.is_alphabetic());
    // the first author's name ends at a comma, a conjunction, "et al", a parenthesis or quote
    let mut end = body.len();
    for pat in [",", ";", "(", "“", "\"", ":", " and ", " & ", " et al", "„"] {
        if let Some(p) = body.find(pat) {
            end = end.min(p);
        }
    }
    let mut head = &body[..end];
    // or at the period closing a name that is not an initial ("Robin Burke. Title")
    let mut pos = 0usize;
    for tok in head.split_inclusive(' ') {
        let t = tok.trim();
        if t.ends_with('.') && !is_initials(t) && t.trim_end_matches('.').chars().count() >= 2 {
            head = &head[..pos + tok.trim_end().len()];
            break;
        }
        pos += tok.len();
    }
    let head = head.trim().trim_end_matches('.');
    let followed_by_initials = body[end..]
        .strip_prefix(',')
        .map(str::trim_start)
        .and_then(|r| r.split_whitespace().next())
        .is_some_and(|t| is_initials(t) || t.chars().take(2).collect::<String>().ends_with('.'));
    // "A.Aho" → "Aho"
    let tokens: Vec<String> = head
        .split_whitespace()
        .map(|t| {
            let stripped = t.trim_start_matches(|c: char| c.is_uppercase() || c == '.');
            if t.contains('.')
                && !stripped.is_empty()
                && t.len() > stripped.len() + 1
                && !is_initials(t)
            {
                // initials glued to the surname
                let idx = t.rfind('.').map_or(0, |i| i + 1);
                t[idx..].to_string()
            } else {
                t.to_string()
            }
        })
        .collect();
    let has_initials = tokens.iter().any(|t| is_initials(t));
    let names: Vec<&String> = tokens.iter().filter(|t| !is_initials(t)).collect();
    let surname = if names.is_empty() {
        return None;
    } else if has_initials || followed_by_initials || names.len() == 1 {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        // "Himan Abdollahpouri": given names first; keep lower-case particles ("de Rijke")
        let mut k = names.len() - 1;
        while k > 0 && names[k - 1].chars().next().is_some_and(char::is_lowercase) {
            k -= 1;
        }
        names[k..]
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let surname = surname
        .trim_matches(|c: char| !c.is_alphabetic())
        .to_string();
    (surname.chars().filter(|c| c.is_alphabetic()).count() >= 2).then_some(surname)
}

fn find_title(body: &str, year: Option<&str>) -> Option<String> {
    let clean = |t: &str| {
        let t = collapse_ws(t.trim().trim_end_matches([',', '.', ' ']));
        (t.split_whitespace().count() >= 2 && t.chars().count() >= 8).then_some(t)
    };
    if let Some(c) = QUOTED_TITLE.captures(body)
        && let Some(m) = c.get(1)
    {
        return clean(m.as_str());
    }
    let first_sentence = |s: &str| -> Option<String> {
        let s = s.trim_start_matches(|c: char| c == '.' || c == ')' || c.is_whitespace());
        let end = SENTENCE_END.find(s).map_or(s.len(), |m| m.start() + 1);
        clean(&s[..end])
    };
    if let Some(y) = year {
        // "(2015). Title." / "(2021) Title." / "Kembhavi A. 2018. Title."
        for pat in [format!("({y})"), format!("{y}.")] {
            // only when the year closes the author list
            if let Some(p) = body.find(&pat)
                && is_author_list(&body[..p])
            {
                return first_sentence(&body[p + pat.len()..]);
            }
        }
    }
    if let Some(m) = VANCOUVER_AUTHORS.find(body) {
        return first_sentence(&body[m.end()..]);
    }
    // "Robin Burke. Title. In …": the author list ends at the first period after a full name
    let mut pos = 0usize;
    for tok in body.split_inclusive(' ') {
        let t = tok.trim();
        pos += tok.len();
        if t.ends_with('.') && !is_initials(t) && t.trim_end_matches('.').chars().count() >= 2 {
            return first_sentence(&body[pos..]);
        }
    }
    None
}

/// Text made of names only: no lower-case word of four letters or more besides "and".
fn is_author_list(s: &str) -> bool {
    s.chars().count() < 400
        && s.split_whitespace().all(|w| {
            let w = w.trim_matches(|c: char| !c.is_alphabetic());
            w.chars().next().is_none_or(|c| !c.is_lowercase())
                || w.chars().count() < 4
                || w == "and"
        })
}

fn structured_references(items: &[serde_json::Value]) -> Result<Vec<Reference>, String> {
    let mut refs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let position = (i + 1).to_string();
        let r = match item {
            serde_json::Value::String(s) => {
                let raw = collapse_ws(s);
                let marker = ENTRY_MARKER
                    .captures(&raw)
                    .and_then(|c| c.get(1).or(c.get(2)).or(c.get(3)))
                    .map(|m| m.as_str().to_string());
                let mut r = parse_entry(&raw);
                r.key = marker.unwrap_or(position);
                r
            }
            serde_json::Value::Object(o) => {
                let s = |k: &str| match o.get(k) {
                    Some(serde_json::Value::String(v)) => {
                        Some(collapse_ws(v)).filter(|v| !v.is_empty())
                    }
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                let author = s("first_author").or_else(|| match o.get("authors") {
                    Some(serde_json::Value::Array(a)) => {
                        a.first().and_then(|v| v.as_str()).map(str::to_string)
                    }
                    Some(serde_json::Value::String(a)) => Some(a.clone()),
                    _ => None,
                });
                let first_author = author.map(|a| first_author(&a).unwrap_or(a));
                let key = s("key").or_else(|| s("id")).unwrap_or(position);
                let title = s("title");
                let year = s("year");
                let url = s("url").or_else(|| s("doi").map(|d| format!("https://doi.org/{d}")));
                let raw = s("raw").unwrap_or_else(|| {
                    [first_author.clone(), year.clone(), title.clone()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(". ")
                });
                Reference {
                    key,
                    first_author,
                    title,
                    year,
                    url,
                    raw,
                }
            }
            _ => return Err(format!("reference {i} is neither a string nor an object")),
        };
        refs.push(r);
    }
    Ok(refs)
}

// ---------------------------------------------------------------------------------------------
// inline citations

#[derive(Debug, Clone, Copy, PartialEq)]
struct CiteStyle {
    /// Numbers in parentheses "(12–14)" are citations.
    paren: bool,
    /// Numbers glued after a word "reviews.1-3", "apparatus12" are citations.
    superscript: bool,
}

impl CiteStyle {
    fn detect(units: &[Unit], index: &CitationIndex) -> Self {
        if index.numeric.is_empty() {
            return Self {
                paren: false,
                superscript: false,
            };
        }
        let mut brackets = 0usize;
        let mut parens = 0usize;
        for u in units.iter().filter(|u| u.status == Status::Content) {
            brackets += CITE_NUM_BRACKET.find_iter(&u.body).count();
            parens += CITE_NUM_PAREN.find_iter(&u.body).count();
        }
        Self {
            paren: parens > brackets && parens >= 5,
            superscript: brackets < 5 && parens < 5,
        }
    }
}

struct CitationIndex {
    numeric: HashMap<String, usize>,
    /// (compact surname, base year) → reference indexes in list order; indexed by the whole
    /// surname and by its last word.
    by_author: HashMap<(String, String), Vec<usize>>,
}

fn compact(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

fn split_year(y: &str) -> (String, Option<char>) {
    let base: String = y.chars().take(4).collect();
    (base, y.chars().nth(4))
}

impl CitationIndex {
    fn new(refs: &[Reference]) -> Self {
        let mut numeric = HashMap::new();
        let mut by_author: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, r) in refs.iter().enumerate() {
            if r.key.chars().all(|c| c.is_ascii_digit()) && !r.key.is_empty() {
                numeric.entry(r.key.clone()).or_insert(i);
            }
            if let (Some(a), Some(y)) = (&r.first_author, &r.year) {
                let (base, _) = split_year(y);
                let full = compact(a);
                let last = a.split_whitespace().last().map(compact).unwrap_or_default();
                by_author
                    .entry((full.clone(), base.clone()))
                    .or_default()
                    .push(i);
                if last != full && !last.is_empty() {
                    by_author.entry((last, base)).or_default().push(i);
                }
            }
        }
        Self { numeric, by_author }
    }

    fn lookup_author(&self, name: &str, year: &str, refs: &[Reference]) -> Option<usize> {
        let (base, suffix) = split_year(year);
        let full = compact(name);
        let last = name
            .split_whitespace()
            .last()
            .map(compact)
            .unwrap_or_default();
        let cands = self
            .by_author
            .get(&(full, base.clone()))
            .or_else(|| self.by_author.get(&(last, base)))?;
        if let Some(&i) = cands
            .iter()
            .find(|&&i| refs[i].year.as_deref() == Some(year))
        {
            return Some(i);
        }
        match suffix {
            Some(s)
                if cands
                    .iter()
                    .all(|&i| refs[i].year.as_deref().is_some_and(|y| y.len() == 4)) =>
            {
                let k = (s as usize).saturating_sub('a' as usize);
                cands.get(k).copied()
            }
            Some(_) => None,
            None => cands.first().copied(),
        }
    }

    /// References cited in `text`, once each, in order of first appearance.
    fn resolve(&self, text: &str, style: CiteStyle, refs: &[Reference]) -> Vec<Reference> {
        let mut hits: Vec<(usize, usize)> = Vec::new(); // (position, ref index)
        if !self.numeric.is_empty() {
            let mut numeric = |pos: usize, list: &str| {
                for n in expand_numbers(list) {
                    if let Some(&i) = self.numeric.get(&n.to_string()) {
                        hits.push((pos, i));
                    }
                }
            };
            for c in CITE_NUM_BRACKET.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    numeric(m.start(), m.as_str());
                }
            }
            // "[23]-[25]"
            for c in CITE_NUM_BRACKET_RANGE.captures_iter(text) {
                if let (Some(a), Some(b)) = (c.get(1), c.get(2)) {
                    numeric(a.start(), &format!("{}-{}", a.as_str(), b.as_str()));
                }
            }
            if style.paren {
                for c in CITE_NUM_PAREN.captures_iter(text) {
                    if let Some(m) = c.get(1) {
                        numeric(m.start(), m.as_str());
                    }
                }
            }
            if style.superscript {
                for c in CITE_NUM_SUPER.captures_iter(text) {
                    if let Some(m) = c.get(1) {
                        numeric(m.start(), m.as_str());
                    }
                }
            }
        }
        if !self.by_author.is_empty() {
            for c in CITE_GROUP.captures_iter(text) {
                let Some(g) = c.get(1) else { continue };
                let mut offset = g.start();
                for piece in g.as_str().split(';') {
                    let piece_start = offset;
                    offset += piece.len() + 1;
                    let Some(first_year) = YEAR.find(piece) else {
                        continue;
                    };
                    let author = citation_author(&piece[..first_year.start()]);
                    if author.is_empty() {
                        continue;
                    }
                    for y in YEAR.find_iter(piece) {
                        if let Some(i) = self.lookup_author(&author, y.as_str(), refs) {
                            hits.push((piece_start + y.start(), i));
                        }
                    }
                }
            }
            for c in CITE_NARRATIVE.captures_iter(text) {
                if let (Some(a), Some(y)) = (c.get(1), c.get(3))
                    && let Some(i) = self.lookup_author(a.as_str(), y.as_str(), refs)
                {
                    hits.push((a.start(), i));
                }
            }
        }
        hits.sort_by_key(|(pos, _)| *pos);
        let mut seen = HashSet::new();
        hits.into_iter()
            .filter(|(_, i)| seen.insert(*i))
            .map(|(_, i)| refs[i].clone())
            .collect()
    }
}

/// The first author named in one citation of a group: "e.g., Smith et al., " → "Smith".
fn citation_author(s: &str) -> String {
    let start = s.find(|c: char| c.is_uppercase()).unwrap_or(s.len());
    let s = &s[start..];
    let mut end = s.len();
    for pat in [" et al", " and ", " & ", ",", "  "] {
        if let Some(p) = s.find(pat) {
            end = end.min(p);
        }
    }
    collapse_ws(s[..end].trim().trim_end_matches(['.', ',']))
}

/// "3–5, 9" → [3, 4, 5, 9]; ranges longer than 50 are ignored as not citations.
fn expand_numbers(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.split([',', ';']) {
        let bounds: Vec<u32> = part
            .split(['-', '–', '—'])
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        match bounds.as_slice() {
            [n] => out.push(*n),
            [a, b] if a <= b && b - a <= 50 => out.extend(*a..=*b),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(min: usize, max: usize) -> SectionOptions {
        SectionOptions {
            min_section_chars: min,
            max_section_chars: max,
        }
    }

    fn para(words: usize, seed: &str) -> String {
        (0..words)
            .map(|i| format!("{seed}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            + "."
    }

    fn accounted(p: &ParsedSurvey) {
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
        assert!(
            p.sections[0].text.contains("more text") && p.sections[0].text.contains("and more")
        );
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

        let err = |v: serde_json::Value| {
            parse_structured_survey(&v, &SectionOptions::default()).unwrap_err()
        };
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
}
