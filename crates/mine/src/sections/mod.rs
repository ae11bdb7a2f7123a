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

mod citations;
mod headings;
mod kinds;
mod markdown;
mod quality;
mod reference_runs;
mod references;
mod split;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_props;
#[cfg(test)]
mod tests_publishers;
#[cfg(test)]
mod tests_references;

pub use citations::MarkerTally;
use citations::*;
use headings::*;
use kinds::*;
use markdown::*;
use quality::*;
use reference_runs::*;
use references::*;
use split::*;

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
    /// What the section is about: the surveyed work, or the review's own method.
    pub kind: SectionKind,
}

/// What a kept section describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SectionKind {
    /// The surveyed work: what queries are mined from.
    #[default]
    Content,
    /// How the review itself was done (search strategy, inclusion criteria, study selection);
    /// such sections make poor research queries.
    ReviewMethod,
}

impl SectionKind {
    /// The `section_kind` output value.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Content => "content",
            SectionKind::ReviewMethod => "review_method",
        }
    }
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
    /// What became of each heading/text unit, in input order (for evaluating the rules
    /// against hand labels).
    pub outcomes: Vec<UnitOutcome>,
    /// Citation markers of the document's style (numbered or author-year) in the kept sections
    /// and how many resolve to a reference entry: a measure of citation resolution that needs
    /// no labels.
    pub citation_markers: MarkerTally,
}

/// What became of one heading/text unit of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitOutcome {
    /// The heading as written in the input; `None` for the text before the first heading.
    pub raw_heading: Option<String>,
    /// The heading as cleaned by the parser ("Introduction" for an unheaded introduction).
    pub heading: String,
    /// Its text is in a kept section (its own or one it was merged into).
    pub kept: bool,
    /// Characters of its own text (0 for a heading directly followed by another).
    pub text_chars: usize,
    pub kind: SectionKind,
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

fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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
    kind: SectionKind,
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
    let outcomes = raw
        .units
        .iter()
        .zip(&units)
        .map(|(r, u)| UnitOutcome {
            raw_heading: r.heading.clone(),
            heading: u.heading.clone(),
            kept: u.status != Status::Dropped,
            text_chars: clean_body(&r.body).chars().count(),
            kind: u.kind,
        })
        .collect();

    let references = match raw.structured_refs {
        Some(refs) => refs,
        None => parse_reference_list(&ctx.ref_text.join("\n")),
    };
    let index = CitationIndex::new(&references);
    let style = CiteStyle::detect(&units, &index);

    let mut sections = Vec::new();
    let mut citation_markers = MarkerTally::default();
    for (i, u) in units.iter().enumerate() {
        if u.status != Status::Content {
            continue;
        }
        let path = heading_path(&units, i);
        let parts = split_text(&u.body, opts.max_section_chars, opts.min_section_chars);
        let n = parts.len();
        for (k, part) in parts.into_iter().enumerate() {
            let citations = index.resolve(&part, style, &references);
            citation_markers.add(index.tally(&part, style, &references));
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
                kind: u.kind,
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
        outcomes,
        citation_markers,
    }
}
