//! A line reader for JSONL over any async byte stream that never buffers more than a bounded
//! prefix of a line: an oversized line is measured and skipped, not loaded.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One physical line as read.
#[derive(Debug, Default)]
pub struct Line {
    /// One-based line number.
    pub number: u64,
    /// Offset of the line's first byte in the (decompressed) stream.
    pub start: u64,
    /// Length without the line terminator.
    pub len: u64,
    /// At most `limit` bytes of the line, without the terminator.
    pub bytes: Vec<u8>,
    /// True when the line was longer than the limit and `bytes` holds only its start.
    pub overflow: bool,
}

impl Line {
    /// True when the line holds only white space (not a record).
    pub fn is_blank(&self) -> bool {
        !self.overflow && self.bytes.iter().all(u8::is_ascii_whitespace)
    }
}

/// The UTF-8 byte order mark.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub struct LineReader<R> {
    inner: R,
    next_number: u64,
    offset: u64,
    limit: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// `first_number` is the number given to the first line read; `offset` the stream offset
    /// of its first byte; `limit` the most bytes of a line kept in memory.
    pub fn new(inner: R, first_number: u64, offset: u64, limit: usize) -> Self {
        Self {
            inner,
            next_number: first_number,
            offset,
            limit,
        }
    }

    /// Reads the next line into `line` (reusing its buffer). Returns false at end of stream.
    pub async fn next_line(&mut self, line: &mut Line) -> std::io::Result<bool> {
        line.bytes.clear();
        line.number = self.next_number;
        line.start = self.offset;
        line.len = 0;
        line.overflow = false;
        let mut saw_any = false;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if !saw_any {
                    return Ok(false);
                }
                break;
            }
            saw_any = true;
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(at) => (at, true),
                None => (chunk.len(), false),
            };
            let room = self.limit.saturating_sub(line.bytes.len());
            if take > room {
                line.overflow = true;
            }
            line.bytes.extend_from_slice(&chunk[..take.min(room)]);
            line.len += take as u64;
            let consumed = if done { take + 1 } else { take };
            self.inner.consume(consumed);
            self.offset += consumed as u64;
            if done {
                break;
            }
        }
        if !line.overflow && line.bytes.last() == Some(&b'\r') {
            line.bytes.pop();
            line.len -= 1;
        }
        // A byte order mark opens some files written on Windows; it is not part of the record.
        if line.start == 0 && line.bytes.starts_with(UTF8_BOM) {
            line.bytes.drain(..UTF8_BOM.len());
            line.len -= UTF8_BOM.len() as u64;
        }
        self.next_number += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(text: &[u8], limit: usize) -> Vec<(u64, u64, Vec<u8>, bool)> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(3, text), 1, 0, limit);
        let mut line = Line::default();
        let mut out = Vec::new();
        while reader.next_line(&mut line).await.unwrap() {
            out.push((line.number, line.start, line.bytes.clone(), line.overflow));
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_with_offsets_and_crlf() {
        let lines = read_all(b"ab\r\ncde\n\nf", 100).await;
        assert_eq!(
            lines,
            vec![
                (1, 0, b"ab".to_vec(), false),
                (2, 4, b"cde".to_vec(), false),
                (3, 8, b"".to_vec(), false),
                (4, 9, b"f".to_vec(), false),
            ]
        );
    }

    #[tokio::test]
    async fn a_byte_order_mark_at_the_start_is_dropped() {
        let lines = read_all(b"\xEF\xBB\xBF{\"a\": 1}\n\xEF\xBB\xBFx\n", 100).await;
        assert_eq!(lines[0], (1, 0, b"{\"a\": 1}".to_vec(), false));
        // Only the stream's first line can carry one; elsewhere the bytes are data.
        assert_eq!(lines[1].2, b"\xEF\xBB\xBFx".to_vec());
    }

    #[tokio::test]
    async fn long_lines_keep_only_a_prefix() {
        let lines = read_all(b"0123456789\nxy\n", 4).await;
        assert_eq!(lines[0], (1, 0, b"0123".to_vec(), true));
        assert_eq!(lines[1], (2, 11, b"xy".to_vec(), false));
        assert_eq!(lines.len(), 2);
    }
}
