//! The job-spec reference (`docs/SPEC.md`), generated from the spec types so it cannot drift:
//! the types derive a JSON schema (doc comments become descriptions, serde's names, defaults and
//! `from` types are respected), [`spec_fields`] flattens that schema into one entry per TOML key,
//! and [`render_spec_reference`] writes the Markdown. A test compares the rendered text with the
//! committed file.

use serde_json::{Map, Value};

use crate::spec::JobSpec;

/// The placeholder segment for a key the user chooses (a stage name, a header name, …).
pub const USER_KEY: &str = "<name>";

/// One key of the job spec, as the reference documents it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecField {
    /// Dotted TOML path, e.g. `crg.max_resamples`; user-chosen keys are `<name>`, or the
    /// placeholder the schema names (`llm.stages.<stage>.model`).
    pub path: String,
    /// What the value is, in words (`integer`, `string`, `table of string`, …).
    pub kind: String,
    /// The value when the key is left out, written as TOML.
    pub default: FieldDefault,
    /// What the key means (the doc comment of the field).
    pub meaning: String,
    /// The values an enumerated key accepts, each with its meaning (may be empty).
    pub values: Vec<(String, String)>,
    /// An example line, `key = value`, when the field carries one.
    pub example: Option<String>,
    /// True for a table of named sub-tables or of named values (every key is the user's).
    pub is_map: bool,
    /// True for a table whose keys the reference lists one by one.
    pub is_table: bool,
}

/// The value a key takes when it is left out.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldDefault {
    /// The key must be written.
    Required,
    /// Left out means "not set"; the meaning says what that does.
    Unset,
    /// This TOML value.
    Value(String),
    /// A table whose own keys carry their defaults.
    Table,
    /// Optional, yet the schema states no default (a field skipped when serialised at its
    /// default needs `#[schemars(extend("default" = …))]`); the reference tests refuse it.
    Undocumented,
}

impl std::fmt::Display for FieldDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldDefault::Required => f.write_str("required"),
            FieldDefault::Unset => f.write_str("unset"),
            FieldDefault::Value(v) => write!(f, "`{v}`"),
            FieldDefault::Table => f.write_str("each key's default"),
            FieldDefault::Undocumented => f.write_str("(undocumented)"),
        }
    }
}

/// The JSON schema of the job spec as it is read (the deserialize contract), every subschema
/// inlined.
pub fn job_spec_schema() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<JobSpec>()
        .to_value()
}

/// Every key of the job spec, tables before their keys, in document order (top-level keys, then
/// each table with its keys sorted by name).
pub fn spec_fields() -> Vec<SpecField> {
    let schema = job_spec_schema();
    let mut out = Vec::new();
    walk_table(&schema, "", &mut out);
    out
}

fn walk_table(table: &Value, prefix: &str, out: &mut Vec<SpecField>) {
    let Some(properties) = table.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = table
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut keys: Vec<&String> = properties.keys().collect();
    keys.sort();
    // A table's plain keys first, then its sub-tables, so each table reads as one block.
    let mut nested = Vec::new();
    for key in keys {
        let schema = &properties[key.as_str()];
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let field = describe(schema, &path, required.contains(&key.as_str()));
        if field.is_table || sub_table_of_map(schema).is_some() {
            nested.push((field, schema));
        } else {
            out.push(field);
        }
    }
    for (field, schema) in nested {
        let path = field.path.clone();
        let is_table = field.is_table;
        out.push(field);
        let (_, inner) = strip_null(schema);
        if is_table {
            walk_table(inner, &path, out);
        } else if let Some((placeholder, entry)) = sub_table_of_map(schema) {
            walk_table(entry, &format!("{path}.{placeholder}"), out);
        }
    }
}

/// For a map of named tables (`llm.stages`), the placeholder of the name and the table's schema.
fn sub_table_of_map(schema: &Value) -> Option<(String, &Value)> {
    let (_, inner) = strip_null(schema);
    let entry = inner.get("additionalProperties")?;
    entry.get("properties")?;
    let placeholder = inner
        .get("x-key-name")
        .and_then(Value::as_str)
        .map_or_else(|| USER_KEY.to_owned(), |name| format!("<{name}>"));
    Some((placeholder, entry))
}

/// A nullable schema's non-null part, and whether it was nullable.
fn strip_null(schema: &Value) -> (bool, &Value) {
    for combinator in ["anyOf", "oneOf"] {
        if let Some(options) = schema.get(combinator).and_then(Value::as_array) {
            let non_null: Vec<&Value> = options.iter().filter(|o| !is_null(o)).collect();
            if non_null.len() == 1 && options.len() == 2 {
                return (true, non_null[0]);
            }
        }
    }
    let nullable = schema
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t == "null"));
    (nullable, schema)
}

fn is_null(schema: &Value) -> bool {
    schema.get("type").is_some_and(|t| t == "null")
        || schema.get("const").is_some_and(Value::is_null)
}

