//! The field mapping (`input.fields`): our field name → where it is in the record, a dotted
//! path or an RFC 6901 JSON pointer ([`FieldPath`]). Unmapped fields are top-level keys of
//! their own name. Paths of list items and their keys are built in the same syntax as the
//! list's own path, so reject reasons name a place the user can look up.

use std::collections::BTreeMap;

use rubricmill_core::spec::{FieldPath, FieldPathError};
use serde_json::Value;

/// Field mapping from the job spec, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap {
    paths: BTreeMap<String, FieldPath>,
}

impl FieldMap {
    /// Parses every path; the first that is not a path is returned with its field name.
    pub fn try_new(map: &BTreeMap<String, String>) -> Result<Self, (String, FieldPathError)> {
        let mut paths = BTreeMap::new();
        for (field, raw) in map {
            let path = FieldPath::parse(raw).map_err(|e| (field.clone(), e))?;
            paths.insert(field.clone(), path);
        }
        Ok(Self { paths })
    }

    /// Like [`FieldMap::try_new`] for a mapping the job spec has validated already; a value
    /// that does not parse is taken as one literal top-level key.
    pub fn new(map: &BTreeMap<String, String>) -> Self {
        let paths = map
            .iter()
            .map(|(field, raw)| {
                let path = FieldPath::parse(raw).unwrap_or_else(|_| FieldPath::key(raw));
                (field.clone(), path)
            })
            .collect();
        Self { paths }
    }

    /// The path in the record that `field` is read from, as written.
    pub fn path<'s>(&'s self, field: &'s str) -> &'s str {
        self.paths.get(field).map_or(field, FieldPath::as_str)
    }

    /// The record's own id (`id`, mappable): a non-empty string, trimmed, or a number.
    pub fn id(&self, record: &Value) -> Option<String> {
        match self.get(record, "id") {
            Some(Value::String(id)) if !id.trim().is_empty() => Some(id.trim().to_owned()),
            Some(Value::Number(id)) => Some(id.to_string()),
            _ => None,
        }
    }

    /// The value of our field `field` in `record`, or `None` when the path does not lead
    /// anywhere.
    pub fn get<'a>(&self, record: &'a Value, field: &str) -> Option<&'a Value> {
        match self.paths.get(field) {
            None => record.as_object()?.get(field),
            Some(path) => path.lookup(record),
        }
    }
}

/// The path of element `index` of the list at `path`, in `path`'s syntax.
pub(crate) fn item_path(path: &str, index: usize) -> String {
    if path.starts_with('/') {
        format!("{path}/{index}")
    } else {
        format!("{path}.{index}")
    }
}

/// The path of key `key` of the object at `path`, in `path`'s syntax.
pub(crate) fn key_path(path: &str, key: &str) -> String {
    if path.starts_with('/') {
        format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
    } else {
        format!("{path}.{key}")
    }
}
