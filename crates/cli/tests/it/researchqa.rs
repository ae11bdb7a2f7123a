//! Survey mining end to end: `rubricmill run` over the 20 real surveys in
//! `../shared/corpus/surveys` against mock-llm (in-process, on a free loopback port), with the
//! query judge and the field classification on. Checks one query per kept section, the id form,
//! the item bounds, the released ResearchQA columns, and that every dropped section, query and
//! item is accounted for in reject rows and in the commit markers' stage counts.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use rubricmill_mine::sections::{SectionKind, SectionOptions, parse_markdown_survey};
use rubricmill_mock_llm::MockConfig;

use crate::{Committed, Mock, repo_root, run_job, write_spec};

/// The corpus folder, or `None` (with a message) when it is absent.
fn corpus() -> Option<std::path::PathBuf> {
    let root = repo_root().join("../shared/corpus/surveys");
    if !root.is_dir() {
        println!("skipping: ../shared/corpus not found");
        return None;
    }
    Some(root)
}

/// The released ResearchQA columns (realliyifei/ResearchQA `researchqa_loader.py`; see "Output schemas" in docs/ARCHITECTURE.md).
pub const RESEARCHQA_COLUMNS: [&str; 7] = [
    "id",
    "general_domain",
    "subdomain",
    "field",
    "query",
    "date",
    "rubric",
];

/// Checks the released columns and their types by downcasting: utf8 scalars, and `rubric` a
/// list of `{rubric_item: utf8, type: list<utf8>, citation_metadata: {first_author, title,
/// url, year: utf8}}`.
fn assert_researchqa_schema(batch: &RecordBatch) {
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names[..7], RESEARCHQA_COLUMNS, "leading columns");
    for name in &RESEARCHQA_COLUMNS[..6] {
        let column = batch.column_by_name(name).unwrap();
        assert!(
            column.as_string_opt::<i32>().is_some(),
            "{name} is not utf8"
        );
    }
    let rubric = batch
        .column_by_name("rubric")
        .unwrap()
        .as_list_opt::<i32>()
        .expect("rubric is a list");
    let items = rubric
        .values()
        .as_struct_opt()
        .expect("rubric items are structs");
    assert_eq!(
        items.column_names(),
        ["rubric_item", "type", "citation_metadata"]
    );
    assert!(
        items.column(0).as_string_opt::<i32>().is_some(),
        "rubric_item is not utf8"
    );
    let types = items
        .column(1)
        .as_list_opt::<i32>()
        .expect("type is a list");
    assert!(
        types.values().as_string_opt::<i32>().is_some(),
        "type items are not utf8"
    );
    let citation = items
        .column(2)
        .as_struct_opt()
        .expect("citation_metadata is a struct");
    assert_eq!(
        citation.column_names(),
        ["first_author", "title", "url", "year"]
    );
    for column in citation.columns() {
        assert!(
            column.as_string_opt::<i32>().is_some(),
            "citation fields are utf8"
        );
    }
    for extra in ["heading_path", "section_heading", "doc_id", "prompt_hash"] {
        assert!(schema.field_with_name(extra).is_ok(), "{extra}");
    }
}

/// Rubric items per row and the rows' linked citations.
fn rubric_lengths(batches: &[RecordBatch]) -> (Vec<usize>, usize) {
    let mut lengths = Vec::new();
    let mut linked = 0;
    for batch in batches {
        let rubric = batch.column_by_name("rubric").unwrap().as_list::<i32>();
        for i in 0..rubric.len() {
            let items = rubric.value(i);
            let items = items.as_struct();
            lengths.push(items.len());
            let citations = items.column_by_name("citation_metadata").unwrap();
            linked += items.len() - citations.null_count();
        }
    }
    (lengths, linked)
}

