//! Turning what a user writes (`s3://bucket/prefix/*.jsonl.gz`, `file:///data`, `data/surveys`)
//! into an object store, a path inside it and, for inputs, a glob to match. Local paths are made
//! absolute so a planned job means the same thing on every worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{Glob, GlobMatcher};
use object_store::ObjectStore;
use object_store::path::Path;
use url::Url;

use crate::StoreError;

/// An object store plus the path inside it that a URL addressed.
#[derive(Clone)]
pub struct StoreLocation {
    pub store: Arc<dyn ObjectStore>,
    /// Path inside the store (no leading slash).
    pub path: Path,
    /// The URL with everything up to the path, used to print full object URLs.
    base: Url,
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreLocation({})", self.url_of(&self.path))
    }
}

impl StoreLocation {
    /// Opens the store a URL or local path points at. Cloud stores take their settings from the
    /// standard environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`: credentials, region, endpoint,
    /// `AWS_ALLOW_HTTP`, `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, …); for S3 without keys in the
    /// environment, the `AWS_PROFILE` (or `default`) profile of `~/.aws/credentials` is used.
    pub fn parse(location: &str) -> Result<Self, StoreError> {
        Self::parse_with(location, &BTreeMap::new())
    }

    /// Like [`StoreLocation::parse`], with settings (`aws_endpoint`, `aws_region`, …) that
    /// take precedence over the environment's.
    pub fn parse_with(
        location: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, StoreError> {
        let url = to_url(location)?;
        let bad = |reason: String| StoreError::Url {
            url: location.to_owned(),
            reason,
        };
        let (store, path): (Box<dyn ObjectStore>, Path) = match url.scheme() {
            "s3" | "s3a" => {
                let mut builder = crate::cloud::s3_builder();
                for (key, value) in options {
                    if let Ok(key) = key.parse() {
                        builder = builder.with_config(key, value);
                    }
                }
                let store = builder
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                (Box::new(store), url_path(&url).map_err(bad)?)
            }
            "gs" => {
                let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                (Box::new(store), url_path(&url).map_err(bad)?)
            }
            "az" | "abfs" | "abfss" | "azure" => {
                let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                (Box::new(store), url_path(&url).map_err(bad)?)
            }
            _ => object_store::parse_url(&url).map_err(|source| bad(source.to_string()))?,
        };
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        Ok(Self {
            store: Arc::from(store),
            path,
            base,
        })
    }

    /// Full URL of an object in this store, for provenance and messages.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}{}", self.base, path)
    }

    /// A location for a path below this one.
    pub fn child(&self, part: &str) -> Self {
        Self {
            store: self.store.clone(),
            path: self.path.clone().join(part),
            base: self.base.clone(),
        }
    }

    /// Resolves a full object URL back to a path in this store; `None` when it points elsewhere.
    pub fn path_of_url(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(self.base.as_str())?;
        Path::parse(rest).ok()
    }
}

/// The object path a cloud URL names (everything after the bucket or container).
fn url_path(url: &Url) -> Result<Path, String> {
    Path::from_url_path(url.path()).map_err(|e| e.to_string())
}

/// Turns a user-written location into a URL: URLs with a scheme pass through, local paths are
/// made absolute against the working directory.
pub fn to_url(location: &str) -> Result<Url, StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: location.to_owned(),
        reason,
    };
    if location.contains("://") {
        return Url::parse(location).map_err(|e| bad(e.to_string()));
    }
    let path = std::path::Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| bad(format!("cannot read the working directory: {e}")))?
            .join(path)
    };
    let normalized = normalize_path(&absolute);
    // Url::from_file_path percent-encodes glob characters; keep them literal for matching.
    let text = normalized
        .to_str()
        .ok_or_else(|| bad("path is not valid UTF-8".into()))?;
    Url::parse(&format!("file://{text}")).map_err(|e| bad(e.to_string()))
}

/// Removes `.` and `..` components without touching the file system (the path may not exist).
fn normalize_path(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// An input location split into the fixed prefix to list and the glob the rest must match.
#[derive(Debug, Clone)]
pub struct InputPattern {
    pub location: StoreLocation,
    /// `None` when the URL names a single object or a whole folder.
    pub glob: Option<GlobMatcher>,
    pub pattern: String,
}

impl InputPattern {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        Self::parse_with(url, &BTreeMap::new())
    }

    pub fn parse_with(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        let glob_at = url.find(['*', '?', '[', '{']);
        let Some(glob_at) = glob_at else {
            return Ok(Self {
                location: StoreLocation::parse_with(url, options)?,
                glob: None,
                pattern: url.to_owned(),
            });
        };
        // The listable prefix is everything up to the last '/' before the first glob character.
        let slash = url[..glob_at].rfind('/').ok_or_else(|| StoreError::Url {
            url: url.to_owned(),
            reason: "a glob needs a folder before it (e.g. data/*.jsonl)".into(),
        })?;
        let prefix = &url[..slash];
        let prefix = if prefix.is_empty() { "/" } else { prefix };
        let location = StoreLocation::parse_with(prefix, options)?;
        let full_pattern = format!("{}/{}", location.path, &url[slash + 1..]);
        let full_pattern = full_pattern.trim_start_matches('/').to_owned();
        let glob = Glob::new(&full_pattern)
            .map_err(|e| StoreError::Url {
                url: url.to_owned(),
                reason: format!("bad glob: {e}"),
            })?
            .compile_matcher();
        Ok(Self {
            location,
            glob: Some(glob),
            pattern: url.to_owned(),
        })
    }

    pub fn matches(&self, path: &Path) -> bool {
        match &self.glob {
            Some(glob) => glob.is_match(path.as_ref()),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute_file_urls() {
        let url = to_url("data/../samples/*.md").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/samples/*.md"), "{url}");
        assert!(!url.path().contains(".."));
    }

    #[test]
    fn glob_splits_into_prefix_and_matcher() {
        let pattern = InputPattern::parse("file:///data/surveys/**/*.md").unwrap();
        assert_eq!(pattern.location.path.as_ref(), "data/surveys");
        assert!(pattern.matches(&Path::from("data/surveys/cs/a.md")));
        assert!(!pattern.matches(&Path::from("data/surveys/cs/a.txt")));
        assert!(!pattern.matches(&Path::from("data/other/a.md")));
    }

    #[test]
    fn url_of_round_trips() {
        let location = StoreLocation::parse("file:///tmp/out").unwrap();
        let url = location.url_of(&location.path.clone().join("job.json"));
        assert_eq!(url, "file:///tmp/out/job.json");
        assert_eq!(
            location.path_of_url(&url).unwrap().as_ref(),
            "tmp/out/job.json"
        );
    }
}