fn describe(schema: &Value, path: &str, required: bool) -> SpecField {
    let (nullable, inner) = strip_null(schema);
    let meaning = schema
        .get("description")
        .or_else(|| inner.get("description"))
        .and_then(Value::as_str)
        .map(paragraphs)
        .unwrap_or_default();
    let is_table = inner.get("properties").is_some();
    let is_map = !is_table && inner.get("additionalProperties").is_some();
    let default = if required {
        FieldDefault::Required
    } else if is_table && nullable {
        FieldDefault::Unset
    } else if is_table {
        FieldDefault::Table
    } else if let Some(value) = schema.get("default") {
        if value.is_null() {
            FieldDefault::Unset
        } else {
            FieldDefault::Value(toml_value(value, is_float(inner)))
        }
    } else if nullable || is_map {
        FieldDefault::Unset
    } else {
        FieldDefault::Undocumented
    };
    let key = path.rsplit('.').next().unwrap_or(path);
    let example = schema
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|examples| examples.first())
        .map(|example| format!("{key} = {}", toml_value(example, is_float(inner))));
    SpecField {
        path: path.to_owned(),
        kind: kind_of(inner),
        default,
        meaning,
        values: enum_values(inner),
        example,
        is_map,
        is_table,
    }
}

fn is_float(schema: &Value) -> bool {
    schema.get("type").is_some_and(|t| {
        t == "number"
            || t.as_array()
                .is_some_and(|types| types.iter().any(|t| t == "number"))
    })
}

/// The type of a value in words.
fn kind_of(schema: &Value) -> String {
    let (_, schema) = strip_null(schema);
    if !enum_values(schema).is_empty() {
        return "string (one of the values below)".into();
    }
    if schema.get("properties").is_some() {
        return "table".into();
    }
    if let Some(entry) = schema.get("additionalProperties") {
        if entry.get("properties").is_some() {
            return "table of tables".into();
        }
        return format!("table of {}", kind_of(entry));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    match types.as_slice() {
        ["array"] => match schema.get("items") {
            Some(items) => format!("array of {}", kind_of(items)),
            None => "array".into(),
        },
        ["integer"] => {
            let unsigned = schema.get("minimum").and_then(Value::as_f64) == Some(0.0)
                || schema
                    .get("format")
                    .and_then(Value::as_str)
                    .is_some_and(|f| f.starts_with("uint"));
            if unsigned {
                "integer (≥ 0)".into()
            } else {
                "integer".into()
            }
        }
        [single] => (*single).to_owned(),
        _ => "value".into(),
    }
}

/// The accepted values of an enumerated string, each with its meaning.
fn enum_values(schema: &Value) -> Vec<(String, String)> {
    let (_, schema) = strip_null(schema);
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .filter_map(Value::as_str)
            .map(|v| (v.to_owned(), String::new()))
            .collect();
    }
    let Some(options) = schema.get("oneOf").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut values = Vec::new();
    for option in options.iter().filter(|o| !is_null(o)) {
        let meaning = option
            .get("description")
            .and_then(Value::as_str)
            .map(paragraphs)
            .unwrap_or_default();
        if let Some(value) = option.get("const").and_then(Value::as_str) {
            values.push((value.to_owned(), meaning));
        } else if let Some(listed) = option.get("enum").and_then(Value::as_array) {
            for value in listed.iter().filter_map(Value::as_str) {
                values.push((value.to_owned(), meaning.clone()));
            }
        } else {
            return Vec::new();
        }
    }
    values
}

/// Doc-comment lines joined into paragraphs (a blank line separates them).
fn paragraphs(doc: &str) -> String {
    doc.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A JSON value written as a TOML value; `float` writes whole numbers with a `.0`, as TOML needs
/// for a float key.
pub fn toml_value(value: &Value, float: bool) -> String {
    match value {
        Value::Null => "\"\"".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64().filter(|_| !float) {
                return i.to_string();
            }
            if let Some(u) = n.as_u64().filter(|_| !float) {
                return u.to_string();
            }
            let x = n.as_f64().unwrap_or_default();
            // f32 defaults arrive widened (0.7 → 0.699999988…): print the shortest text that
            // reads back as the same f32 when that is exact.
            let text = if f64::from(x as f32) == x {
                (x as f32).to_string()
            } else {
                x.to_string()
            };
            if text.contains(['.', 'e', 'E', 'n', 'i']) {
                text
            } else {
                format!("{text}.0")
            }
        }
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|item| toml_value(item, float))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => toml_inline_table(map),
    }
}

fn toml_inline_table(map: &Map<String, Value>) -> String {
    if map.is_empty() {
        return "{}".into();
    }
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    // Sorted here: the map's own order depends on serde_json's features in the build.
    let mut sorted: Vec<(&String, &Value)> = map.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let entries: Vec<String> = sorted
        .into_iter()
        .map(|(k, v)| {
            let key = if bare(k) {
                k.clone()
            } else {
                serde_json::to_string(k).unwrap_or_default()
            };
            format!("{key} = {}", toml_value(v, false))
        })
        .collect();
    format!("{{ {} }}", entries.join(", "))
}

