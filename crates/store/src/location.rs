//! Turning what a user writes (`s3://bucket/prefix/*.jsonl.gz`, `file:///data`, `data/surveys`)
//! into an object store, a path inside it and, for inputs, a glob to match. Local paths are made
//! absolute so a planned job means the same thing on every worker, and they are taken
//! literally: a folder named `a#b`, `50%` or `what?` is that folder, because every path segment
//! is percent-encoded on its way into a URL and decoded on its way out. In an input pattern,
//! the glob starts at the first segment holding `*`, `?`, `[` or `{` (unless the path exists as
//! written); `*` stays within one folder, `**` crosses folders, `{a,b}` is either.

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};
use object_store::ObjectStore;
use object_store::path::Path;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use url::Url;

use crate::StoreError;
use crate::requests::{CountingStore, RequestCounts, RequestTally};

/// An object store plus the path inside it that a URL addressed.
#[derive(Clone)]
pub struct StoreLocation {
    pub store: Arc<dyn ObjectStore>,
    /// Path inside the store (no leading slash).
    pub path: Path,
    /// The URL with everything up to the path, used to print full object URLs.
    base: Url,
    /// Requests made through `store` (shared by every location derived from this one).
    requests: Arc<RequestCounts>,
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
        let requests = Arc::new(RequestCounts::default());
        let counted = CountingStore::new(Arc::from(store), requests.clone());
        Ok(Self {
            store: Arc::new(counted),
            path,
            base,
            requests,
        })
    }

    /// Full URL of an object in this store, for provenance and messages; it parses back to
    /// the same object whatever characters the object's name holds.
    pub fn url_of(&self, path: &Path) -> String {
        format!("{}{}", self.base, encode_path(path.as_ref()))
    }

    /// The local file or folder a path of this store is, for `file://` stores.
    pub fn local_path(&self, path: &Path) -> Option<std::path::PathBuf> {
        (self.base.scheme() == "file").then(|| std::path::Path::new("/").join(path.as_ref()))
    }

    /// Whether both locations are in the same store (scheme, bucket or host).
    pub fn same_store(&self, other: &StoreLocation) -> bool {
        self.base == other.base
    }

    /// A location for a path below this one.
    pub fn child(&self, part: &str) -> Self {
        Self {
            store: self.store.clone(),
            path: self.path.clone().join(part),
            base: self.base.clone(),
            requests: self.requests.clone(),
        }
    }

    /// The requests made to this store so far, through this location and every location
    /// opened from it.
    pub fn requests(&self) -> RequestTally {
        self.requests.tally()
    }

    /// Resolves a full object URL back to a path in this store; `None` when it points elsewhere.
    pub fn path_of_url(&self, url: &str) -> Option<Path> {
        let rest = url.strip_prefix(self.base.as_str())?;
        Path::from_url_path(rest).ok()
    }
}

/// The object path a cloud URL names (everything after the bucket or container).
fn url_path(url: &Url) -> Result<Path, String> {
    Path::from_url_path(url.path()).map_err(|e| e.to_string())
}

/// Characters percent-encoded in each path segment of a URL this crate writes: those a URL
/// gives a meaning to (`%`, `#`, `?`, space, …) and the glob characters, so that a segment read
/// back from the URL is the name it was, and never a pattern.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'[')
    .add(b']')
    .add(b'*')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

/// A `/`-separated path with each segment percent-encoded for a URL.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Turns a user-written location into a URL: URLs with a scheme pass through, local paths are
/// made absolute against the working directory and taken literally (every character of a
/// folder's name, `#`, `?` and `%` included, names that folder).
pub fn to_url(location: &str) -> Result<Url, StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: location.to_owned(),
        reason,
    };
    if location.contains("://") {
        return Url::parse(location).map_err(|e| bad(e.to_string()));
    }
    let text = absolute_local_path(location)?;
    Url::parse(&format!("file://{}", encode_path(&text))).map_err(|e| bad(e.to_string()))
}

