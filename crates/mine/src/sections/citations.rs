//! Inline citation resolution: numeric and author-year citations in section text matched to
//! reference-list entries.

use super::*;

// inline citations
pub(super) static CITE_NUM_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| re(r"\[(\d{1,4}(?:\s*[-–—,;]\s*\d{1,4})*)\]"));
pub(super) static CITE_NUM_BRACKET_RANGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\[(\d{1,4})\]\s*[-–—]\s*\[(\d{1,4})\]"));
pub(super) static CITE_NUM_PAREN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\((\d{1,3}(?:\s*[-–—,]\s*\d{1,3})*)\)(?:[.,;:)]|\s*$)"));
/// "Smith et al. (12) examined", "Egede (4) found": a parenthesised number right after a name,
/// whatever follows it.
pub(super) static CITE_NUM_PAREN_NARRATIVE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\bet\s+al\.?|\p{Lu}[\p{L}'’\-]+)\s+\((\d{1,3}(?:\s*[-–—,]\s*\d{1,3})*)\)")
});
pub(super) static CITE_NUM_SUPER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:[a-z]{2}[.,]?|[a-z][)\]][.,]?)(\d{1,3}(?:[-–,]\d{1,3})*)(?:[.,;:]?(?:\s|$))")
});
/// Superscript citations in markup: "<sup>2,3</sup>", "$^{4-6}$" (a lone superscript in math
/// mode; "x^{2}" inside a formula is not one).
pub(super) static CITE_NUM_MARKUP: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"<sup>\s*(\d{1,4}(?:\s*[-–—,]\s*\d{1,4})*)\s*</sup>|\$\s*\^\{?\s*(\d{1,4}(?:\s*[-–—,]\s*\d{1,4})*)\s*\}?\s*\$",
    )
});
/// A label whose number is not a citation: "Eq. (6)", "Fig.3", "Table [2]", "pp. 12".
static NUMBER_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:eqs?|eqns?|equations?|figs?|figures?|tables?|tabs?|sections?|secs?|sects?|chapters?|steps?|appendix|panels?|algorithms?|lines?|items?|nos?|pp?|pages?|vols?|volumes?)\.?\s*[(\[]?$",
    )
});
/// The labels among [`NUMBER_LABEL`] that a bracketed number may follow as a label: singular
/// nouns and abbreviations only ("Table [2]"); after a plural noun ("earlier steps [4]", "gene
/// panels [7]") a bracketed number is a citation.
static NUMBER_LABEL_BRACKET: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:eqs?|eqns?|equation|figs?|figure|table|tab|section|secs?|sects?|chapter|step|appendix|panel|algorithm|line|item|nos?|pp?|page|vols?|volume)\.?\s*\[?$",
    )
});
/// Spaces that are not ASCII spaces ("et\u{a0}al."), read as one.
const ODD_SPACES: [char; 5] = ['\u{a0}', '\u{2007}', '\u{2009}', '\u{202f}', '\u{200a}'];

/// Whether the number starting at `pos` follows a label ("Eq. (", "Fig.", "Table ").
fn follows_label(text: &str, pos: usize) -> bool {
    let mut start = pos.saturating_sub(16);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let before = &text[start..pos];
    if before.ends_with('[') {
        NUMBER_LABEL_BRACKET.is_match(before)
    } else {
        NUMBER_LABEL.is_match(before)
    }
}

pub(super) static CITE_GROUP: LazyLock<Regex> =
    LazyLock::new(|| re(r"[(\[]([^()\[\]]{2,400}?(?:19|20)\d{2}[a-z]?[^()\[\]]{0,40}?)[)\]]"));
pub(super) static CITE_NARRATIVE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(\p{Lu}[\p{L}'’\-]+)(\s+et\s+al\.?|\s+(?:and|&)\s+\p{Lu}[\p{L}'’\-]+)?,?\s*[(\[]((?:19|20)\d{2}[a-z]?)[)\]]",
    )
});

// ---------------------------------------------------------------------------------------------
// inline citations

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CiteStyle {
    /// Numbers in parentheses "(12–14)" are citations.
    pub(super) paren: bool,
    /// Numbers glued after a word "reviews.1-3", "apparatus12" are citations.
    pub(super) superscript: bool,
}

