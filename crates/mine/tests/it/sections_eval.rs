//! The section rules measured against hand labels: every heading of the 20 surveys in
//! `../shared/corpus/surveys`, labelled by reading the surveys (`tests/labels/sections.tsv`:
//! content, method — the review's own method —, non-content, or noise). Prints precision and
//! recall per survey and overall (`scripts/eval-sections.sh`), and fails when the rules keep
//! more than 0.5 % of the non-content headings or drop more than 2 % of the content ones.
//! A second test checks hand-checked citations (`tests/labels/citations.tsv`, eight to ten or so
//! per survey, spread over each document): a citation counts as resolved when its section cites
//! the labelled reference entry (the entry's opening words) or, failing that, an entry with the
//! labelled first author and year; each survey must resolve at least 95 % of its labelled
//! citations (none below 80 %), and 85 % of the resolved ones must have the right entry with
//! first author, year and title all right. DOI/URL agreement is printed beside.
//!
//! A third test needs no labels: in every survey with a reference list it counts the citation
//! markers of the survey's own style (numbers, or author-year pairs) in the kept sections and
//! the share that resolve to a reference entry, so surveys with thousands of citations are
//! measured on all of them; it fails when a survey falls below a floor.
//!
//! A heading is matched to the parser's unit with the same text, in order. A unit whose
//! abstract was dropped but whose unheaded introduction was kept (renamed "Introduction")
//! counts as dropped for its abstract label. Noise labels and headings the parser folded into
//! text (no unit of their own) are left out and counted, and so are headings with no text of
//! their own (a chapter heading right before its first subsection): nothing is kept or lost.

use std::collections::BTreeMap;
use std::path::Path;

use rubricmill_mine::sections::{SectionKind, SectionOptions, parse_markdown_survey};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/corpus/surveys"
);
const LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labels/sections.tsv");

/// Targets on the labelled set.
const MAX_NON_CONTENT_KEPT: f64 = 0.005;
const MAX_CONTENT_DROPPED: f64 = 0.02;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Content,
    Method,
    NonContent,
    Noise,
}

