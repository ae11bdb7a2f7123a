//! Keeping secrets out of messages. Job specs are written by people who sometimes paste an API
//! key where a variable name belongs, and parser messages quote the text they choke on; every
//! message built from spec text goes through [`redact_secrets`] before anyone sees it.

use std::borrow::Cow;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Prefixes of well-known credential formats (OpenAI, Anthropic, Hugging Face, GitHub, Slack,
/// AWS access key ids, Google API keys, JWTs).
const SECRET_PREFIXES: &[&str] = &[
    "sk-",
    "sk_",
    "sk-ant-",
    "pk-",
    "rk_",
    "hf_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "AKIA",
    "ASIA",
    "AIza",
    "eyJ",
];

/// Words of a key name (split at `_`, `-` and `.`, lowercased) that make its value a secret
/// whatever it looks like: `api_key`, `x-api-key`, `Authorization`, `nats_password`; not
/// `max_tokens` or `keywords`.
const SECRET_KEY_WORDS: &[&str] = &[
    "key",
    "apikey",
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "bearer",
];

/// Whether a value looks like a credential: a known prefix followed by a long token, or a long
/// token mixing letters and digits with no spaces (how keys, tokens and hashes look).
pub fn looks_like_secret(value: &str) -> bool {
    let value = value.trim();
    if value.len() < 12 || !value.chars().all(is_token_char) {
        return false;
    }
    if SECRET_PREFIXES
        .iter()
        .any(|prefix| value.starts_with(prefix) && value.len() >= prefix.len() + 8)
    {
        return true;
    }
    // A long run mixing letters and digits between separators, as random tokens are; names
    // with dates or versions (`claude-3-5-sonnet-20241022`) and path segments are short runs. Lowercase hex is
    // left alone: it is how shard ids, hashes and etags look in messages.
    value.split(['-', '_', '.', '/']).any(|run| {
        let letters = run.chars().filter(char::is_ascii_alphabetic).count();
        let digits = run.chars().filter(char::is_ascii_digit).count();
        let lowercase_hex = run.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
        run.len() >= 16 && letters >= 4 && digits >= 2 && !lowercase_hex
    })
}

/// Whether a key (a TOML key, a header name) names a secret, e.g. `api_key` or `password`.
/// `api_key_env` names a variable, not a secret, and is not one.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    let words: Vec<&str> = key.split(['_', '-', '.']).collect();
    if matches!(words.last(), Some(&("env" | "file" | "path"))) {
        return false;
    }
    words.iter().any(|word| SECRET_KEY_WORDS.contains(word))
}

/// Replaces what could be a secret in a message: quoted values that look like credentials,
/// any value assigned to a key that names a secret (`api_key = "…"`, `password: …`), bare
/// credential-looking words, and the password of `scheme://user:password@host` URLs.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let redacted = redact_line(line);
        changed |= matches!(redacted, Cow::Owned(_));
        out.push_str(&redacted);
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

fn redact_line(line: &str) -> Cow<'_, str> {
    // `key = value` (a TOML assignment, as parser snippets quote it) where the key names a
    // secret: the whole value goes.
    if let Some(at) = line.find('=') {
        let (key, rest) = line.split_at(at);
        let key_word = key.trim().rsplit([' ', '|', '{', ',']).next().unwrap_or("");
        if !key_word.is_empty() && is_secret_key(key_word) && !rest[1..].trim().is_empty() {
            let value_end = rest.trim_end_matches(['\n', '\r']).len();
            let newline = &rest[value_end..];
            return Cow::Owned(format!("{key}{} {REDACTED}{newline}", &rest[..1]));
        }
    }
    let mut out = String::with_capacity(line.len());
    let mut changed = false;
    for word in line.split_inclusive(char::is_whitespace) {
        if let Some(redacted) = redact_url_password(word) {
            out.push_str(&redacted);
            changed = true;
            continue;
        }
        // Each run of token characters inside the word (`[sk-…]`, `"sk-…",`, `` `sk-…` ``).
        let mut rest = word;
        while let Some(start) = rest.find(is_token_char) {
            out.push_str(&rest[..start]);
            let run_len = rest[start..]
                .find(|c: char| !is_token_char(c))
                .unwrap_or(rest.len() - start);
            let run = &rest[start..start + run_len];
            if looks_like_secret(run) {
                out.push_str(REDACTED);
                changed = true;
            } else {
                out.push_str(run);
            }
            rest = &rest[start + run_len..];
        }
        out.push_str(rest);
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(line)
    }
}

/// Characters a credential token is made of.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.')
}

/// `scheme://user:password@host/…` with the password replaced, when the word holds one.
fn redact_url_password(word: &str) -> Option<String> {
    let scheme_end = word.find("://")? + 3;
    let authority_end = word[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(word.len(), |i| scheme_end + i);
    let at = word[scheme_end..authority_end].rfind('@')? + scheme_end;
    let colon = word[scheme_end..at].find(':')? + scheme_end;
    Some(format!("{}{REDACTED}{}", &word[..colon + 1], &word[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_shapes_are_secrets() {
        for value in [
            "sk-proj-abc123def456ghi789",
            "sk-ant-api03-abcdefghijk123",
            "hf_abcdefghijklmnop1234",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
        ] {
            assert!(looks_like_secret(value), "{value}");
        }
    }

    #[test]
    fn ordinary_values_are_not_secrets() {
        for value in [
            "OPENAI_API_KEY",
            "gpt-4o-mini",
            "https://api.openai.com/v1",
            "samples/surveys/*.md",
            "researchqa",
            "claude-3-5-sonnet-20241022",
            "Qwen/Qwen2.5-7B-Instruct",
            "3fa94c0d2b7e61a8f0c5d9e2",
            "/home/runner/work/2026-12-02/out/rq/job.json",
        ] {
            assert!(!looks_like_secret(value), "{value}");
        }
    }

    #[test]
    fn keys_naming_secrets() {
        assert!(is_secret_key("api_key"));
        assert!(is_secret_key("\"Authorization\""));
        assert!(is_secret_key("password"));
        assert!(is_secret_key("x-api-key"));
        assert!(!is_secret_key("api_key_env"));
        assert!(!is_secret_key("model"));
        assert!(!is_secret_key("max_tokens"));
        assert!(!is_secret_key("tokens_per_minute"));
    }

    #[test]
    fn messages_lose_their_secrets() {
        let message = "1 | api_key = \"my-plain-words\"\n  |     ^^^^^\nunknown field `api_key`";
        let redacted = redact_secrets(message);
        assert!(!redacted.contains("my-plain-words"), "{redacted}");
        assert!(redacted.contains("unknown field `api_key`"), "{redacted}");

        let message = "invalid type: string \"sk-live-0123456789abcdef\", expected u64";
        let redacted = redact_secrets(message);
        assert!(!redacted.contains("0123456789abcdef"), "{redacted}");
        assert!(redacted.contains("expected u64"), "{redacted}");

        let message = "cannot reach https://user:hunter2@example.com/v1: refused";
        let redacted = redact_secrets(message);
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(
            redacted.contains("https://user:<redacted>@example.com/v1"),
            "{redacted}"
        );
    }

    #[test]
    fn plain_messages_are_untouched() {
        let message = "field `llm.model`: must not be empty (see configs/quickstart.toml)";
        assert!(matches!(redact_secrets(message), Cow::Borrowed(_)));
    }
}