#[test]
fn twenty_real_surveys_mine_to_accounted_researchqa_rows() {
    let Some(corpus) = corpus() else {
        return;
    };
    let mut files: Vec<_> = ["computer_science", "medicine"]
        .iter()
        .flat_map(|field| std::fs::read_dir(corpus.join(field)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 20);
    // What the pipeline must do with each survey, from the section extractor directly.
    let mut kept_sections = BTreeMap::new();
    let mut parsed_sections = BTreeMap::new();
    let mut dropped_units = 0;
    for file in &files {
        let parsed = parse_markdown_survey(
            &std::fs::read_to_string(file).unwrap(),
            &SectionOptions::default(),
        );
        // review-method sections are skipped by default, each a `sections` reject
        let method = parsed
            .sections
            .iter()
            .filter(|s| s.kind == SectionKind::ReviewMethod)
            .count();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        parsed_sections.insert(stem.clone(), parsed.sections.len());
        kept_sections.insert(stem, parsed.sections.len() - method);
        dropped_units += parsed.dropped.len() + method;
    }
    let sections: usize = kept_sections.values().sum();

    let mock = Mock::start(MockConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "surveys",
        &format!(
            "pipeline = \"researchqa\"\n[input]\nurl = \"{}/**/*.md\"\nformat = \"markdown\"\nrecords_per_shard = 4\n\
             [output]\nurl = \"{}\"\n[llm]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"mock-model\"\n\
             max_tokens = 1024\nmax_concurrency = 32\n\
             [researchqa]\nclassify_taxonomy = [\"Computer Science > Information Retrieval > Recommender Systems\", \
             \"Computer Science > Machine Learning > Generative Models\", \"Medicine > Endocrinology > Diabetes\", \
             \"Medicine > Oncology > Precision Oncology\"]\n",
            corpus.display(),
            dir.path().join("out").display(),
            mock.server().base_url()
        ),
    );
    let (code, summary, _) = run_job(&spec, &["--no-progress"]);
    assert_eq!(code, 0, "{summary}");
    let out = Committed::read(&dir.path().join("out/surveys"));
    let rows = out.row_count() as u64;
    assert!(rows > 100, "only {rows} rows from {sections} sections");
    assert_researchqa_schema(&out.rows[0]);

    // One generation per kept section; every section ends as a row or a reject.
    let stage = |name: &str, counter: &str| out.stage_sum(name, counter);
    assert_eq!(stage("generate", "input"), sections as u64);
    assert_eq!(
        stage("generate", "input"),
        stage("generate", "output") + stage("generate", "rejected")
    );
    assert_eq!(stage("query_judge", "input"), stage("generate", "output"));
    assert_eq!(
        stage("query_judge", "input"),
        stage("query_judge", "output") + stage("query_judge", "rejected")
    );
    assert_eq!(stage("min_items", "input"), stage("query_judge", "output"));
    assert_eq!(stage("min_items", "output"), rows);
    assert_eq!(
        stage("generate", "input"),
        rows + stage("generate", "rejected")
            + stage("query_judge", "rejected")
            + stage("min_items", "rejected")
    );
    assert_eq!(
        stage("rubric_check", "input"),
        stage("rubric_check", "output") + stage("rubric_check", "rejected")
    );
    assert_eq!(
        stage("classify", "input"),
        20,
        "one classification per document"
    );
    // Every count of rejected has its reject rows, with the stage named.
    let reject_stages = out.reject_strings("stage");
    let mut by_stage: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &reject_stages {
        *by_stage.entry(s.as_str()).or_default() += 1;
    }
    for name in [
        "generate",
        "query_judge",
        "rubric_check",
        "min_items",
        "classify",
    ] {
        assert_eq!(
            by_stage.get(name).copied().unwrap_or(0),
            stage(name, "rejected"),
            "reject rows of {name}"
        );
    }
    assert_eq!(
        by_stage.get("sections").copied().unwrap_or(0),
        dropped_units as u64
    );
    assert!(
        stage("rubric_check", "rejected") > 0,
        "the item checks should drop something on real surveys"
    );

    // Items: within bounds, and the kept ones are what rubric_check let through (no query was
    // rejected for too few items, or their items make up the difference).
    let (lengths, linked) = rubric_lengths(&out.rows);
    assert!(lengths.iter().all(|&n| (3..=8).contains(&n)), "{lengths:?}");
    let kept_items: u64 = lengths.iter().map(|&n| n as u64).sum();
    assert!(kept_items <= stage("rubric_check", "output"));
    if stage("min_items", "rejected") == 0 {
        assert_eq!(kept_items, stage("rubric_check", "output"));
    }
    assert!(linked > 0, "citation items should link to references");

    // Ids: unique, `<docid>-s<idx>`, one per kept section at most, section indices in range.
    let ids = out.strings("id");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids");
    let doc_ids = out.strings("doc_id");
    let files_of_rows = out.strings("source_file");
    for ((id, doc), file) in ids.iter().zip(&doc_ids).zip(&files_of_rows) {
        let index: usize = id
            .strip_prefix(&format!("{doc}-s"))
            .unwrap_or_else(|| panic!("{id} is not <docid>-s<idx>"))
            .parse()
            .unwrap_or_else(|_| panic!("{id}: section index is not a number"));
        let stem = Path::new(file).file_stem().unwrap().to_string_lossy();
        let kept = parsed_sections[stem.as_ref()];
        assert!(index < kept, "{id}: index beyond the {kept} kept sections");
        assert!(
            doc.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{doc}"
        );
    }
    let documents: HashSet<&String> = doc_ids.iter().collect();
    assert_eq!(documents.len(), 20, "every survey yields rows");

    // Queries stand alone; labels come from the classification; hashes are recorded.
    for query in out.strings("query") {
        let lower = query.to_lowercase();
        assert!(
            !lower.contains("this survey") && !lower.contains("this section"),
            "{query}"
        );
    }
    let fields = out.strings("field");
    assert!(
        fields.iter().all(|f| !f.is_empty()),
        "classified field missing"
    );
    for (field, domain) in fields.iter().zip(out.strings("general_domain")) {
        assert!(
            (domain == "Computer Science")
                == (field == "Recommender Systems" || field == "Generative Models"),
            "{domain} / {field}"
        );
    }
    let hashes: BTreeMap<String, String> =
        serde_json::from_str(&out.metadata["rubricmill.prompt_hashes"]).unwrap();
    for name in [
        "researchqa_generate",
        "researchqa_judge",
        "researchqa_classify",
    ] {
        assert!(hashes.contains_key(name), "{name} missing from {hashes:?}");
    }
    let row_hashes: HashSet<String> = out.strings("prompt_hash").into_iter().collect();
    assert_eq!(
        row_hashes,
        HashSet::from([hashes["researchqa_generate"].clone()])
    );

    // The mock answered every call the job counted.
    let calls = summary["this_run"]["llm_calls"].as_u64().unwrap();
    let answered = mock
        .server()
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .count() as u64;
    assert_eq!(calls, answered);
    assert!(
        calls >= 2 * rows,
        "a generation and a judgement per kept query"
    );
}
