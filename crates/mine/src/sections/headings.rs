//! Heading normalisation and levels: numbering (Arabic, Roman, letters, conversion noise),
//! the name rules look at, and the hierarchy rebuilt from flat PDF headings.

use super::*;

pub(super) static ARABIC_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,2}(?:[.．]\d{1,2}){0,5})([.．])?(.*)$"));
pub(super) static ROMAN_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^((?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3}))(?:[.．]\s*|\s+)(\S.*)$"));
pub(super) static LETTER_NUM: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-H])[.．]\s+(\p{Lu}.*)$"));
pub(super) static TITLE_NOISE_PREFIX: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:[|丨」｜]\s*|[Il]\s+(?:\p{Lu}))"));
pub(super) static ARTICLE_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:RESEARCH ARTICLE|REVIEW ARTICLE|ORIGINAL ARTICLE|REVIEW|Review|Research Article)\s+(\p{Lu})",
    )
});
pub(super) fn clean_title(t: &str) -> String {
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
pub(super) fn heading_name(cleaned: &str) -> String {
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
    let name = text
        .trim()
        .trim_end_matches([':', '：', '.', '|', ' ', '\u{3000}'])
        .trim()
        .to_lowercase()
        .replace('’', "'");
    canonical_name(&name).map_or(name, str::to_string)
}

/// Section names the rules know, matched with every non-letter removed, so that headings whose
/// spacing the converter broke ("L I T E R A T U R E  C I T E D", "LITERATURECITED",
/// "R EFERENCES") read as the name they spell.
const KNOWN_NAMES: &[&str] = &[
    "abstract",
    "introduction",
    "background",
    "conclusion",
    "conclusions",
    "discussion",
    "keywords",
    "references",
    "reference",
    "bibliography",
    "literature cited",
    "works cited",
    "cited literature",
    "references and notes",
    "reference list",
    "notes and references",
    "acknowledgements",
    "acknowledgments",
    "acknowledgement",
    "acknowledgment",
    "author contributions",
    "authors' contributions",
    "funding",
    "conflicts of interest",
    "conflict of interest",
    "competing interests",
    "declaration of competing interest",
    "data availability",
    "data availability statement",
    "abbreviations",
    "appendix",
];

/// The known name `name` spells once spacing is ignored.
fn canonical_name(name: &str) -> Option<&'static str> {
    let letters = |s: &str| -> String { s.chars().filter(|c| c.is_alphabetic()).collect() };
    let squashed = letters(name);
    if squashed.is_empty() || squashed.len() > 40 {
        return None;
    }
    KNOWN_NAMES.iter().copied().find(|k| letters(k) == squashed)
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Numbering {
    Arabic(Vec<u32>),
    Roman(String),
    Letter(char),
}

/// Splits a heading into its numbering and its title text, tolerating conversion noise.
pub(super) fn parse_numbering(h: &str) -> Option<(Numbering, String)> {
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
        let dotted = h[roman.len()..].starts_with(['.', '．']);
        // without a period only a numeral of two letters or more before an all-caps title
        // ("XVII REFERENCES"); "I Think" or "V2X" are not numbered
        let undotted_ok = roman.len() >= 2 && is_caps_heading(&title);
        if !roman.is_empty() && (dotted || undotted_ok) && title.chars().any(char::is_alphabetic) {
            return Some((Numbering::Roman(roman), title));
        }
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

pub(super) fn is_caps_heading(text: &str) -> bool {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    letters.len() >= 3 && letters.iter().all(|c| c.is_uppercase())
}

pub(super) fn assign_levels(raw: &RawDoc) -> Vec<Unit> {
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
pub(super) struct FlatLevels {
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

pub(super) fn unit(heading: String, level: usize, body: &str) -> Unit {
    Unit {
        heading,
        level,
        body: clean_body(body),
        back: false,
        status: Status::Content,
        parent: None,
        non_content: None,
        preamble: false,
        kind: SectionKind::Content,
    }
}

/// A run-in heading: "Morphology.", "Detection tasks: The granularity of taxonomies."
pub(super) fn is_run_in(h: &str) -> bool {
    let t = h.trim();
    t.ends_with('.') && !t.ends_with("et al.") && !t.ends_with("...")
}

pub(super) fn strip_heading_punct(h: &str) -> String {
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

pub(super) fn link_parents(units: &mut [Unit]) {
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

pub(super) fn heading_path(units: &[Unit], i: usize) -> Vec<String> {
    let mut path = vec![units[i].heading.clone()];
    let mut cur = units[i].parent;
    while let Some(p) = cur {
        path.push(units[p].heading.clone());
        cur = units[p].parent;
    }
    path.reverse();
    path
}