/// The survey file of this name in either field of the corpus.
fn corpus_file(root: &Path, file: &str) -> std::path::PathBuf {
    ["computer_science", "medicine"]
        .iter()
        .map(|field| root.join(field).join(file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{file} is not in the corpus"))
}

fn labels() -> BTreeMap<String, Vec<(String, Label)>> {
    let text = std::fs::read_to_string(LABELS).expect("label file");
    let mut by_file: BTreeMap<String, Vec<(String, Label)>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(cols.len() >= 3, "labels line {}: {line:?}", n + 1);
        let label = match cols[2] {
            "content" => Label::Content,
            "method" => Label::Method,
            "non-content" => Label::NonContent,
            "noise" => Label::Noise,
            other => panic!("labels line {}: unknown label {other:?}", n + 1),
        };
        by_file
            .entry(cols[0].to_owned())
            .or_default()
            .push((cols[1].to_owned(), label));
    }
    by_file
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Debug, Default)]
struct Counts {
    content: usize,
    content_dropped: usize,
    non_content: usize,
    non_content_kept: usize,
    method: usize,
    marked: usize,
    marked_right: usize,
    unmatched: usize,
    empty: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.content += o.content;
        self.content_dropped += o.content_dropped;
        self.non_content += o.non_content;
        self.non_content_kept += o.non_content_kept;
        self.method += o.method;
        self.marked += o.marked;
        self.marked_right += o.marked_right;
        self.unmatched += o.unmatched;
        self.empty += o.empty;
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[test]
fn section_kinds_meet_the_targets_on_the_labelled_surveys() {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return;
    }
    let labels = labels();
    assert_eq!(labels.len(), 20, "labels cover the 20 surveys");
    let mut total = Counts::default();
    println!(
        "{:<44} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "survey", "content", "dropped", "non-c.", "kept", "unmatched"
    );
    for (file, labelled) in &labels {
        let path = corpus_file(root, file);
        let text = std::fs::read_to_string(&path).expect("readable survey");
        let parsed = parse_markdown_survey(&text, &SectionOptions::default());
        let mut counts = Counts::default();
        let mut next = 0usize;
        for (heading, label) in labelled {
            if *label == Label::Noise {
                continue;
            }
            let wanted = collapse(heading);
            let found = parsed.outcomes[next..]
                .iter()
                .position(|o| o.raw_heading.as_deref().map(collapse).as_deref() == Some(&wanted));
            let Some(offset) = found else {
                counts.unmatched += 1;
                continue;
            };
            let outcome = &parsed.outcomes[next + offset];
            next += offset + 1;
            if outcome.text_chars == 0 {
                // a heading with no text of its own: nothing to keep or lose
                counts.empty += 1;
                continue;
            }
            let renamed_intro = outcome.heading == "Introduction" && wanted != "Introduction";
            let kept = outcome.kept && !(renamed_intro && *label == Label::NonContent);
            let marked = kept && outcome.kind == SectionKind::ReviewMethod;
            match label {
                Label::Content | Label::Method => {
                    counts.content += 1;
                    if !kept {
                        counts.content_dropped += 1;
                        println!("  content dropped: {file} :: {heading}");
                    }
                }
                Label::NonContent => {
                    counts.non_content += 1;
                    if kept {
                        counts.non_content_kept += 1;
                        println!("  non-content kept: {file} :: {heading}");
                    }
                }
                Label::Noise => {}
            }
            if *label == Label::Method {
                counts.method += 1;
            }
            if marked {
                counts.marked += 1;
                if *label == Label::Method {
                    counts.marked_right += 1;
                }
            }
        }
        println!(
            "{:<44} {:>7} {:>7} {:>7} {:>7} {:>9}",
            file.chars().take(44).collect::<String>(),
            counts.content,
            counts.content_dropped,
            counts.non_content,
            counts.non_content_kept,
            counts.unmatched
        );
        total.add(&counts);
    }
    let non_content_kept = share(total.non_content_kept, total.non_content);
    let content_dropped = share(total.content_dropped, total.content);
    println!(
        "non-content kept: {}/{} = {:.2} % (target <= {:.1} %)",
        total.non_content_kept,
        total.non_content,
        non_content_kept * 100.0,
        MAX_NON_CONTENT_KEPT * 100.0
    );
    println!(
        "content dropped: {}/{} = {:.2} % (target <= {:.1} %)",
        total.content_dropped,
        total.content,
        content_dropped * 100.0,
        MAX_CONTENT_DROPPED * 100.0
    );
    println!(
        "section kind content: precision {:.3}, recall {:.3}",
        1.0 - share(
            total.non_content_kept,
            total.content - total.content_dropped + total.non_content_kept
        ),
        1.0 - content_dropped
    );
    println!(
        "review-method marking: precision {:.3} ({} of {} marked), recall {:.3} ({} of {} labelled)",
        share(total.marked_right, total.marked),
        total.marked_right,
        total.marked,
        share(total.marked_right, total.method),
        total.marked_right,
        total.method
    );
    println!(
        "labelled headings without a unit of their own: {}",
        total.unmatched
    );
    assert!(
        total.content + total.non_content > 550,
        "most labels match a unit ({} unmatched)",
        total.unmatched
    );
    assert!(
        non_content_kept <= MAX_NON_CONTENT_KEPT,
        "non-content kept {:.2} %",
        non_content_kept * 100.0
    );
    assert!(
        content_dropped <= MAX_CONTENT_DROPPED,
        "content dropped {:.2} %",
        content_dropped * 100.0
    );
}

const CITATION_LABELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/labels/citations.tsv");
/// Targets: the mean over surveys of the share of labelled citations resolved …
const MIN_CITATION_RECALL: f64 = 0.95;
/// … with no survey below this share …
const MIN_CITATION_RECALL_EACH: f64 = 0.80;
/// … and this share of the resolved ones has the right entry with first author, year and
/// title all right.
const MIN_METADATA_RIGHT: f64 = 0.85;

/// Letters and digits, lower-cased: titles compare equal across spacing and punctuation noise.
fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// One hand-checked citation (a row of `tests/labels/citations.tsv`).
struct CitationLabel<'a> {
    context: String,
    entry: &'a str,
    author: &'a str,
    year: &'a str,
    title: &'a str,
    doi_or_url: &'a str,
}