impl CiteStyle {
    pub(super) fn detect(units: &[Unit], index: &CitationIndex) -> Self {
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

pub(super) struct CitationIndex {
    numeric: HashMap<String, usize>,
    /// (compact surname, base year) → reference indexes in list order; indexed by the whole
    /// surname and by its last word.
    by_author: HashMap<(String, String), Vec<usize>>,
}

pub(super) fn compact(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

pub(super) fn split_year(y: &str) -> (String, Option<char>) {
    let base: String = y.chars().take(4).collect();
    (base, y.chars().nth(4))
}

impl CitationIndex {
    pub(super) fn new(refs: &[Reference]) -> Self {
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

    pub(super) fn lookup_author(
        &self,
        name: &str,
        year: &str,
        refs: &[Reference],
    ) -> Option<usize> {
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
    pub(super) fn resolve(
        &self,
        text: &str,
        style: CiteStyle,
        refs: &[Reference],
    ) -> Vec<Reference> {
        let mut hits: Vec<(usize, usize)> = self
            .markers(text, style, refs)
            .into_iter()
            .filter_map(|m| Some((m.position, m.reference?)))
            .collect();
        hits.sort_by_key(|(pos, _)| *pos);
        let mut seen = HashSet::new();
        hits.into_iter()
            .filter(|(_, i)| seen.insert(*i))
            .map(|(_, i)| refs[i].clone())
            .collect()
    }

    /// How many citation markers of the document's own style `text` holds and how many of them
    /// name an entry of the reference list. A numbered list counts every number of a numeric
    /// citation ("[3-5]" is three markers); an author-year list counts every author-year pair
    /// of a parenthetical group and every narrative "Surname et al. (2019)".
    pub(super) fn tally(&self, text: &str, style: CiteStyle, refs: &[Reference]) -> MarkerTally {
        let numbered = !self.numeric.is_empty();
        let mut tally = MarkerTally::default();
        for m in self.markers(text, style, refs) {
            if m.numeric != numbered {
                continue;
            }
            tally.found += 1;
            if m.reference.is_some() {
                tally.resolved += 1;
            }
        }
        tally
    }

    /// Every citation marker in `text` with the reference entry it names, if any. A marker
    /// found by two patterns (a narrative citation inside a parenthetical group) is listed
    /// once.
    fn markers(&self, text: &str, style: CiteStyle, refs: &[Reference]) -> Vec<Marker> {
        let text = text.replace(ODD_SPACES, " ");
        let text = repair_ocr_years(&text);
        let text = text.as_ref();
        let mut out: Vec<Marker> = Vec::new();
        if !self.numeric.is_empty() {
            let mut numeric = |pos: usize, list: &str| {
                if follows_label(text, pos) {
                    return;
                }
                for n in expand_numbers(list) {
                    out.push(Marker {
                        position: pos,
                        numeric: true,
                        reference: self.numeric.get(&n.to_string()).copied(),
                    });
                }
            };
            for c in CITE_NUM_BRACKET.captures_iter(text) {
                if let Some(m) = c.get(1) {
                    numeric(m.start(), m.as_str());
                }
            }
            // "[23]-[25]": the numbers between the two bracketed ends (the ends are found above)
            for c in CITE_NUM_BRACKET_RANGE.captures_iter(text) {
                let bounds = (c.get(1), c.get(2));
                if let (Some(a), Some(b)) = bounds
                    && let (Ok(first), Ok(last)) =
                        (a.as_str().parse::<u32>(), b.as_str().parse::<u32>())
                    && last > first + 1
                {
                    numeric(a.start(), &format!("{}-{}", first + 1, last - 1));
                }
            }
            for c in CITE_NUM_MARKUP.captures_iter(text) {
                if let Some(m) = c.get(1).or(c.get(2)) {
                    numeric(m.start(), m.as_str());
                }
            }
            if style.paren {
                let mut seen = HashSet::new();
                for c in CITE_NUM_PAREN
                    .captures_iter(text)
                    .chain(CITE_NUM_PAREN_NARRATIVE.captures_iter(text))
                {
                    // a number both patterns find is one marker
                    if let Some(m) = c.get(1)
                        && seen.insert(m.start())
                    {
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
                        out.push(Marker {
                            position: piece_start + y.start(),
                            numeric: false,
                            reference: self.lookup_author(&author, y.as_str(), refs),
                        });
                    }
                }
            }
            // "Smith et al. (2019)": its group "(2019)" names no author, so it is counted here only
            for c in CITE_NARRATIVE.captures_iter(text) {
                if let (Some(a), Some(y)) = (c.get(1), c.get(3)) {
                    out.push(Marker {
                        position: a.start(),
                        numeric: false,
                        reference: self.lookup_author(a.as_str(), y.as_str(), refs),
                    });
                }
            }
        }
        out
    }
}

/// One citation marker: where it is, whether it is a number, and the entry it names.
struct Marker {
    position: usize,
    numeric: bool,
    reference: Option<usize>,
}

/// Citation markers found and resolved (see [`ParsedSurvey::citation_markers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MarkerTally {
    /// Markers of the document's citation style found in the kept sections.
    pub found: usize,
    /// Those that name an entry of the reference list.
    pub resolved: usize,
}

impl MarkerTally {
    pub fn add(&mut self, other: MarkerTally) {
        self.found += other.found;
        self.resolved += other.resolved;
    }

    /// The share of markers that resolve; `None` when there are none.
    pub fn share(&self) -> Option<f64> {
        (self.found > 0).then(|| self.resolved as f64 / self.found as f64)
    }
}

/// The first author named in one citation of a group: "e.g., Smith et al., " → "Smith".
pub(super) fn citation_author(s: &str) -> String {
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
pub(super) fn expand_numbers(list: &str) -> Vec<u32> {
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
