//! Argument parsers shared by the commands.

use std::time::Duration;

/// A duration written the human way: `500ms`, `60s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?}: {e} (write e.g. 60s, 500ms, 2m)"))
}
