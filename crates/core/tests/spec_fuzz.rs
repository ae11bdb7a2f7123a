//! Property tests of the job-spec parser, the first reader of untrusted text: whatever the
//! text, parsing returns a spec or an error (never panics), and a credential pasted anywhere
//! into a spec never appears in the error.

use std::path::Path;

use proptest::prelude::*;
use rubricmill_core::JobSpec;

const VALID: &str = r#"name = "fuzz"
pipeline = "crg"
[input]
url = "data/pairs.jsonl"
records_per_shard = 10
[output]
url = "out"
[llm]
provider = "openai"
base_url = "https://api.example.com/v1"
model = "m"
api_key_env = "OPENAI_API_KEY"
[crg]
consistency_filter = true
"#;

/// Ways a key ends up in a spec: as a value of a known or unknown field, of the wrong type,
/// unquoted, as a table name, on a line of its own, or in an unterminated string.
fn placements(secret: &str) -> Vec<String> {
    vec![
        format!("api_key = \"{secret}\""),
        format!("key = '{secret}'"),
        format!("max_tokens = \"{secret}\""),
        format!("model = {secret}"),
        format!("[{secret}]"),
        secret.to_string(),
        format!("url = \"{secret}"),
        format!("headers = {{ Authorization = \"Bearer {secret}\" }}"),
        format!("api_key_env = \"{secret}\""),
        format!("base_url = \"https://user:{secret}@example.com/v1\""),
    ]
}

/// Credentials of the shapes providers issue.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "sk-(proj-)?[A-Za-z0-9]{24,40}",
        "sk-ant-api03-[A-Za-z0-9_-]{30}",
        "hf_[A-Za-z]{10}[0-9]{4}[A-Za-z]{10}",
        "AKIA[A-Z0-9]{16}",
        "[a-z]{6}[0-9]{3}[A-Z]{6}[0-9]{3}[a-z]{6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = JobSpec::parse(Path::new("fuzz.toml"), &text);
    }

    #[test]
    fn spec_shaped_text_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                "\\[[a-z_.]{1,12}\\]",
                "[a-z_]{1,16} = [0-9]{1,12}",
                "[a-z_]{1,16} = \"[^\"\\\\]{0,30}\"",
                "[a-z_]{1,16} = \\[[0-9, ]{0,20}\\]",
                "[a-z_]{1,16} = \\{ [a-z]{1,5} = [0-9]{1,3} \\}",
                "[a-z_]{1,16} = (true|false|-?[0-9]+\\.[0-9]+|inf|nan)",
            ],
            0..24,
        )
    ) {
        let _ = JobSpec::parse(Path::new("fuzz.toml"), &lines.join("\n"));
    }

    #[test]
    fn a_pasted_credential_never_reaches_the_error(
        secret in secret(),
        placement in 0usize..10,
        line in 0usize..16,
    ) {
        let mut lines: Vec<String> = VALID.lines().map(str::to_owned).collect();
        let at = line.min(lines.len());
        lines.insert(at, placements(&secret)[placement].clone());
        let text = lines.join("\n");
        if let Err(error) = JobSpec::parse(Path::new("fuzz.toml"), &text) {
            let message = error.to_string();
            prop_assert!(
                !message.contains(&secret),
                "the error echoes the credential: {}",
                message
            );
        }
    }
}

#[test]
fn the_base_spec_is_valid() {
    // The property above inserts into a valid spec: make sure it is one.
    JobSpec::parse(Path::new("fuzz.toml"), VALID).unwrap();
}
