//! Results files as JSON Lines, read a chunk at a time: each line is handed over as soon as it
//! is whole, so a results file never has to fit in memory at once. A line longer than the
//! limit (`llm.max_response_mb`: one line holds one answer) is skipped with a warning, and so
//! is a line that does not parse: one bad line never costs the other items.

use serde::de::DeserializeOwned;

use crate::LlmError;

/// Splits a byte stream into lines, skipping the ones longer than `max_line`.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max_line: usize,
    pending: Vec<u8>,
    /// True while the rest of an overlong line is being skipped.
    skipping: bool,
    /// Lines skipped for their length.
    pub overlong: u64,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            pending: Vec::new(),
            skipping: false,
            overlong: 0,
        }
    }

    /// Feeds a chunk, calling `line` for every whole line it completes (without its `\n`).
    pub fn push(&mut self, mut chunk: &[u8], line: &mut impl FnMut(&[u8])) {
        while !chunk.is_empty() {
            let end = chunk.iter().position(|&b| b == b'\n');
            let (part, rest, complete) = match end {
                Some(at) => (&chunk[..at], &chunk[at + 1..], true),
                None => (chunk, &chunk[chunk.len()..], false),
            };
            if !self.skipping {
                if self.pending.len() + part.len() > self.max_line {
                    self.pending.clear();
                    self.skipping = true;
                    self.overlong += 1;
                } else {
                    self.pending.extend_from_slice(part);
                }
            }
            if complete {
                if !self.skipping {
                    line(&self.pending);
                }
                self.pending.clear();
                self.skipping = false;
            }
            chunk = rest;
        }
    }

    /// The last line, when the stream does not end with `\n`.
    pub fn finish(&mut self, line: &mut impl FnMut(&[u8])) {
        if !self.skipping && !self.pending.is_empty() {
            line(&self.pending);
        }
        self.pending.clear();
        self.skipping = false;
    }
}

/// Reads a JSONL body, parsing each non-blank line as `T` and handing it to `each`; lines that
/// are too long or do not parse are skipped with a warning naming `url`.
pub(crate) async fn read_lines<T: DeserializeOwned>(
    mut response: reqwest::Response,
    max_line: u64,
    url: &str,
    mut each: impl FnMut(T),
) -> Result<(), LlmError> {
    let mut splitter = LineSplitter::new(usize::try_from(max_line).unwrap_or(usize::MAX));
    let mut malformed = 0u64;
    let mut line = |bytes: &[u8]| {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match serde_json::from_slice::<T>(bytes) {
            Ok(value) => each(value),
            Err(error) => {
                malformed += 1;
                tracing::warn!(url = %url, error = %error, "skipping a malformed line of a batch results file");
            }
        }
    };
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| crate::client::transport_error(&e))?
    {
        splitter.push(&chunk, &mut line);
    }
    splitter.finish(&mut line);
    if splitter.overlong > 0 {
        tracing::warn!(url = %url, lines = splitter.overlong, max_line, "skipped batch result lines longer than llm.max_response_mb");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max_line: usize, chunks: &[&[u8]]) -> (Vec<String>, u64) {
        let mut splitter = LineSplitter::new(max_line);
        let mut lines = Vec::new();
        let mut take = |line: &[u8]| lines.push(String::from_utf8(line.to_vec()).unwrap());
        for chunk in chunks {
            splitter.push(chunk, &mut take);
        }
        splitter.finish(&mut take);
        (lines, splitter.overlong)
    }

    #[test]
    fn lines_are_joined_across_chunks_and_the_last_may_lack_a_newline() {
        let (lines, overlong) = split(100, &[b"ab", b"c\nd", b"e\n\nfg"]);
        assert_eq!(lines, ["abc", "de", "", "fg"]);
        assert_eq!(overlong, 0);
    }

    #[test]
    fn overlong_lines_are_skipped_whole_and_the_next_ones_kept() {
        let (lines, overlong) = split(4, &[b"12", b"345", b"67\nok\n", b"toolong", b"\nend"]);
        assert_eq!(lines, ["ok", "end"]);
        assert_eq!(overlong, 2);
        let (lines, _) = split(4, &[b"1234\n12345"]);
        assert_eq!(
            lines,
            ["1234"],
            "an unfinished overlong last line is dropped"
        );
    }
}
