//! Reference-list text by its shape: lines that look like entries, and runs of them cut out of
//! sections that have no References heading.

use super::*;

// reference-list shapes
pub(super) static REF_NUM_BRACKET: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\[\d{1,4}\]\s*\S"));
pub(super) static REF_NUM_AUTHOR: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*\d{1,4}\.?\s*(?:\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?,?\s+(?:\p{Lu}{1,3}\b|\p{Lu}\.)|(?:\p{Lu}\.\s?){1,3}\s?\p{Lu}[\p{L}'’\-]+)",
    )
});
pub(super) static REF_APA: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^\s*\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?,\s?(?:\p{Lu}\.\s?-?){1,3}")
});
pub(super) static REF_VANCOUVER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*\p{Lu}[\p{L}'’\-]+(?:\s\p{Lu}[\p{L}'’\-]+)?\s\p{Lu}{1,3}(?:,\s|\.\s|\s\(|\s(?:19|20)\d\d)",
    )
});
pub(super) static REF_FULLNAME: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:\p{Lu}[\p{L}'’\-]+\s(?:\p{Lu}\.\s)?){1,3}\p{Lu}[\p{L}'’\-]+(?:,\s|\sand\s|\.\s).*(?:19|20)\d\d[a-z]?\.?\s*$",
    )
});
// ---------------------------------------------------------------------------------------------
// reference-list shapes

pub(super) fn is_ref_line(line: &str) -> bool {
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
pub(super) fn ref_share(text: &str) -> f64 {
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

/// Share of the non-space characters of `text` on lines that look like reference entries.
pub(super) fn ref_char_share(text: &str) -> f64 {
    let non_ws = |s: &str| s.chars().filter(|c| !c.is_whitespace()).count();
    let total = non_ws(text);
    if total == 0 {
        return 0.0;
    }
    let refs: usize = text.lines().filter(|l| is_ref_line(l)).map(non_ws).sum();
    refs as f64 / total as f64
}

/// Byte ranges (line-aligned) of runs of at least `min_run` reference-like lines, allowing up to
/// two continuation lines between entries.
pub(super) fn reference_runs(text: &str, min_run: usize) -> Vec<(usize, usize)> {
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

pub(super) fn collect_runs(text: &str, min_run: usize, out: &mut Vec<String>) {
    for (s, e) in reference_runs(text, min_run) {
        out.push(text[s..e].to_string());
    }
}

/// Cuts reference-list runs out of a content unit (the whole unit when they are most of it).
pub(super) fn strip_reference_runs(u: &mut Unit, ctx: &mut Ctx<'_>) {
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