fn citation_labels(text: &str) -> BTreeMap<&str, Vec<CitationLabel<'_>>> {
    let mut by_file: BTreeMap<&str, Vec<CitationLabel<'_>>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 7, "citation labels line {}: {line:?}", n + 1);
        by_file.entry(cols[0]).or_default().push(CitationLabel {
            context: collapse(cols[1]),
            entry: cols[2],
            author: cols[3],
            year: cols[4],
            title: cols[5],
            doi_or_url: cols[6],
        });
    }
    by_file
}

#[test]
fn labelled_citations_resolve_with_the_right_metadata() {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return;
    }
    let text = std::fs::read_to_string(CITATION_LABELS).expect("citation labels");
    let by_file = citation_labels(&text);
    assert_eq!(by_file.len(), 20, "citation labels cover the 20 surveys");
    let (mut resolved_total, mut right_total, mut labelled_total) = (0usize, 0usize, 0usize);
    let (mut links, mut links_right) = (0usize, 0usize);
    let (mut lowest, mut recall_sum) = (1.0f64, 0.0f64);
    println!(
        "{:<44} {:>9} {:>7} {:>16}",
        "survey", "labelled", "recall", "markers resolved"
    );
    for (file, labels) in &by_file {
        let parsed = parse_markdown_survey(
            &std::fs::read_to_string(corpus_file(root, file)).expect("readable survey"),
            &SectionOptions::default(),
        );
        let mut resolved = 0usize;
        for label in labels {
            let section = parsed
                .sections
                .iter()
                .find(|s| collapse(&s.text).contains(&label.context));
            let entry = squash(label.entry);
            let by_entry = section.and_then(|s| {
                s.citations
                    .iter()
                    .find(|r| squash(&r.raw).starts_with(&entry))
            });
            let by_author = || {
                section.and_then(|s| {
                    s.citations.iter().find(|r| {
                        r.first_author.as_deref().map(squash) == Some(squash(label.author))
                            && r.year.as_deref().is_some_and(|y| y.starts_with(label.year))
                    })
                })
            };
            let Some(cited) = by_entry.or_else(by_author) else {
                let why = if section.is_some() {
                    "not resolved"
                } else {
                    "context not in a kept section"
                };
                println!("  missed: {file} :: {} ({why})", label.context);
                continue;
            };
            resolved += 1;
            let fields = [
                (
                    "entry",
                    by_entry.is_some(),
                    cited.raw.chars().take(60).collect::<String>(),
                ),
                (
                    "first author",
                    cited.first_author.as_deref().map(squash) == Some(squash(label.author)),
                    format!("{:?}", cited.first_author),
                ),
                (
                    "year",
                    cited
                        .year
                        .as_deref()
                        .is_some_and(|y| y.starts_with(label.year)),
                    format!("{:?}", cited.year),
                ),
                (
                    "title",
                    cited.title.as_deref().map(squash) == Some(squash(label.title)),
                    format!("{:?}", cited.title),
                ),
            ];
            let wrong: Vec<String> = fields
                .iter()
                .filter(|(_, right, _)| !right)
                .map(|(name, _, got)| format!("{name} {got}"))
                .collect();
            if wrong.is_empty() {
                right_total += 1;
            } else {
                println!(
                    "  wrong: {file} :: {} ({}; labelled {:?} {} {:?})",
                    label.context,
                    wrong.join(", "),
                    label.author,
                    label.year,
                    label.title
                );
            }
            if !label.doi_or_url.is_empty() {
                links += 1;
                if cited
                    .url
                    .as_deref()
                    .is_some_and(|u| squash(u).ends_with(&squash(label.doi_or_url)))
                {
                    links_right += 1;
                } else {
                    println!(
                        "  doi/url: {file} :: got {:?}, labelled {:?}",
                        cited.url, label.doi_or_url
                    );
                }
            }
        }
        let recall = share(resolved, labels.len());
        lowest = lowest.min(recall);
        recall_sum += recall;
        let markers = parsed
            .citation_markers
            .share()
            .map_or("none".to_string(), |m| format!("{:.1} %", m * 100.0));
        println!(
            "{:<44} {:>9} {:>6.1}% {:>16}",
            file.chars().take(44).collect::<String>(),
            labels.len(),
            recall * 100.0,
            markers
        );
        resolved_total += resolved;
        labelled_total += labels.len();
    }
    let mean_recall = recall_sum / by_file.len() as f64;
    let right = share(right_total, resolved_total);
    println!(
        "labelled citation recall: {resolved_total}/{labelled_total}; per survey mean {:.1} % (target >= {:.0} %), lowest {:.1} % (target >= {:.0} %)",
        mean_recall * 100.0,
        MIN_CITATION_RECALL * 100.0,
        lowest * 100.0,
        MIN_CITATION_RECALL_EACH * 100.0
    );
    println!(
        "metadata fully right (entry, first author, year, title): {right_total}/{resolved_total} = {:.1} % (target >= {:.0} %)",
        right * 100.0,
        MIN_METADATA_RIGHT * 100.0
    );
    println!(
        "doi/url right where the entry prints one: {links_right}/{links} = {:.1} %",
        share(links_right, links) * 100.0
    );
    assert!(
        labelled_total >= 150,
        "only {labelled_total} labelled citations"
    );
    assert!(
        mean_recall >= MIN_CITATION_RECALL,
        "surveys resolve {:.1} % of their labelled citations on average",
        mean_recall * 100.0
    );
    assert!(
        lowest >= MIN_CITATION_RECALL_EACH,
        "a survey resolves {:.1} % of its labelled citations",
        lowest * 100.0
    );
    assert!(
        right >= MIN_METADATA_RIGHT,
        "metadata right {:.1} %",
        right * 100.0
    );
}