/// A URL for people to read: a `file://` URL as the local path it names (decoded), any other
/// URL as it is.
pub fn display_location(url: &str) -> String {
    Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "file")
        .and_then(|u| u.to_file_path().ok())
        .map_or_else(|| url.to_owned(), |path| path.display().to_string())
}

/// An input pattern as a URL string that every worker reads the same way: URLs pass through; a
/// local pattern becomes the encoded URL of the folder it lists, followed by the glob as
/// written. A local path that exists as written is taken literally, glob characters and all.
pub fn absolute_input_pattern(pattern: &str) -> Result<String, StoreError> {
    if pattern.contains("://") {
        return Ok(pattern.to_owned());
    }
    let text = absolute_local_path(pattern)?;
    let Some(glob_at) = text.find(GLOB_CHARS) else {
        return Ok(to_url(&text)?.to_string());
    };
    if std::fs::symlink_metadata(&text).is_ok() {
        return Ok(to_url(&text)?.to_string());
    }
    // The folder to list is everything up to the last '/' before the first glob character.
    let slash = text[..glob_at].rfind('/').unwrap_or(0);
    let folder = to_url(if slash == 0 { "/" } else { &text[..slash] })?;
    Ok(format!(
        "{}/{}",
        folder.as_str().trim_end_matches('/'),
        &text[slash + 1..]
    ))
}

/// The characters that start a glob.
const GLOB_CHARS: [char; 4] = ['*', '?', '[', '{'];

/// A local path made absolute and free of `.` and `..`, as UTF-8.
fn absolute_local_path(location: &str) -> Result<String, StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: location.to_owned(),
        reason,
    };
    let path = std::path::Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| bad(format!("cannot read the working directory: {e}")))?
            .join(path)
    };
    normalize_path(&absolute)
        .to_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("path is not valid UTF-8".into()))
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
    /// The pattern as the user wrote it, for messages.
    pub pattern: String,
    /// Folders below the listed one that a match can lie in (`None`: any, for `**` or a
    /// whole folder).
    depth: Option<usize>,
}

/// The folder depth a glob below the listed folder reaches: `*.jsonl` is 0, `a/*/b.md` is 2;
/// `**`, or a `/` inside braces, reaches any depth (listing then walks the whole folder).
fn glob_depth(glob: &str) -> Option<usize> {
    let mut in_braces = 0usize;
    let mut depth = 0usize;
    for c in glob.chars() {
        match c {
            '{' => in_braces += 1,
            '}' => in_braces = in_braces.saturating_sub(1),
            '/' if in_braces > 0 => return None,
            '/' => depth += 1,
            _ => {}
        }
    }
    (!glob.contains("**")).then_some(depth)
}

