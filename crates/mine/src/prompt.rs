//! Prompt templates: a system part and a user part separated by a line `---`, with `{name}`
//! placeholders. Defaults ship inside the binary (from `configs/prompts/`); every row records
//! the hash of the template that made it.

use rubricmill_core::Message;

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub name: String,
    system: String,
    user: String,
    /// blake3 of the template text (24 hex characters).
    pub hash: String,
}

/// Default researchqa generation prompt.
pub const RESEARCHQA_GENERATE: &str =
    include_str!("../../../configs/prompts/researchqa_generate.md");
/// Default researchqa query-judge prompt.
pub const RESEARCHQA_JUDGE: &str = include_str!("../../../configs/prompts/researchqa_judge.md");
/// Default researchqa field-classification prompt.
pub const RESEARCHQA_CLASSIFY: &str =
    include_str!("../../../configs/prompts/researchqa_classify.md");
/// Default crg generation prompt.
pub const CRG_GENERATE: &str = include_str!("../../../configs/prompts/crg_generate.md");
/// Default crg consistency-judge prompt.
pub const CRG_JUDGE: &str = include_str!("../../../configs/prompts/crg_judge.md");
/// Default reference generation prompt.
pub const REFERENCE_GENERATE: &str = include_str!("../../../configs/prompts/reference_generate.md");
/// Default degraded-answer prompt of the reference self-check.
pub const REFERENCE_DEGRADE: &str = include_str!("../../../configs/prompts/reference_degrade.md");
/// Default grader prompt (reference self-check and score).
pub const RUBRIC_GRADE: &str = include_str!("../../../configs/prompts/rubric_grade.md");
/// Default nugget extraction prompt.
pub const NUGGETS_GENERATE: &str = include_str!("../../../configs/prompts/nuggets_generate.md");
/// Default nugget support-check prompt.
pub const NUGGETS_SUPPORT: &str = include_str!("../../../configs/prompts/nuggets_support.md");
/// Default response prompt of the score pipeline.
pub const SCORE_RESPOND: &str = include_str!("../../../configs/prompts/score_respond.md");

/// Every template the pipelines use, by name, with its built-in text. A job may override any
/// of them with a file (`[prompts]` in the job spec).
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[
    ("researchqa_generate", RESEARCHQA_GENERATE),
    ("researchqa_judge", RESEARCHQA_JUDGE),
    ("researchqa_classify", RESEARCHQA_CLASSIFY),
    ("crg_generate", CRG_GENERATE),
    ("crg_judge", CRG_JUDGE),
    ("reference_generate", REFERENCE_GENERATE),
    ("reference_degrade", REFERENCE_DEGRADE),
    ("rubric_grade", RUBRIC_GRADE),
    ("nuggets_generate", NUGGETS_GENERATE),
    ("nuggets_support", NUGGETS_SUPPORT),
    ("score_respond", SCORE_RESPOND),
];

/// The templates a job runs with: its overrides over the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Templates {
    overrides: std::collections::BTreeMap<String, String>,
}

impl Templates {
    /// `overrides` maps template names to template texts; unknown names are an error.
    pub fn new(overrides: std::collections::BTreeMap<String, String>) -> Result<Self, String> {
        for name in overrides.keys() {
            if !DEFAULT_TEMPLATES.iter().any(|(known, _)| known == name) {
                let known: Vec<&str> = DEFAULT_TEMPLATES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown prompt template {name:?}; templates are {}",
                    known.join(", ")
                ));
            }
        }
        Ok(Self { overrides })
    }

    /// The template in force for `name` (one of [`DEFAULT_TEMPLATES`]).
    pub fn get(&self, name: &str) -> Template {
        let text = self
            .overrides
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| {
                DEFAULT_TEMPLATES
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map_or("", |(_, text)| text)
            });
        Template::parse(name, text)
    }
}

