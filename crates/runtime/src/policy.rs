//! The worker policy: what a distributed worker lets a job use, set by the operator who runs
//! the worker and not by whoever submits the job. A job spec found in NATS names environment
//! variables to send as API keys, endpoints to send them (and the records) to, and buckets to
//! read and write with the worker's own credentials; the policy bounds all four, and a job
//! outside it is refused before any of them is touched.
//!
//! - `api_key_env`: variables a job may name as `llm.api_key_env`. None by default: without a
//!   policy, a job that names a key is refused.
//! - `llm_endpoints`: URLs (or patterns) a job's `llm.base_url` must fall under. None by
//!   default: without a policy only the simulated provider (no endpoint) runs.
//! - `inputs`, `outputs`: URL prefixes the job's input root and its output (and response
//!   cache) must fall under. Unrestricted when the policy leaves them out (the worker warns).
//!
//! A rule is a URL prefix compared at path-segment boundaries (`s3://data/in` covers
//! `s3://data/in/x` but not `s3://data/inbox`); `*` matches any run of characters but `/`
//! (`http://127.0.0.1:*/v1`). Both sides are normalised first (scheme and host case, default
//! ports, `.` and `..` segments, also percent-encoded), a URL with user information
//! (`http://allowed@evil/`) is never allowed, and neither is a path that still climbs with `..`.
//!
//! The embedded mode (`rubricmill run`) runs the user's own spec and has no policy.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rubricmill_core::spec::llm_stages;
use rubricmill_core::{JobSpec, ProviderKind, ShardSpec};
use rubricmill_store::JobManifest;
use serde::Deserialize;

/// Errors loading a policy: each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("worker policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("worker policy {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("worker policy field {field}: {value:?} {reason}")]
    Rule {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// The policy as written in its TOML file (or given by flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub api_key_env: Vec<String>,
    #[serde(default)]
    pub llm_endpoints: Vec<String>,
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    #[serde(default)]
    pub outputs: Option<Vec<String>>,
}

impl PolicyFile {
    /// Reads a policy file; unknown fields are errors naming the field.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| PolicyError::Parse {
            path: path.to_owned(),
            reason: e.message().to_owned(),
        })
    }

    /// Adds the rules of `other` to these (flags add to the file).
    pub fn merge(mut self, other: PolicyFile) -> Self {
        self.api_key_env.extend(other.api_key_env);
        self.llm_endpoints.extend(other.llm_endpoints);
        for (mine, theirs) in [
            (&mut self.inputs, other.inputs),
            (&mut self.outputs, other.outputs),
        ] {
            if let Some(theirs) = theirs {
                mine.get_or_insert_with(Vec::new).extend(theirs);
            }
        }
        self
    }
}

/// A checked policy, ready to judge jobs.
#[derive(Debug, Clone, Default)]
pub struct WorkerPolicy {
    api_key_env: BTreeSet<String>,
    llm_endpoints: Vec<UrlRule>,
    inputs: Option<Vec<UrlRule>>,
    outputs: Option<Vec<UrlRule>>,
}

/// Why a job is refused: the rule it breaks and the value that breaks it (never a secret: a
/// variable's name, a URL without its user information).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the worker policy: {what} {value} is not allowed by its rule {rule}{reason}")]
pub struct Refusal {
    /// The policy field: `api_key_env`, `llm_endpoints`, `inputs` or `outputs`.
    pub rule: &'static str,
    /// What in the job breaks it (`llm.api_key_env of stage judge`, `output.url`, …).
    pub what: String,
    pub value: String,
    /// More about why, starting with `: `, or empty.
    pub reason: String,
}

