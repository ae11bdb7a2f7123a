//! The job-spec reference in docs/SPEC.md: generated from the spec types, complete (every key
//! has a meaning and a default), with defaults that are the real ones, and covering every key
//! the example jobs in configs/ and the README use.

use std::path::{Path, PathBuf};

use rubricmill_core::JobSpec;
use rubricmill_core::spec_reference::{
    FieldDefault, SpecField, reference_covers, render_spec_reference, spec_fields,
};

const UPDATE_VAR: &str = "RUBRICMILL_UPDATE_SPEC";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn spec_reference_matches_docs_spec_md() {
    let path = repo_root().join("docs/SPEC.md");
    let rendered = render_spec_reference();
    if std::env::var_os(UPDATE_VAR).is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let first_difference = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
        panic!(
            "docs/SPEC.md is out of date with the job-spec types (first difference at line {}).\n\
             Regenerate it with:\n    {UPDATE_VAR}=1 cargo test -p rubricmill-core --test spec_reference\n\
             and commit the result.",
            first_difference + 1
        );
    }
}

#[test]
fn spec_reference_documents_every_field() {
    let fields = spec_fields();
    assert!(fields.len() > 60, "only {} fields found", fields.len());
    for path in [
        "name",
        "pipeline",
        "input.url",
        "input.layout",
        "researchqa.min_section_chars",
        "crg.max_resamples",
        "dataset.license",
        "llm.stages.<stage>.model",
        "llm.price_per_million.input",
    ] {
        assert!(
            fields.iter().any(|f| f.path == path),
            "{path} missing from the reference"
        );
    }
    let mut problems = Vec::new();
    for field in &fields {
        if field.meaning.trim().is_empty() {
            problems.push(format!("{}: no meaning (write a doc comment)", field.path));
        }
        if field.meaning.contains("[`") && field.meaning.contains("`]") {
            problems.push(format!(
                "{}: the meaning holds a rustdoc link, which users cannot follow",
                field.path
            ));
        }
        if field.default == FieldDefault::Undocumented {
            problems.push(format!("{}: no default stated", field.path));
        }
        if field.default == FieldDefault::Unset
            && !field.is_map
            && !field.is_table
            && !field.meaning.to_lowercase().contains("unset")
            && !field.path.contains('<')
        {
            problems.push(format!(
                "{}: optional without a default; say what \"Unset\" means",
                field.path
            ));
        }
        for (value, meaning) in &field.values {
            if meaning.trim().is_empty() {
                problems.push(format!("{}: value {value:?} has no meaning", field.path));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

const BASE: &str = r#"
name = "defaults"
pipeline = "crg"
[input]
url = "pairs.jsonl"
[output]
url = "out"
[llm]
base_url = "http://127.0.0.1:9/v1"
"#;

/// Writes `key = value` at a dotted path into a TOML table.
fn set_path(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut current = table;
    for parent in parents {
        current = current
            .entry(parent.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    current.insert(last.to_string(), value);
}

#[test]
fn spec_reference_defaults_are_the_real_defaults() {
    let parse = |text: &str| JobSpec::parse(Path::new("defaults.toml"), text);
    let base = parse(BASE).unwrap();
    let mut checked = 0;
    for field in spec_fields() {
        let FieldDefault::Value(default) = &field.default else {
            continue;
        };
        if field.path.contains('<') {
            continue;
        }
        let value: toml::Table = toml::from_str(&format!("v = {default}"))
            .unwrap_or_else(|e| panic!("{}: default {default} is not TOML: {e}", field.path));
        let mut table: toml::Table = toml::from_str(BASE).unwrap();
        let path: Vec<&str> = field.path.split('.').collect();
        set_path(&mut table, &path, value["v"].clone());
        let text = toml::to_string(&table).unwrap();
        let with_default =
            parse(&text).unwrap_or_else(|e| panic!("{} = {default} is refused: {e}", field.path));
        assert_eq!(
            with_default, base,
            "{} = {default} is not the default the spec applies",
            field.path
        );
        checked += 1;
    }
    assert!(checked > 30, "only {checked} defaults checked");
}

/// Every dotted key path a TOML table holds, tables included.
fn key_paths(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        out.push(prefix.clone());
        if let toml::Value::Table(inner) = value {
            key_paths(inner, prefix, out);
        }
        prefix.pop();
    }
}

fn covers(fields: &[SpecField], path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    reference_covers(fields, &path)
}

#[test]
fn spec_reference_covers_every_key_of_the_example_configs() {
    let fields = spec_fields();
    // The check can fail: misspelt and unknown keys are not covered; user-named keys are.
    for (path, expected) in [
        ("crg.max_resample", false),
        ("llm.modell", false),
        ("llm.stages.judge.model", true),
        ("llm.stages.judge.modell", false),
        ("llm.headers.X-Title", true),
        ("input.fields.prompt", true),
        ("llm.price_per_million.input", true),
    ] {
        let path: Vec<String> = path.split('.').map(str::to_owned).collect();
        assert_eq!(covers(&fields, &path), expected, "{path:?}");
    }
    let configs = repo_root().join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&configs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        JobSpec::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(&path).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut keys = Vec::new();
        key_paths(&table, &mut Vec::new(), &mut keys);
        for key in keys {
            assert!(
                covers(&fields, &key),
                "{}: key {} is not in docs/SPEC.md",
                path.display(),
                key.join(".")
            );
        }
        seen += 1;
    }
    assert!(
        seen >= 3,
        "only {seen} example configs found in {}",
        configs.display()
    );
}

#[test]
fn spec_reference_covers_every_key_of_the_readme_example() {
    let fields = spec_fields();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Job spec")
        .expect("README has a job spec section")..];
    let start = section.find("```toml\n").expect("a TOML example") + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let table: toml::Table = toml::from_str(&section[start..end]).unwrap();
    let mut keys = Vec::new();
    key_paths(&table, &mut Vec::new(), &mut keys);
    assert!(keys.len() > 20, "{keys:?}");
    for key in keys {
        assert!(
            covers(&fields, &key),
            "README.md: key {} is not in docs/SPEC.md",
            key.join(".")
        );
    }
}
