//! Sections that are not prose a query can be mined from: mostly table markup, or text the
//! converter garbled (words run together, lines emitted twice).

use super::*;

static HTML_TABLE: LazyLock<Regex> = LazyLock::new(|| re(r"(?is)<table\b.*?</table>"));

/// A section is a table when table cells hold at least this share of its visible text and the
/// prose around them is shorter than [`TABLE_PROSE_CHARS`]: a finding table with a paragraph
/// discussing it stays content, an appendix study list with a one-line caption does not.
const TABLE_SHARE: f64 = 0.8;
const TABLE_PROSE_CHARS: usize = 400;
/// Share of letters in words of this many characters or more above which words ran together.
const GLUED_WORD_CHARS: usize = 25;
const GLUED_SHARE: f64 = 0.5;
/// Share of repeated lines above which the converter emitted lines twice.
const REPEATED_LINE_SHARE: f64 = 0.3;

static TAG: LazyLock<Regex> = LazyLock::new(|| re(r"<[^>]*>"));

/// Non-space characters a reader sees (markup and table rules not counted).
fn visible(s: &str) -> usize {
    TAG.replace_all(s, " ")
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '|' | '-' | ':'))
        .count()
}

/// (visible characters in tables, visible characters of prose) of a section: HTML tables,
/// Markdown table rows and stray table-row lines count as table.
pub(super) fn table_and_prose(text: &str) -> (usize, usize) {
    let mut table: usize = HTML_TABLE
        .find_iter(text)
        .map(|m| visible(m.as_str()))
        .sum();
    let mut prose = 0usize;
    let rest = HTML_TABLE.replace_all(text, " ");
    for line in rest.lines() {
        let t = line.trim();
        let markdown_row = t.len() > 1 && t.starts_with('|') && t.ends_with('|');
        let html_row = t.contains("<td") || t.contains("<tr") || t.contains("<th");
        if markdown_row || html_row {
            table += visible(t);
        } else {
            prose += visible(t);
        }
    }
    (table, prose)
}

/// Why a section is not prose, if it is not.
pub(super) fn not_prose_reason(text: &str) -> Option<String> {
    let (table, prose_chars) = table_and_prose(text);
    let share = table as f64 / (table + prose_chars).max(1) as f64;
    if share >= TABLE_SHARE && prose_chars < TABLE_PROSE_CHARS {
        return Some(format!(
            "table-dominated section ({:.0} % of its text in tables, {prose_chars} characters of prose)",
            share * 100.0
        ));
    }
    let prose = HTML_TABLE.replace_all(text, " ");
    let words: Vec<&str> = prose
        .split_whitespace()
        .filter(|w| !w.contains("http") && !w.contains('/') && !w.contains('<'))
        .collect();
    let letters: usize = words.iter().map(|w| w.chars().count()).sum();
    if letters >= 300 {
        let glued: usize = words
            .iter()
            .map(|w| w.chars().count())
            .filter(|n| *n >= GLUED_WORD_CHARS)
            .sum();
        let glued_share = glued as f64 / letters as f64;
        if glued_share >= GLUED_SHARE {
            return Some(format!(
                "garbled text (words run together: {:.0} % of letters in words of {GLUED_WORD_CHARS}+ characters)",
                glued_share * 100.0
            ));
        }
    }
    let lines: Vec<String> = text
        .lines()
        .map(|l| collapse_ws(l).to_lowercase())
        .filter(|l| l.chars().count() >= 25)
        .collect();
    if lines.len() >= 6 {
        let mut seen: HashSet<&str> = HashSet::new();
        let repeated = lines.iter().filter(|l| !seen.insert(l.as_str())).count();
        let repeated_share = repeated as f64 / lines.len() as f64;
        if repeated_share >= REPEATED_LINE_SHARE {
            return Some(format!(
                "garbled text ({:.0} % of lines repeated)",
                repeated_share * 100.0
            ));
        }
    }
    None
}
