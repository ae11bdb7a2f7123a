//! Structured answers: finding the JSON object in a model's text (code fences, prose around it,
//! trailing commas) and checking it against the request's JSON Schema. The validator covers
//! the subset rubricmill's schemas use: `type` (one or a list), `required`, `properties`,
//! `items`, `enum`, `minItems`, `maxItems`, `minLength`. It ignores `additionalProperties`:
//! schemas close their objects for OpenAI's strict mode (see [`strict_compatible`]), where the
//! server enforces it, and an extra field in an answer sent in JSON mode or under plain
//! instructions is harmless, so every mode accepts the same answers.

use serde_json::Value;

/// The JSON object in a model's answer.
pub fn extract_json(answer: &str) -> Result<Value, String> {
    let start = answer
        .find('{')
        .ok_or_else(|| "answer holds no JSON object".to_owned())?;
    let end = answer
        .rfind('}')
        .filter(|end| *end > start)
        .ok_or_else(|| "answer holds no complete JSON object".to_owned())?;
    let candidate = &answer[start..=end];
    match serde_json::from_str(candidate) {
        Ok(value) => Ok(value),
        Err(first) => serde_json::from_str(&strip_trailing_commas(candidate))
            .map_err(|_| format!("invalid JSON: {first}")),
    }
}

fn strip_trailing_commas(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    let chars: Vec<char> = json.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
        if c == ',' && next.is_some_and(|n| *n == ']' || *n == '}') {
            continue;
        }
        out.push(c);
    }
    out
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    let actual = type_name(value);
    actual == expected || (expected == "number" && actual == "integer")
}

/// Checks `value` against `schema`; the error names the path of the first problem.
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    validate_at(value, schema, "$")
}

fn validate_at(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    match schema.get("type") {
        Some(Value::String(expected)) if !type_matches(expected, value) => {
            return Err(format!(
                "{path}: expected {expected}, found {}",
                type_name(value)
            ));
        }
        Some(Value::Array(options))
            if !options
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, value)) =>
        {
            return Err(format!(
                "{path}: expected one of {options:?}, found {}",
                type_name(value)
            ));
        }
        _ => {}
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!(
            "{path}: {value} is not one of {}",
            Value::Array(options.clone())
        ));
    }
    if let (Some(min), Value::String(text)) =
        (schema.get("minLength").and_then(Value::as_u64), value)
        && (text.chars().count() as u64) < min
    {
        return Err(format!("{path}: shorter than {min} characters"));
    }
    if let Value::Object(map) = value {
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(required) {
                return Err(format!("{path}: missing required field `{required}`"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                if let Some(field) = map.get(name) {
                    validate_at(field, property, &format!("{path}.{name}"))?;
                }
            }
        }
    }
    if let Value::Array(items) = value {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            return Err(format!(
                "{path}: {} items, at most {max} allowed",
                items.len()
            ));
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            return Err(format!(
                "{path}: {} items, at least {min} needed",
                items.len()
            ));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                validate_at(item, item_schema, &format!("{path}[{index}]"))?;
            }
        }
    }
    Ok(())
}

/// True when OpenAI's strict structured output accepts `schema`: the root is an object, every
/// object schema has `additionalProperties: false` and lists each of its properties in
/// `required`, and only `properties`, `items` and `anyOf` nest schemas (`oneOf`, `allOf`, `not`
/// and `$ref` are not checked through, so they count as incompatible). Strict mode makes the
/// server follow the schema exactly; a schema with optional fields cannot use it without
/// changing which answers it accepts.
pub fn strict_compatible(schema: &Value) -> bool {
    schema.as_object().is_some_and(declares_object) && strict_node(schema)
}

fn declares_object(schema: &serde_json::Map<String, Value>) -> bool {
    match schema.get("type") {
        Some(Value::String(kind)) => kind == "object",
        Some(Value::Array(kinds)) => kinds.iter().any(|k| k == "object"),
        _ => false,
    }
}