/// Whether a dotted key path written in a job spec is a key the reference documents: user-chosen
/// segments match a placeholder, and anything below a map of values is the user's.
pub fn reference_covers(fields: &[SpecField], path: &[&str]) -> bool {
    fields.iter().any(|field| {
        let documented: Vec<&str> = field.path.split('.').collect();
        let matches_prefix = |n: usize| {
            documented
                .iter()
                .zip(path)
                .take(n)
                .all(|(d, p)| d == p || (d.starts_with('<') && d.ends_with('>')))
        };
        if documented.len() == path.len() {
            return matches_prefix(path.len());
        }
        field.is_map && path.len() == documented.len() + 1 && matches_prefix(documented.len())
    })
}

/// The Markdown of `docs/SPEC.md`.
pub fn render_spec_reference() -> String {
    let fields = spec_fields();
    let mut md = String::new();
    md.push_str(
        "<!-- Generated from the job-spec types (crates/core/src/spec.rs) by \
         crates/core/src/spec_reference.rs.\n     Do not edit: change the doc comments, then run \
         `RUBRICMILL_UPDATE_SPEC=1 cargo test -p rubricmill-core --test spec_reference`. -->\n\n",
    );
    md.push_str("# Job spec reference\n\n");
    md.push_str(
        "A job is one TOML file. This page lists every key it may hold: its type, the value it \
         takes when left out, what it means and, where it helps, an example. Unknown keys are \
         errors, and `rubricmill validate JOB.toml` checks a spec (values, inputs, the plan) \
         without calling any model. Secrets never go in the file: keys that take a secret take \
         the *name* of the environment variable holding it. `configs/` has complete examples.\n\n",
    );
    md.push_str("Tables:\n\n");
    md.push_str("- [Top level](#top-level)\n");
    for field in fields.iter().filter(|f| f.is_table || is_map_of_tables(f)) {
        md.push_str(&format!(
            "- [`[{}]`](#{})\n",
            field.path,
            anchor(&field.path)
        ));
    }
    md.push_str("\n## Top level\n\n");
    for field in &fields {
        if field.is_table || is_map_of_tables(field) {
            md.push_str(&format!("## `[{}]`\n\n", field.path));
            push_meaning(&mut md, field);
            if field.default == FieldDefault::Unset {
                md.push_str("Optional: leave the table out and it is unset.\n\n");
            }
            if let Some(example) = &field.example {
                md.push_str(&format!("Example: `{example}`\n\n"));
            }
            if is_map_of_tables(field) {
                md.push_str(&format!(
                    "A table of tables: each `[{}]` holds the keys below.\n\n",
                    child_table_path(&fields, field)
                ));
            }
            continue;
        }
        md.push_str(&format!("### `{}`\n\n", field.path));
        md.push_str(&format!(
            "- Type: {}\n- Default: {}\n",
            field.kind, field.default
        ));
        if let Some(example) = &field.example {
            md.push_str(&format!("- Example: `{example}`\n"));
        }
        md.push('\n');
        push_meaning(&mut md, field);
        if !field.values.is_empty() {
            md.push_str("Values:\n\n");
            for (value, meaning) in &field.values {
                if meaning.is_empty() {
                    md.push_str(&format!("- `\"{value}\"`\n"));
                } else {
                    md.push_str(&format!(
                        "- `\"{value}\"`: {}\n",
                        meaning.replace('\n', " ")
                    ));
                }
            }
            md.push('\n');
        }
    }
    while md.ends_with("\n\n") {
        md.pop();
    }
    md
}

fn push_meaning(md: &mut String, field: &SpecField) {
    if !field.meaning.is_empty() {
        md.push_str(&field.meaning);
        md.push_str("\n\n");
    }
}

fn is_map_of_tables(field: &SpecField) -> bool {
    field.kind == "table of tables"
}

fn child_table_path(fields: &[SpecField], map: &SpecField) -> String {
    let prefix = format!("{}.", map.path);
    fields
        .iter()
        .find_map(|f| f.path.strip_prefix(&prefix))
        .and_then(|rest| rest.split('.').next())
        .map_or_else(
            || format!("{}.{USER_KEY}", map.path),
            |placeholder| format!("{}.{placeholder}", map.path),
        )
}

/// The anchor GitHub gives a heading `` `[path]` ``: lowercase, punctuation but `-` and `_`
/// dropped.
fn anchor(path: &str) -> String {
    path.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn toml_values_read_back_as_written() {
        assert_eq!(toml_value(&json!(f64::from(0.7f32)), true), "0.7");
        assert_eq!(toml_value(&json!(0.0), true), "0.0");
        assert_eq!(toml_value(&json!(3), true), "3.0");
        assert_eq!(toml_value(&json!(3), false), "3");
        assert_eq!(toml_value(&json!("a \"b\""), false), r#""a \"b\"""#);
        assert_eq!(
            toml_value(&json!({"b": 1, "a b": ["x"]}), false),
            r#"{ "a b" = ["x"], b = 1 }"#
        );
        for (value, float) in [(json!(0.1), true), (json!({"X-Title": "t"}), false)] {
            let text = format!("v = {}", toml_value(&value, float));
            toml::from_str::<toml::Table>(&text).unwrap();
        }
    }
}