impl WorkerPolicy {
    /// Checks every rule of `file`.
    pub fn new(file: PolicyFile) -> Result<Self, PolicyError> {
        let mut api_key_env = BTreeSet::new();
        for var in file.api_key_env {
            let valid =
                !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(PolicyError::Rule {
                    field: "api_key_env",
                    value: var,
                    reason: "is not an environment variable name (letters, digits, '_')".into(),
                });
            }
            api_key_env.insert(var);
        }
        let rules = |field: &'static str, rules: Vec<String>| {
            rules
                .into_iter()
                .map(|rule| UrlRule::parse(&rule, field == "llm_endpoints"))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|(value, reason)| PolicyError::Rule {
                    field,
                    value,
                    reason,
                })
        };
        Ok(Self {
            api_key_env,
            llm_endpoints: rules("llm_endpoints", file.llm_endpoints)?,
            inputs: file.inputs.map(|r| rules("inputs", r)).transpose()?,
            outputs: file.outputs.map(|r| rules("outputs", r)).transpose()?,
        })
    }

    /// Policy fields that leave a kind of location unrestricted, for a warning at start.
    pub fn unrestricted(&self) -> Vec<&'static str> {
        let mut open = Vec::new();
        if self.inputs.is_none() {
            open.push("inputs");
        }
        if self.outputs.is_none() {
            open.push("outputs");
        }
        open
    }

    /// Judges a planned job before anything of it is read or sent: key variables and
    /// endpoints of every stage, the input root, the output and the response cache.
    pub fn check(&self, manifest: &JobManifest) -> Result<(), Refusal> {
        let spec = &manifest.spec;
        self.check_llm(spec)?;
        if let Some(inputs) = &self.inputs {
            check_location(inputs, "inputs", "the input root", &manifest.input_root)?;
        }
        if let Some(outputs) = &self.outputs {
            check_location(outputs, "outputs", "output.url", &spec.output.url)?;
            if let Some(cache) = &spec.llm.cache_url {
                check_location(outputs, "outputs", "llm.cache_url", cache)?;
            }
        }
        Ok(())
    }

    /// Judges the files one delivered shard reads (a shard names its files by URL, so it
    /// could name files outside the job's input root).
    pub fn check_shard(&self, shard: &ShardSpec) -> Result<(), Refusal> {
        let Some(inputs) = &self.inputs else {
            return Ok(());
        };
        for file in shard.unit.files() {
            check_location(inputs, "inputs", "a shard's input file", &file.url)?;
        }
        Ok(())
    }

    fn check_llm(&self, spec: &JobSpec) -> Result<(), Refusal> {
        for stage in llm_stages(spec.pipeline) {
            let llm = spec.llm.for_stage(stage);
            if llm.provider == ProviderKind::Simulated {
                continue;
            }
            if let Some(var) = &llm.api_key_env
                && !self.api_key_env.contains(var)
            {
                return Err(Refusal {
                    rule: "api_key_env",
                    what: format!("llm.api_key_env of stage {stage}"),
                    value: format!("${var}"),
                    reason: String::new(),
                });
            }
            // A provider's default URL (Anthropic's public API) is checked as if it were set.
            if let Some(base_url) = &llm.endpoint_url() {
                let what = format!("llm.base_url of stage {stage}");
                let url = NormalUrl::parse(base_url, true).map_err(|reason| Refusal {
                    rule: "llm_endpoints",
                    what: what.clone(),
                    value: shown(base_url),
                    reason: format!(": {reason}"),
                })?;
                if !self.llm_endpoints.iter().any(|rule| rule.covers(&url)) {
                    return Err(Refusal {
                        rule: "llm_endpoints",
                        what,
                        value: url.0,
                        reason: String::new(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn check_location(
    rules: &[UrlRule],
    rule: &'static str,
    what: &str,
    location: &str,
) -> Result<(), Refusal> {
    let refusal = |value: String, reason: String| Refusal {
        rule,
        what: what.to_owned(),
        value,
        reason,
    };
    let url =
        store_url(location).map_err(|reason| refusal(shown(location), format!(": {reason}")))?;
    let url = NormalUrl::parse(&url, false)
        .map_err(|reason| refusal(shown(location), format!(": {reason}")))?;
    if rules.iter().any(|r| r.covers(&url)) {
        return Ok(());
    }
    Err(refusal(url.0, String::new()))
}

/// A store location (URL or local path) as a URL.
fn store_url(location: &str) -> Result<String, String> {
    rubricmill_store::to_url(location)
        .map(|url| url.to_string())
        .map_err(|e| e.to_string())
}

/// A location for a message: user information removed, so no password is ever shown.
fn shown(location: &str) -> String {
    match url::Url::parse(location.trim()) {
        Ok(mut url) => {
            if !url.username().is_empty() || url.password().is_some() {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                return format!("{url} (with user information, removed here)");
            }
            url.to_string()
        }
        Err(_) if location.contains('@') => "<a URL that does not parse>".into(),
        Err(_) => format!("{location:?}"),
    }
}

/// A URL reduced to what decides where a request goes and what it names:
/// `scheme://host[:port]/path`, normalised by the same parser the HTTP client and the object
/// store use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NormalUrl(String);

impl NormalUrl {
    fn parse(text: &str, http_only: bool) -> Result<Self, String> {
        let text = text.trim();
        if text.chars().any(|c| c.is_control() || c == '\\') {
            return Err("holds a backslash or a control character".into());
        }
        let url = url::Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("carries user information (user@host)".into());
        }
        if http_only && !matches!(url.scheme(), "http" | "https") {
            return Err("is not an http(s) URL".into());
        }
        let decoded = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        if decoded.split('/').any(|segment| segment == "..") {
            return Err("climbs with '..'".into());
        }
        Ok(Self(url[..url::Position::AfterPath].to_owned()))
    }
}

/// One allowed URL prefix, possibly with `*` wildcards (each matching within one segment or
/// one authority part: never across `/`).
#[derive(Debug, Clone)]
struct UrlRule(String);

impl UrlRule {
    /// Normalises a rule as URLs are; a rule with `*` in its authority is kept as written,
    /// with its scheme and host lower-cased.
    fn parse(rule: &str, http_only: bool) -> Result<Self, (String, String)> {
        let fail = |reason: &str| (rule.to_owned(), reason.to_owned());
        let rule_text = rule.trim();
        if rule_text.is_empty() {
            return Err(fail("is empty"));
        }
        if rule_text.contains(['@', '?', '#', '\\']) {
            return Err(fail(
                "may not hold '@', '?', '#' or '\\' (a rule is scheme://host[:port]/path)",
            ));
        }
        let Some((scheme, rest)) = rule_text.split_once("://") else {
            if http_only {
                return Err(fail("is not a URL (write scheme://host[:port]/path)"));
            }
            // A local path.
            let url = store_url(rule_text).map_err(|e| fail(&e))?;
            return NormalUrl::parse(&url, false)
                .map(|u| Self(u.0))
                .map_err(|e| fail(&e));
        };
        let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('*') {
            if rest.split('/').any(|segment| segment == "..") {
                return Err(fail("climbs with '..'"));
            }
            if http_only && !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
                return Err(fail("is not an http(s) URL"));
            }
            let path = &rest[authority.len()..];
            let path = if path.is_empty() { "/" } else { path };
            return Ok(Self(format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                authority.to_ascii_lowercase()
            )));
        }
        NormalUrl::parse(rule_text, http_only)
            .map(|u| Self(u.0))
            .map_err(|e| fail(&e))
    }

    /// Whether the URL starts with this rule and ends there at a segment boundary.
    fn covers(&self, url: &NormalUrl) -> bool {
        let rule = self.0.as_bytes();
        let url = url.0.as_bytes();
        let at_boundary =
            |end: usize| end == url.len() || rule.last() == Some(&b'/') || url[end] == b'/';
        prefix_ends(rule, url).into_iter().any(at_boundary)
    }
}

/// Every length of a prefix of `text` that `pattern` matches in full (`*` matching any run of
/// bytes other than `/`).
fn prefix_ends(pattern: &[u8], text: &[u8]) -> Vec<usize> {
    let mut positions = vec![0usize];
    for &p in pattern {
        let mut next = Vec::new();
        for &at in &positions {
            if p == b'*' {
                let mut end = at;
                next.push(end);
                while end < text.len() && text[end] != b'/' {
                    end += 1;
                    next.push(end);
                }
            } else if text.get(at) == Some(&p) {
                next.push(at + 1);
            }
        }
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            return next;
        }
        positions = next;
    }
    positions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> WorkerPolicy {
        WorkerPolicy::new(toml::from_str(text).unwrap()).unwrap()
    }

    fn endpoint_allowed(policy: &WorkerPolicy, url: &str) -> bool {
        NormalUrl::parse(url, true).is_ok_and(|u| policy.llm_endpoints.iter().any(|r| r.covers(&u)))
    }

    #[test]
    fn endpoint_prefixes_hold_against_spelling_tricks() {
        let policy =
            policy(r#"llm_endpoints = ["https://llm.internal/v1", "http://127.0.0.1:*/v1"]"#);
        for allowed in [
            "https://llm.internal/v1",
            "https://llm.internal/v1/",
            "HTTPS://LLM.internal:443/v1",
            "https://llm.internal/v1/./chat",
            "http://127.0.0.1:8080/v1",
        ] {
            assert!(endpoint_allowed(&policy, allowed), "{allowed}");
        }
        for refused in [
            "https://llm.internal/v1evil",
            "https://llm.internal/v2",
            "https://llm.internal/v1/../admin",
            "https://llm.internal/v1/%2e%2e/admin",
            "https://llm.internal/v1/%2E%2E%2Fadmin",
            "https://llm.internal.evil.com/v1",
            "https://llm.internal@evil.com/v1",
            "https://user:pw@llm.internal/v1",
            "http://llm.internal/v1",
            "https://llm.internal:8443/v1",
            "https://evil.com\\@llm.internal/v1",
            "http://127.0.0.1:8080/v1/../../x",
            "http://127.0.0.1/v1",
            "http://127.0.0.2:80/v1",
            "ftp://llm.internal/v1",
        ] {
            assert!(!endpoint_allowed(&policy, refused), "{refused}");
        }
    }

    #[test]
    fn anthropics_default_endpoint_is_checked_like_a_set_one() {
        let spec = |llm: &str| {
            JobSpec::parse(
                std::path::Path::new("job.toml"),
                &format!(
                    "name = \"j\"\npipeline = \"crg\"\n[input]\nurl = \"in.jsonl\"\n[output]\nurl = \"out\"\n[llm]\n{llm}\n"
                ),
            )
            .unwrap()
        };
        let default_url = spec("provider = \"anthropic\"\nmodel = \"claude-x\"");
        let internal = policy(r#"llm_endpoints = ["https://llm.internal/v1"]"#);
        let refusal = internal.check_llm(&default_url).unwrap_err();
        assert_eq!(refusal.rule, "llm_endpoints");
        assert!(
            refusal.to_string().contains("https://api.anthropic.com"),
            "{refusal}"
        );
        let public = policy(r#"llm_endpoints = ["https://api.anthropic.com"]"#);
        assert!(public.check_llm(&default_url).is_ok());
        let azure = spec(
            "provider = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\napi_version = \"2024-10-21\"",
        );
        assert!(public.check_llm(&azure).is_err());
    }

    #[test]
    fn store_prefixes_end_at_segment_boundaries() {
        let policy = policy(
            r#"
inputs = ["s3://corpus/surveys", "/data/in/"]
outputs = ["s3://datasets/rubricmill/"]
"#,
        );
        let inputs = policy.inputs.as_ref().unwrap();
        let covered = |location: &str| check_location(inputs, "inputs", "input", location).is_ok();
        assert!(covered("s3://corpus/surveys/a.md"));
        assert!(covered("s3://corpus/surveys"));
        assert!(covered("/data/in/x.jsonl"));
        assert!(covered("file:///data/in/sub/x.jsonl"));
        assert!(!covered("s3://corpus/surveys-private/a.md"));
        assert!(!covered("s3://corpus/surveys/../secrets/a"));
        assert!(!covered("/data/in/../secret"));
        assert!(!covered("/data/inbox/x"));
        assert!(!covered("s3://other/surveys/a.md"));
        let outputs = policy.outputs.as_ref().unwrap();
        assert!(
            check_location(
                outputs,
                "outputs",
                "output.url",
                "s3://datasets/rubricmill/job"
            )
            .is_ok()
        );
        let refusal =
            check_location(outputs, "outputs", "output.url", "s3://attacker/drop").unwrap_err();
        assert_eq!(refusal.rule, "outputs");
        assert!(
            refusal.to_string().contains("s3://attacker/drop"),
            "{refusal}"
        );
    }

    #[test]
    fn unknown_fields_and_bad_rules_are_named() {
        let error = toml::from_str::<PolicyFile>("api_keys = [\"X\"]").unwrap_err();
        assert!(error.message().contains("api_keys"), "{error}");
        let error = WorkerPolicy::new(PolicyFile {
            llm_endpoints: vec!["http://allowed@evil/".into()],
            ..PolicyFile::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("llm_endpoints"), "{error}");
        let error = WorkerPolicy::new(PolicyFile {
            api_key_env: vec!["A=B".into()],
            ..PolicyFile::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("api_key_env"), "{error}");
    }

    #[test]
    fn messages_never_show_user_information() {
        let shown = shown("https://alice:hunter2@evil.com/v1");
        assert!(
            !shown.contains("hunter2") && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn wildcards_stay_within_one_segment() {
        let rule = UrlRule::parse("s3://bucket/*/out", false).unwrap();
        let url = |u: &str| NormalUrl::parse(u, false).unwrap();
        assert!(rule.covers(&url("s3://bucket/team-a/out/x")));
        assert!(!rule.covers(&url("s3://bucket/team-a/b/out/x")));
        assert!(!rule.covers(&url("s3://bucket/team-a/outside")));
    }
}
