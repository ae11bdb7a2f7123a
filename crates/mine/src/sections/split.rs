//! Merging short sections into their neighbours and splitting long ones into balanced parts.

use super::*;

// ---------------------------------------------------------------------------------------------
// merging and splitting

pub(super) fn merge_short(units: &mut [Unit], ctx: &mut Ctx<'_>) -> usize {
    let min = ctx.opts.min_section_chars;
    let max_level = units.iter().map(|u| u.level).max().unwrap_or(1);
    let mut merged = 0usize;
    for level in (1..=max_level).rev() {
        for i in 0..units.len() {
            if units[i].level != level || units[i].status != Status::Content {
                continue;
            }
            let len = units[i].body.chars().count();
            // an empty section is never kept, whatever the minimum
            if len > 0 && len >= min {
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
pub(super) fn split_text(text: &str, max: usize, min: usize) -> Vec<String> {
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
pub(super) fn cut_piece(para: &str, max: usize, out: &mut Vec<String>) {
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

pub(super) fn split_sentences(text: &str) -> Vec<&str> {
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

pub(super) fn hard_cut(text: &str, max: usize, out: &mut Vec<String>) {
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
