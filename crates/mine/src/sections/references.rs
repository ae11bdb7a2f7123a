//! Reference-list parsing: entries of numbered and author-year lists, and their first author,
//! year, title and URL/DOI.

use std::borrow::Cow;

use super::*;

pub(super) static YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b((?:19|20)\d{2})([a-z])?\b"));
pub(super) static YEAR_PAREN: LazyLock<Regex> = LazyLock::new(|| re(r"\(((?:19|20)\d{2}[a-z]?)\)"));
pub(super) static YEAR_AFTER_AUTHORS: LazyLock<Regex> =
    LazyLock::new(|| re(r"[.,]\s?((?:19|20)\d{2}[a-z]?)\.(?:\s|$)"));
pub(super) static YEAR_VANCOUVER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b((?:19|20)\d{2}[a-z]?)\s?;"));
/// MDPI/ACS: "Conserv. Biol. 2008, 22, 297–307" (year, then volume).
static YEAR_BEFORE_VOLUME: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b((?:19|20)\d{2}[a-z]?),\s\d{1,4}(?:,|\s|\(|$)"));
pub(super) static URL: LazyLock<Regex> = LazyLock::new(|| re(r"https?://\S+"));
pub(super) static DOI: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\bdoi:?\s*(10\.\d{4,9}/\S+)|\b(10\.\d{4,9}/\S+)"));
pub(super) static ENTRY_MARKER: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(?:\[(\d{1,4})\]\s*|(\d{1,4})\.\s*|(\d{1,4})\s+|\((\d{1,4})\)\s*)"));
/// MDPI/ACS author lists: "Smith, J.; Jones, K.L.; van Dijk, A.-B. " (then the title).
pub(super) static ACS_AUTHORS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:\p{Lu}[\p{L}'’\-]+(?:[\s\-][\p{L}'’\-]+){0,2},\s?(?:\p{Lu}\.\s?-?){1,3}(?:;\s*|,?\s+(?:and|&)\s+)?)+(?:et al\.\s*)?",
    )
});
/// arXiv identifiers ("arXiv:1905.01234v2", "abs/2010.11929"): their digits are not years.
static ARXIV_ID: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)(?:arxiv:?\s*|abs/)\d{4}\.\d{4,5}(?:v\d+)?"));
/// A year with OCR letters for digits ("2O18", "2OI9").
static OCR_YEAR: LazyLock<Regex> = LazyLock::new(|| re(r"\b[12][0-9OoIl]{3}\b"));
pub(super) static INLINE_MARKER: LazyLock<Regex> =
    LazyLock::new(|| re(r"\s(?:\[(\d{1,4})\]|(\d{1,4})\.)"));
pub(super) static QUOTED_TITLE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"[“„"«]([^”"“»]{8,400}?)[,.]?[”"»]"#));
pub(super) static VANCOUVER_AUTHORS: LazyLock<Regex> = LazyLock::new(|| {
    // initials: "AB" or hyphenated "Q-H" (not "Li" or "Ge": given-name-first authors with short
    // surnames, "Yunqi Li, Yingqiang Ge, and …"); "Li G , Name"
    re(
        r"^(?:[\p{L}'’\-]+(?:\s[\p{L}'’\-]+){0,2}\s\p{Lu}[\p{Lu}\-]{0,3}(?:,?\set\sal\.\s?|\s?,\s|\.\s))+",
    )
});
/// Initials-first author lists closed by a comma, as mathematics and some engineering styles
/// print them: "A. Bell, K. Stone and M. Reed, Title, Journal …" (the title follows the comma).
static INITIALS_FIRST_AUTHORS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:(?:\p{Lu}\.\s?-?)+\s?\p{Lu}[\p{L}'’\-]+(?:\s*[,，]\s*(?:and\s+)?|\s+and\s+))+")
});
/// A period glued to the next sentence's capital after a word: "thinking.Paper presented".
static GLUED_SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| re(r"\p{Ll}{3}\.\p{Lu}"));
pub(super) static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| re(r"[.?!](?:\s|$)"));
/// The end of a title: a period ("Who cares about tweets? Investigating …" goes on past "?"),
/// unless it closes an abbreviation (see [`title_end`]).
static TITLE_END: LazyLock<Regex> = LazyLock::new(|| re(r"\.(?:\s|$)"));
/// Abbreviations a title goes on past: lower-case words of one or two letters ("Smith v.
/// Jones", "the ms. tutor") and dotted capitals ("U.S. adults").
static TITLE_ABBREVIATION: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:^|[\s(])(?:\p{Ll}{1,2}|(?:\p{Lu}\.)+\p{Lu})$"));

