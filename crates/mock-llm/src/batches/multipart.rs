//! Just enough `multipart/form-data` for `POST /v1/files`: the parts of a body by their field
//! name, with the file name when a part has one.

use bytes::Bytes;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Bytes,
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty())
    })
}

/// The parts of a body, or why it is not a form.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let Some(first) = find(body, delimiter, 0) else {
        return Err("the body holds no part boundary".into());
    };
    let mut at = first + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        // The delimiter line ends with CRLF.
        at = skip_line_end(body, at).ok_or("a part boundary is not followed by a line end")?;
        let head_end =
            find(body, b"\r\n\r\n", at).ok_or("a part has no blank line after its headers")?;
        let head = std::str::from_utf8(&body[at..head_end])
            .map_err(|_| "part headers are not UTF-8".to_owned())?;
        let data_start = head_end + 4;
        let next = find(body, delimiter, data_start).ok_or("the last part is not closed")?;
        // The data ends with the CRLF before the next delimiter.
        let data_end = if next >= 2 && &body[next - 2..next] == b"\r\n" {
            next - 2
        } else {
            next
        };
        let (name, filename) = disposition(head).ok_or("a part has no form-data name")?;
        parts.push(Part {
            name,
            filename,
            data: body.slice(data_start..data_end.max(data_start)),
        });
        at = next + delimiter.len();
    }
}

/// `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(head: &str) -> Option<(String, Option<String>)> {
    let line = head.split("\r\n").find(|line| {
        line.split_once(':')
            .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut name = None;
    let mut filename = None;
    for param in value.split(';').skip(1) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim() {
            "name" => name = Some(value),
            "filename" => filename = Some(value),
            _ => {}
        }
    }
    Some((name?, filename))
}

fn skip_line_end(body: &[u8], at: usize) -> Option<usize> {
    if body[at..].starts_with(b"\r\n") {
        Some(at + 2)
    } else if body[at..].starts_with(b"\n") {
        Some(at + 1)
    } else {
        None
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_with_a_field_and_a_file_is_read() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"abc\"").as_deref(),
            Some("abc")
        );
        assert_eq!(boundary("application/json"), None);
        let body = Bytes::from_static(
            b"--abc\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
              --abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.jsonl\"\r\n\
              Content-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--abc--\r\n",
        );
        let parts = parse(&body, "abc").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            (parts[0].name.as_str(), &parts[0].data[..]),
            ("purpose", &b"batch"[..])
        );
        assert_eq!(parts[1].filename.as_deref(), Some("n.jsonl"));
        assert_eq!(&parts[1].data[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn broken_forms_are_refused_not_panicked_on() {
        for body in [
            &b""[..],
            b"--abc",
            b"--abc\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunclosed",
            b"--abc\r\nno blank line",
            b"--abcX",
        ] {
            assert!(
                parse(&Bytes::copy_from_slice(body), "abc").is_err(),
                "{body:?}"
            );
        }
        let empty = parse(&Bytes::from_static(b"--abc--\r\n"), "abc").unwrap();
        assert!(empty.is_empty());
    }
}
