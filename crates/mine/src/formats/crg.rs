//! The crg interchange formats (being written with the full CRG miner).

use serde_json::Value;

use super::Layout;

pub(super) const OPENRUBRIC_LAYOUT: Layout = Layout::JsonLines;
pub(super) const HEALTHBENCH_LAYOUT: Layout = Layout::JsonLines;

pub(super) fn to_openrubric(_row: &Value) -> Result<Option<Value>, String> {
    Err("export --format openrubric is not available in this build yet".into())
}

pub(super) fn to_healthbench(_row: &Value) -> Result<Option<Value>, String> {
    Err("export --format healthbench is not available in this build yet".into())
}