impl InputPattern {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        Self::parse_with(url, &BTreeMap::new())
    }

    pub fn parse_with(url: &str, options: &BTreeMap<String, String>) -> Result<Self, StoreError> {
        let written = url;
        let url = absolute_input_pattern(url)?;
        let Some(glob_at) = url.find(GLOB_CHARS) else {
            return Ok(Self {
                location: StoreLocation::parse_with(&url, options)?,
                glob: None,
                pattern: written.to_owned(),
                depth: None,
            });
        };
        // The listable prefix is everything up to the last '/' before the first glob character.
        let slash = url[..glob_at].rfind('/').ok_or_else(|| StoreError::Url {
            url: written.to_owned(),
            reason: "a glob needs a folder before it (e.g. data/*.jsonl)".into(),
        })?;
        let prefix = &url[..slash];
        let prefix = if prefix.is_empty() { "/" } else { prefix };
        let location = StoreLocation::parse_with(prefix, options)?;
        // The folder's own name is matched literally; only the part after it is a glob.
        let full_pattern = format!(
            "{}/{}",
            globset::escape(location.path.as_ref()),
            &url[slash + 1..]
        );
        let full_pattern = full_pattern.trim_start_matches('/').to_owned();
        let glob = GlobBuilder::new(&full_pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| StoreError::Url {
                url: written.to_owned(),
                reason: format!("bad glob: {e}"),
            })?
            .compile_matcher();
        let depth = glob_depth(&url[slash + 1..]);
        Ok(Self {
            location,
            glob: Some(glob),
            pattern: written.to_owned(),
            depth,
        })
    }

    /// How many folders below the listed one a match can lie (`None`: any number).
    pub fn max_depth(&self) -> Option<usize> {
        self.depth
    }

    /// Whether a file at `path` of this pattern's store would be read as input.
    pub fn selects(&self, path: &Path) -> bool {
        path.prefix_matches(&self.location.path) && self.matches(path)
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
        let url = to_url("data/../samples").unwrap();
        assert_eq!(url.scheme(), "file");
        assert!(url.path().ends_with("/samples"), "{url}");
        assert!(!url.path().contains(".."));
        // In an input pattern the glob stays a glob; in a plain location `*` is a name.
        let pattern = absolute_input_pattern("data/../samples/*.md").unwrap();
        assert!(pattern.starts_with("file:///"), "{pattern}");
        assert!(pattern.ends_with("/samples/*.md"), "{pattern}");
        assert!(
            to_url("samples/*.md")
                .unwrap()
                .path()
                .ends_with("/samples/%2A.md")
        );
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
    fn local_folders_are_taken_literally() {
        for name in ["a#b", "q?x", "p%41", "sp ace", "br{a,b}", "st*r"] {
            let written = format!("/tmp/in/{name}/out");
            let location = StoreLocation::parse(&written).unwrap();
            assert_eq!(
                location.path.as_ref(),
                format!("tmp/in/{name}/out"),
                "{name}"
            );
            assert_eq!(
                location.local_path(&location.path).unwrap(),
                std::path::PathBuf::from(&written)
            );
            let url = location.url_of(&location.path.clone().join("job.json"));
            assert_eq!(
                location.path_of_url(&url).unwrap().as_ref(),
                format!("tmp/in/{name}/out/job.json"),
                "{url}"
            );
        }
    }

    #[test]
    fn glob_star_stays_in_its_folder_and_braces_work() {
        let pattern = InputPattern::parse("/data/x#1/*.jsonl").unwrap();
        assert_eq!(pattern.location.path.as_ref(), "data/x#1");
        assert!(pattern.matches(&Path::parse("data/x#1/a.jsonl").unwrap()));
        assert!(!pattern.matches(&Path::parse("data/x#1/sub/a.jsonl").unwrap()));
        assert_eq!(pattern.max_depth(), Some(0));

        let pattern = InputPattern::parse("/data/{a,b}.jsonl").unwrap();
        assert!(pattern.matches(&Path::from("data/a.jsonl")));
        assert!(pattern.matches(&Path::from("data/b.jsonl")));
        assert!(!pattern.matches(&Path::from("data/c.jsonl")));

        // The listed folder's own name is not a pattern.
        let pattern = InputPattern::parse("file:///data/x%5B1%5D/*.md").unwrap();
        assert_eq!(pattern.location.path.as_ref(), "data/x[1]");
        assert!(pattern.matches(&Path::parse("data/x[1]/a.md").unwrap()));
    }

    #[test]
    fn glob_depth_counts_folders() {
        assert_eq!(glob_depth("*.jsonl"), Some(0));
        assert_eq!(glob_depth("a/*/b.md"), Some(2));
        assert_eq!(glob_depth("**/*.md"), None);
        assert_eq!(glob_depth("{a,b/c}/*.md"), None);
    }

    #[test]
    fn file_urls_display_as_paths() {
        let url = to_url("/tmp/out #1/x%41").unwrap();
        assert_eq!(display_location(url.as_str()), "/tmp/out #1/x%41");
        assert_eq!(display_location("s3://b/k%20x"), "s3://b/k%20x");
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