impl Template {
    /// Parses template text; without a `---` line the whole text is the user part. A leading
    /// `<!-- … -->` comment (notes for maintainers) is not part of the messages, though it is
    /// part of the hash.
    pub fn parse(name: &str, text: &str) -> Self {
        let body = strip_leading_comment(text);
        let (system, user) = match body.split_once("\n---\n") {
            Some((system, user)) => (system.trim().to_owned(), user.trim().to_owned()),
            None => (String::new(), body.trim().to_owned()),
        };
        Self {
            name: name.to_owned(),
            system,
            user,
            hash: rubricmill_core::short_hash(text.as_bytes(), 24),
        }
    }

    /// The chat messages with placeholders filled. Values are inserted verbatim and never
    /// scanned for placeholders themselves; unknown `{…}` text is left alone.
    pub fn render(&self, values: &[(&str, &str)]) -> Vec<Message> {
        let mut messages = Vec::with_capacity(2);
        if !self.system.is_empty() {
            messages.push(Message::new("system", fill(&self.system, values)));
        }
        messages.push(Message::new("user", fill(&self.user, values)));
        messages
    }
}

/// `text` without a `<!-- … -->` comment at its start.
fn strip_leading_comment(text: &str) -> &str {
    let trimmed = text.trim_start();
    let Some(rest) = trimmed.strip_prefix("<!--") else {
        return text;
    };
    match rest.find("-->") {
        Some(end) => &rest[end + 3..],
        None => text,
    }
}

fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let replaced = after.find('}').and_then(|close| {
            let key = &after[..close];
            values
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| (close, *value))
        });
        match replaced {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_comment_is_not_sent_but_is_hashed() {
        let with = Template::parse("t", "<!-- paper notes -->\nsys\n---\nask {x}");
        let without = Template::parse("t", "sys\n---\nask {x}");
        assert_eq!(with.render(&[("x", "1")]), without.render(&[("x", "1")]));
        assert_ne!(with.hash, without.hash);
        let reference = Template::parse("reference_generate", REFERENCE_GENERATE);
        let messages = reference.render(&[]);
        assert!(messages.iter().all(|m| !m.content.contains("<!--")));
        assert!(messages[0].content.starts_with("You write grading rubrics"));
    }

    #[test]
    fn fills_known_placeholders_once_and_leaves_the_rest() {
        let template = Template::parse("t", "sys\n---\nA {x} and {y}; json {\"k\": 1}; {unknown}");
        let messages = template.render(&[("x", "{y}"), ("y", "2")]);
        assert_eq!(messages[0], Message::new("system", "sys"));
        assert_eq!(
            messages[1].content,
            "A {y} and 2; json {\"k\": 1}; {unknown}"
        );
    }

    #[test]
    fn overrides_replace_defaults_and_unknown_names_are_refused() {
        let overrides = std::collections::BTreeMap::from([(
            "crg_generate".to_owned(),
            "sys\n---\nuser {x}".to_owned(),
        )]);
        let templates = Templates::new(overrides).unwrap();
        let crg = templates.get("crg_generate");
        assert_eq!(crg.render(&[("x", "1")])[1].content, "user 1");
        assert_ne!(crg.hash, Template::parse("crg_generate", CRG_GENERATE).hash);
        assert_eq!(
            templates.get("researchqa_generate").hash,
            Template::parse("researchqa_generate", RESEARCHQA_GENERATE).hash
        );
        let unknown = std::collections::BTreeMap::from([("nope".to_owned(), String::new())]);
        assert!(
            Templates::new(unknown)
                .unwrap_err()
                .contains("researchqa_generate")
        );
    }

    #[test]
    fn default_templates_have_both_parts_and_distinct_hashes() {
        let rq = Template::parse("researchqa", RESEARCHQA_GENERATE);
        let crg = Template::parse("crg", CRG_GENERATE);
        assert_eq!(rq.render(&[]).len(), 2);
        assert_ne!(rq.hash, crg.hash);
    }
}
