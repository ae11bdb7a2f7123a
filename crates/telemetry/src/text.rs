//! Pieces of the Prometheus text exposition format 0.0.4: name rules, escaping, sample values.

use std::borrow::Cow;

/// Integers below this magnitude are exact in an `f64` and print without a fraction.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_metric_name(name: &str) -> bool {
    is_name(name, |c| c == '_' || c == ':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with the
/// reserved `__`.
pub(crate) fn is_label_name(name: &str) -> bool {
    is_name(name, |c| c == '_') && !name.starts_with("__")
}

/// A non-empty run of ASCII letters, digits and `extra` characters, not starting with a digit.
fn is_name(name: &str, extra: impl Fn(char) -> bool) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || extra(c);
    !first.is_ascii_digit() && allowed(first) && chars.all(allowed)
}

/// A `# HELP` text with backslashes and newlines escaped.
pub(crate) fn escape_help(help: &str) -> Cow<'_, str> {
    escape(help, false)
}

/// A label value with backslashes, double quotes and newlines escaped.
pub(crate) fn escape_label_value(value: &str) -> Cow<'_, str> {
    escape(value, true)
}

fn escape(text: &str, quotes: bool) -> Cow<'_, str> {
    let needs_escape = |c: char| c == '\\' || c == '\n' || (quotes && c == '"');
    if !text.contains(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            other => escaped.push(other),
        }
    }
    Cow::Owned(escaped)
}

/// `{a="x",b="y"}` for the given names and values, nothing when there are no labels.
pub(crate) fn write_labels(out: &mut String, names: &[String], values: &[String]) {
    if names.is_empty() {
        return;
    }
    out.push('{');
    for (index, (name, value)) in names.iter().zip(values).enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape_label_value(value));
        out.push('"');
    }
    out.push('}');
}

/// A sample value: `+Inf`, `-Inf`, `NaN`, integers without a fraction, anything else in Rust's
/// shortest round-tripping form (`0.25`, `1e-7`, `1.5e300`).
pub(crate) fn format_value(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        let sign = if value > 0.0 { "+" } else { "-" };
        return format!("{sign}Inf");
    }
    if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        // Exact: the value is an integer that fits an i64; -0 prints as 0.
        return (value as i64).to_string();
    }
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_prometheus_expects() {
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(-0.0), "0");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(1e-7), "1e-7");
        assert_eq!(format_value(1e20), "1e20");
        assert_eq!(format_value(9_007_199_254_740_991.0), "9007199254740991");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn printed_values_round_trip() {
        for value in [
            0.1,
            1.0 / 3.0,
            123_456.789,
            2.5e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            assert_eq!(format_value(value).parse::<f64>().unwrap(), value);
        }
    }

    #[test]
    fn escaping_covers_backslash_quote_and_newline() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nnext"), "line\\nnext");
        assert!(matches!(
            escape_label_value("plain"),
            Cow::Borrowed("plain")
        ));
        // Quotes stay as they are in help texts.
        assert_eq!(escape_help("say \"hi\"\\\n"), "say \"hi\"\\\\\\n");
    }

    #[test]
    fn labels_render_in_the_given_order() {
        let mut out = String::new();
        write_labels(
            &mut out,
            &["b".into(), "a".into()],
            &["1".into(), "\"".into()],
        );
        assert_eq!(out, r#"{b="1",a="\""}"#);
        let mut empty = String::new();
        write_labels(&mut empty, &[], &[]);
        assert_eq!(empty, "");
    }

    #[test]
    fn names_follow_the_prometheus_rules() {
        assert!(is_metric_name("rubricmill_shards_total"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("9lives"));
        assert!(!is_metric_name("has-dash"));
        assert!(is_label_name("pipeline"));
        assert!(is_label_name("_private"));
        assert!(!is_label_name("__reserved"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name(""));
    }
}