fn strict_node(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else {
        return false;
    };
    if ["oneOf", "allOf", "not", "$ref"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return false;
    }
    if declares_object(map) || map.contains_key("properties") {
        if map.get("additionalProperties") != Some(&Value::Bool(false)) {
            return false;
        }
        let none = serde_json::Map::new();
        let properties = match map.get("properties") {
            None => &none,
            Some(Value::Object(properties)) => properties,
            Some(_) => return false,
        };
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !properties.keys().all(|k| required.contains(&k.as_str())) {
            return false;
        }
        if !properties.values().all(strict_node) {
            return false;
        }
    }
    let nested_ok = |key: &str| match map.get(key) {
        None => true,
        Some(Value::Array(schemas)) => schemas.iter().all(strict_node),
        Some(single) => key == "items" && strict_node(single),
    };
    nested_ok("items") && nested_ok("anyOf")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_json_from_fences_prose_and_trailing_commas() {
        let answer = "Sure! Here it is:\n```json\n{\"a\": [1, 2,], \"b\": \"x, }\",}\n```\nThanks";
        let value = extract_json(answer).unwrap();
        assert_eq!(value["a"], json!([1, 2]));
        assert_eq!(value["b"], "x, }");
        assert!(extract_json("no json here").is_err());
        assert!(extract_json("{\"a\": }").is_err());
        assert!(extract_json("} {").is_err());
    }

    #[test]
    fn validation_names_the_path_of_the_first_problem() {
        let schema = json!({
            "type": "object",
            "required": ["items"],
            "properties": {"items": {"type": "array", "maxItems": 2, "items": {
                "type": "object", "required": ["kind"],
                "properties": {"kind": {"type": "string", "enum": ["a", "b"]}, "note": {"type": ["string", "null"]}}
            }}}
        });
        assert!(validate(&json!({"items": [{"kind": "a", "note": null}]}), &schema).is_ok());
        let error =
            validate(&json!({"items": [{"kind": "a"}, {"kind": "c"}]}), &schema).unwrap_err();
        assert!(error.starts_with("$.items[1].kind"), "{error}");
        assert!(
            validate(&json!({}), &schema)
                .unwrap_err()
                .contains("missing required field `items`")
        );
        assert!(
            validate(
                &json!({"items": [{"kind": "a"}, {"kind": "a"}, {"kind": "a"}]}),
                &schema
            )
            .unwrap_err()
            .contains("at most 2")
        );
        assert!(
            validate(&json!({"items": [{"kind": "a", "note": 3}]}), &schema)
                .unwrap_err()
                .contains("note")
        );
    }

    #[test]
    fn strict_compatible_needs_closed_objects_with_every_property_required() {
        let closed = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["items", "note"],
            "properties": {
                "items": {"type": "array", "maxItems": 3, "items": {
                    "type": "object", "additionalProperties": false, "required": ["kind"],
                    "properties": {"kind": {"type": "string", "enum": ["a", "b"]}}
                }},
                "note": {"anyOf": [
                    {"type": "null"},
                    {"type": "object", "additionalProperties": false, "required": [], "properties": {}}
                ]}
            }
        });
        assert!(strict_compatible(&closed));
        let mut open_item = closed.clone();
        open_item["properties"]["items"]["items"]
            .as_object_mut()
            .unwrap()
            .remove("additionalProperties");
        assert!(!strict_compatible(&open_item), "a nested object is open");
        let mut optional = closed.clone();
        optional["required"] = json!(["items"]);
        assert!(!strict_compatible(&optional), "note is optional");
        let mut open_variant = closed.clone();
        open_variant["properties"]["note"]["anyOf"][1]["additionalProperties"] = json!(true);
        assert!(
            !strict_compatible(&open_variant),
            "an anyOf variant is open"
        );
        let mut one_of = closed.clone();
        one_of["properties"]["note"] = json!({"oneOf": [{"type": "null"}, {"type": "string"}]});
        assert!(!strict_compatible(&one_of));
        assert!(!strict_compatible(&json!({"type": "object"})));
        assert!(
            !strict_compatible(&json!({"type": "string"})),
            "the root is an object"
        );
        assert!(!strict_compatible(&json!(true)));
    }

    #[test]
    fn additional_properties_are_not_enforced_locally() {
        let schema = json!({
            "type": "object", "additionalProperties": false, "required": ["a"],
            "properties": {"a": {"type": "string"}}
        });
        assert!(validate(&json!({"a": "x", "extra": 1}), &schema).is_ok());
        assert!(validate(&json!({"a": 1}), &schema).is_err());
    }
}