/// Floors on the share of citation markers that resolve (needs no labels; see the module docs):
/// in every survey with markers, and on average over them. The parser was at 73 % lowest and
/// 95 % mean when the floors were set; they leave margin for surveys that cite works missing
/// from their list, and catch a style that stops resolving.
const MIN_MARKERS_RESOLVED: f64 = 0.65;
const MIN_MARKERS_RESOLVED_MEAN: f64 = 0.90;

#[test]
fn citation_markers_resolve_in_every_survey_with_a_reference_list() {
    let root = Path::new(CORPUS);
    if !root.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return;
    }
    let mut files: Vec<std::path::PathBuf> = ["computer_science", "medicine"]
        .iter()
        .flat_map(|field| std::fs::read_dir(root.join(field)).expect("corpus field"))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut total = rubricmill_mine::sections::MarkerTally::default();
    let (mut lowest, mut sum, mut measured) = (1.0f64, 0.0f64, 0usize);
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let parsed = parse_markdown_survey(
            &std::fs::read_to_string(path).expect("readable survey"),
            &SectionOptions::default(),
        );
        let tally = parsed.citation_markers;
        let Some(resolved) = tally.share() else {
            println!(
                "{:<44} markers: none ({} references)",
                name.chars().take(44).collect::<String>(),
                parsed.references.len()
            );
            continue;
        };
        println!(
            "{:<44} markers resolved {}/{} = {:.1} %",
            name.chars().take(44).collect::<String>(),
            tally.resolved,
            tally.found,
            resolved * 100.0
        );
        lowest = lowest.min(resolved);
        sum += resolved;
        measured += 1;
        total.add(tally);
    }
    println!(
        "citation markers resolved: {}/{} overall; per survey min {:.1} %, mean {:.1} % over {measured} surveys (floors {:.0} % each, {:.0} % mean)",
        total.resolved,
        total.found,
        lowest * 100.0,
        sum / measured.max(1) as f64 * 100.0,
        MIN_MARKERS_RESOLVED * 100.0,
        MIN_MARKERS_RESOLVED_MEAN * 100.0
    );
    assert!(
        measured >= 15,
        "only {measured} surveys have citation markers"
    );
    assert!(
        lowest >= MIN_MARKERS_RESOLVED,
        "a survey resolves {:.1} % of its citation markers",
        lowest * 100.0
    );
    assert!(
        sum / measured as f64 >= MIN_MARKERS_RESOLVED_MEAN,
        "surveys resolve {:.1} % of their citation markers on average",
        sum / measured as f64 * 100.0
    );
}
