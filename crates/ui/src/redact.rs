//! The job spec as the UI shows it: every value that could be a secret replaced. A spec names
//! the environment variables that hold secrets (`api_key_env`), which is fine to show, but a
//! header value, an object-store option or a URL's password could be one itself.

use rubricmill_core::JobSpec;
use rubricmill_core::secret::{REDACTED, is_secret_key, redact_secrets};
use serde_json::Value;

/// Maps whose every value is withheld: request headers can carry credentials under any name.
const WITHHELD_MAPS: &[&str] = &["headers"];

/// The spec as JSON with secrets replaced by `<redacted>`.
pub fn redacted_spec(spec: &JobSpec) -> Value {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    redact(&mut value);
    value
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if WITHHELD_MAPS.contains(&key.as_str()) {
                    if let Value::Object(entries) = child {
                        for entry in entries.values_mut() {
                            *entry = Value::String(REDACTED.to_owned());
                        }
                    }
                } else if is_secret_key(key) && !child.is_null() {
                    *child = Value::String(REDACTED.to_owned());
                } else {
                    redact(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => {
            if let std::borrow::Cow::Owned(redacted) = redact_secrets(text) {
                *text = redacted;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn header_values_and_url_passwords_are_withheld_but_env_names_shown() {
        let text = r#"
name = "secrets"
pipeline = "crg"
[input]
url = "pairs.jsonl"
[output]
url = "s3://bucket/out"
[llm]
provider = "openai"
base_url = "https://llm.example/v1"
model = "m"
api_key_env = "MY_KEY_VAR"
"#;
        let mut spec = JobSpec::parse(Path::new("secrets.toml"), text).unwrap();
        // Set after validation, which refuses some of these: the UI must hold even so.
        spec.llm.base_url = Some("https://user:hunter2pass@llm.example/v1".into());
        spec.llm
            .headers
            .insert("x-team".into(), "plain words but a header".into());
        spec.llm
            .headers
            .insert("x-other".into(), "sk-live-0123456789abcdefghij".into());
        let shown = redacted_spec(&spec).to_string();
        for secret in [
            "plain words but a header",
            "hunter2pass",
            "sk-live-0123456789abcdefghij",
        ] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("MY_KEY_VAR"), "{shown}");
        assert!(shown.contains("x-team"), "{shown}");
        assert!(shown.contains(REDACTED), "{shown}");
    }
}