/// Where the title starting `s` ends: just after the first period that does not close an
/// abbreviation; the whole text when there is none.
fn title_end(s: &str) -> usize {
    TITLE_END
        .find_iter(s)
        .find(|m| !TITLE_ABBREVIATION.is_match(&s[..m.start()]))
        .map_or(s.len(), |m| m.start() + 1)
}
/// LaTeX math a converter left in an author list: "Liu $\mathrm { C } ,$".
static LATEX_MATH: LazyLock<Regex> =
    LazyLock::new(|| re(r"\$\s*(?:\\mathrm\s*\{\s*([^}$]*?)\s*\}\s*)?([^$]{0,20}?)\s*\$"));

// ---------------------------------------------------------------------------------------------
// reference list parsing

pub(super) fn parse_reference_list(text: &str) -> Vec<Reference> {
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
pub(super) fn disambiguate_keys(refs: &mut [Reference]) {
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
pub(super) fn numbered_entries(lines: &[&str]) -> Vec<(Option<u32>, String)> {
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
                .or(c.get(4))
                .and_then(|m| m.as_str().parse::<u32>().ok());
            if let (Some(n), Some(m)) = (n, c.get(0))
                && !seen.contains(&n)
                && n >= 1
                && (out.is_empty() || n <= last + 5)
                // the next number at a line start opens an entry even when OCR lost the
                // capital ("20. hrysochoos, André")
                && (n == last + 1 || starts_entry(&line[m.end()..]))
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

pub(super) fn starts_entry(s: &str) -> bool {
    s.trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c == '“' || c == '"')
}

pub(super) fn append_text(out: &mut [(Option<u32>, String)], text: &str) {
    if let Some((_, cur)) = out.last_mut() {
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(text.trim());
    }
}

/// Entries of an author-year list: a capitalised line starts a new entry once the current one
/// has its year; other lines continue it.
pub(super) fn author_year_entries(lines: &[&str]) -> Vec<(Option<u32>, String)> {
    let mut out: Vec<(Option<u32>, String)> = Vec::new();
    let pieces: Vec<&str> = lines.iter().flat_map(|l| glued_entries(l)).collect();
    for line in pieces {
        let starts_upper = line.chars().next().is_some_and(char::is_uppercase);
        let cur_has_year = out
            .last()
            .is_some_and(|(_, t)| YEAR.is_match(&repair_ocr_years(t)));
        if out.is_empty() || (starts_upper && cur_has_year) {
            out.push((None, line.to_string()));
        } else {
            append_text(&mut out, line);
        }
    }
    out
}

/// "Surname, I." after a sentence end: where a converter glued the next Harvard entry on.
static GLUED_HARVARD_START: LazyLock<Regex> =
    LazyLock::new(|| re(r"\.\s+\p{Lu}[\p{L}'’\-]+,\s?\p{Lu}\."));

/// One line holding several author-year entries, split where the next one starts: both sides
/// have a year and the next starts "Surname, I." ("… 35, 53-68. Teizer,J., Vela,P.A., 2009. …").
fn glued_entries(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for m in GLUED_HARVARD_START.find_iter(line) {
        let cut = m.start() + 1;
        let before = &line[start..cut];
        let after: String = line[cut..].chars().take(60).collect();
        let has_year = |s: &str| YEAR.is_match(&repair_ocr_years(s));
        if has_year(before) && has_year(&after) {
            out.push(before.trim());
            start = cut;
        }
    }
    out.push(line[start..].trim());
    out
}

pub(super) fn parse_entry(raw: &str) -> Reference {
    let unmathed = LATEX_MATH.replace_all(raw, "$1$2");
    let raw = unmathed.as_ref();
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
    let no_urls = repair_ocr_years(&ARXIV_ID.replace_all(&no_urls, " ")).into_owned();
    let year = find_year(&no_urls);
    Reference {
        key: String::new(),
        first_author: first_author(body),
        title: find_title(&repair_ocr_years(body), year.as_deref()),
        year,
        url,
        raw: body.to_string(),
    }
}

pub(super) fn find_url(s: &str) -> Option<String> {
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

pub(super) fn find_year(s: &str) -> Option<String> {
    for r in [
        &*YEAR_PAREN,
        &*YEAR_AFTER_AUTHORS,
        &*YEAR_VANCOUVER,
        &*YEAR_BEFORE_VOLUME,
    ] {
        if let Some(c) = r.captures(s)
            && let Some(m) = c.get(1)
        {
            return Some(m.as_str().to_string());
        }
    }
    YEAR.find_iter(s).last().map(|m| m.as_str().to_string())
}

pub(super) fn is_initials(tok: &str) -> bool {
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
pub(super) fn first_author(body: &str) -> Option<String> {
    let body = body.trim_start_matches(|c: char| !c.is_alphabetic());
    // the first author's name ends at a comma (or a full-width one), a conjunction, "et al", a
    // parenthesis or quote
    let mut end = body.len();
    for pat in [
        ",", "，", ";", "(", "“", "\"", ":", " and ", " & ", " et al", "„",
    ] {
        if let Some(p) = body.find(pat) {
            end = end.min(p);
        }
    }
    let mut head = &body[..end];
    // or at the period closing a name that is not an initial ("Robin Burke. Title")
    // or at the initials closing a single Vancouver author ("Stone QW. Title of the work"),
    // not a middle initial ("Michael D. Ekstrand")
    let mut pos = 0usize;
    let mut after_name = false;
    for tok in head.split_inclusive(' ') {
        let t = tok.trim();
        let initials = is_initials(t);
        if t.ends_with('.')
            && ((!initials && t.trim_end_matches('.').chars().count() >= 2)
                || (initials && after_name && closes_vancouver_author(t, &body[pos + tok.len()..])))
        {
            head = &head[..pos + tok.trim_end().len()];
            break;
        }
        after_name = !initials && !t.is_empty();
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
    // "Mary D. Stone": a given name, a middle initial, then the surname
    let middle_initial = tokens.first().is_some_and(|t| !is_initials(t))
        && tokens
            .iter()
            .rposition(|t| is_initials(t))
            .is_some_and(|i| i + 1 < tokens.len());
    let surname = if names.is_empty() {
        return None;
    } else if middle_initial {
        let last_initial = tokens.iter().rposition(|t| is_initials(t)).unwrap_or(0);
        tokens[last_initial + 1..].join(" ")
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

/// Whether the initials `initials` (ending in a period, right after a surname) close a Vancouver
/// author ("Stone QW. Particles in …", "Fox A. Plant-drug interactions") rather than being a
/// middle initial before a surname ("Mary D. Stone, Ann Hill"): several letters always close
/// one; a single letter does unless the next word is a surname, ended by a comma, a period or
/// a conjunction.
fn closes_vancouver_author(initials: &str, rest: &str) -> bool {
    if initials.chars().filter(|c| c.is_alphabetic()).count() >= 2 {
        return true;
    }
    let rest = rest.trim_start();
    let Some(word) = rest.split_whitespace().next() else {
        return false;
    };
    let after = rest[word.len()..].trim_start();
    !(word.ends_with([',', '.', ';'])
        || after.starts_with("and ")
        || after.starts_with("& ")
        || after.is_empty())
}

pub(super) fn find_title(body: &str, year: Option<&str>) -> Option<String> {
    let clean = |t: &str| {
        let t = collapse_ws(t.trim().trim_end_matches([',', '.', ' ']));
        // one hyphenated word ("Tracking-learning-detection") may be a whole title
        let words = t.split_whitespace().count();
        ((words >= 2 || (words == 1 && t.contains('-'))) && t.chars().count() >= 8).then_some(t)
    };
    if let Some(c) = QUOTED_TITLE.captures(body)
        && let Some(m) = c.get(1)
    {
        return clean(m.as_str());
    }
    let first_sentence = |s: &str| -> Option<String> {
        let s = s.trim_start_matches(|c: char| c == '.' || c == ')' || c.is_whitespace());
        let mut title = &s[..title_end(s)];
        // "… subjects (Tech. rep.)": a parenthesis the title does not close is not the title's
        if let Some(open) = title.rfind('(')
            && !title[open..].contains(')')
        {
            title = &title[..open];
        }
        clean(title)
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
    if let Some(m) = INITIALS_FIRST_AUTHORS.find(body)
        && body[..m.end()].trim_end().ends_with([',', '，'])
        && body[m.end()..].starts_with(char::is_uppercase)
    {
        // the title ends at the next comma and space, period, or period glued to a capital
        let rest = &body[m.end()..];
        let mut end = rest.find(", ").unwrap_or(rest.len());
        if let Some(g) = GLUED_SENTENCE_END.find(&rest[..end]) {
            end = g.start() + 3;
        }
        return first_sentence(&rest[..end]);
    }
    if let Some(m) = ACS_AUTHORS.find(body)
        && m.end() < body.len()
    {
        // a book's title ends at the semicolon before its publisher: "Title; Oxford: …"
        let rest = &body[m.end()..];
        let rest = rest.find("; ").map_or(rest, |p| &rest[..=p]);
        return first_sentence(rest.trim_end_matches(';'));
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

/// Text made of names only: no lower-case word of four letters or more besides "and", and no
/// word of three letters or more that closes a sentence or clause ("Action.", "Rivers:"), as
/// a capitalised title before the year would.
pub(super) fn is_author_list(s: &str) -> bool {
    s.chars().count() < 400
        && !s.split_whitespace().any(|w| {
            w.ends_with(['.', ':', '?', '!'])
                && !is_initials(w)
                && w.chars().filter(|c| c.is_alphabetic()).count() >= 3
        })
        && s.split_whitespace().all(|w| {
            let w = w.trim_matches(|c: char| !c.is_alphabetic());
            w.chars().next().is_none_or(|c| !c.is_lowercase())
                || w.chars().count() < 4
                || w == "and"
        })
}

pub(super) fn structured_references(items: &[serde_json::Value]) -> Result<Vec<Reference>, String> {
    let mut refs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let position = (i + 1).to_string();
        let r = match item {
            serde_json::Value::String(s) => {
                let raw = collapse_ws(s);
                let marker = ENTRY_MARKER
                    .captures(&raw)
                    .and_then(|c| c.get(1).or(c.get(2)).or(c.get(3)).or(c.get(4)))
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

/// Text with OCR-garbled years repaired ("2O18" → "2018"); other text unchanged.
pub(super) fn repair_ocr_years(s: &str) -> Cow<'_, str> {
    OCR_YEAR.replace_all(s, |c: &regex::Captures<'_>| {
        let token = &c[0];
        let digits: String = token
            .chars()
            .map(|ch| match ch {
                'O' | 'o' => '0',
                'I' | 'l' => '1',
                d => d,
            })
            .collect();
        let is_year = digits.starts_with("19") || digits.starts_with("20");
        if is_year && digits != token {
            digits
        } else {
            token.to_string()
        }
    })
}
