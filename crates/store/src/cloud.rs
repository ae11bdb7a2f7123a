//! Cloud store settings beyond what object_store reads from the environment: S3 credentials
//! and region from the shared AWS files (`~/.aws/credentials`, `~/.aws/config`) when the
//! environment has none, as the AWS tools do.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// An S3 builder from the environment, completed from the profile files where the environment
/// is silent. Keys are passed to the builder and never logged.
pub fn s3_builder() -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env();
    let has_env_keys = std::env::var_os("AWS_ACCESS_KEY_ID").is_some();
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return builder;
    };
    let credentials_file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or(home.join(".aws/credentials"));
    let config_file = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or(home.join(".aws/config"));
    if !has_env_keys && let Some(section) = read_section(&credentials_file, &profile) {
        let pairs = [
            ("aws_access_key_id", AmazonS3ConfigKey::AccessKeyId),
            ("aws_secret_access_key", AmazonS3ConfigKey::SecretAccessKey),
            ("aws_session_token", AmazonS3ConfigKey::Token),
        ];
        for (name, key) in pairs {
            if let Some(value) = section.get(name) {
                builder = builder.with_config(key, value);
            }
        }
    }
    let config_section = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    if let Some(section) = read_section(&config_file, &config_section) {
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            && let Some(region) = section.get("region")
        {
            builder = builder.with_config(AmazonS3ConfigKey::Region, region);
        }
        if std::env::var_os("AWS_ENDPOINT").is_none()
            && std::env::var_os("AWS_ENDPOINT_URL").is_none()
            && let Some(endpoint) = section.get("endpoint_url")
        {
            builder = builder.with_config(AmazonS3ConfigKey::Endpoint, endpoint);
        }
    }
    builder
}

/// The `key = value` lines of `[section]` in an INI-style AWS file.
fn read_section(path: &PathBuf, section: &str) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_section(&text, section)
}

fn parse_section(text: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut values = HashMap::new();
    let mut inside = false;
    let mut found = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            found |= inside;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            values.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    found.then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_section_only() {
        let text = "[default]\naws_access_key_id = A\n\n[profile other]\nregion = eu-west-1\n# note\nendpoint_url=http://x\n";
        let default = parse_section(text, "default").unwrap();
        assert_eq!(
            default.get("aws_access_key_id").map(String::as_str),
            Some("A")
        );
        assert!(!default.contains_key("region"));
        let other = parse_section(text, "profile other").unwrap();
        assert_eq!(other.get("region").map(String::as_str), Some("eu-west-1"));
        assert_eq!(
            other.get("endpoint_url").map(String::as_str),
            Some("http://x")
        );
        assert!(parse_section(text, "missing").is_none());
    }
}
