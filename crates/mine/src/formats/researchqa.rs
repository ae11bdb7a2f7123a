//! The researchqa interchange format (being written with the full survey miner).

use serde_json::Value;

use super::Layout;

pub(super) const LAYOUT: Layout = Layout::JsonArray;

pub(super) fn to_researchqa_json(_row: &Value) -> Result<Option<Value>, String> {
    Err("export --format researchqa-json is not available in this build yet".into())
}
