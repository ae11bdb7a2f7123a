//! Markdown scanning: splits PDF-converted Markdown into the title and raw heading/text units,
//! keeping noise headings as text, and cleans section text.

use super::*;

pub(super) static HEADING_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^ {0,3}#{1,6}(?:\s+(.*?))?\s*#*\s*$"));
pub(super) static NOISE_HEADING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:full-size\s+doi\b|doi:|fig(?:ure)?\.?\s*\d|table\s*\d+\s*[.:|]?\s*$|box\s*\d+\s*[|:]?\s*$|source:)",
    )
});
pub(super) static IMAGE_LINE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$"));

pub(super) fn read_markdown(text: &str) -> RawDoc {
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

pub(super) fn push_line(unit: Option<&mut RawUnit>, line: &str) {
    if let Some(u) = unit {
        u.body.push_str(line);
        u.body.push('\n');
    }
}

/// A heading line that is really a sentence or a name list.
pub(super) fn looks_like_text_line(h: &str) -> bool {
    let words = h.split_whitespace().count();
    h.contains('·')
        || h.contains("\\cdot")
        || h.contains('@')
        || (h.ends_with('.') && words >= 6)
        || h.chars().count() > 80
}

/// Section text: image links removed, trailing spaces trimmed, blank-line runs collapsed.
pub(super) fn clean_body(body: &str) -> String {
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
