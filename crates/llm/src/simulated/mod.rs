//! The simulated provider: a test and dry-run stand-in for a model. It answers the pipelines'
//! prompts (recognised by the `response_format` name) with valid JSON derived deterministically
//! from the prompt text: key terms of the section or conversation become the query and rubric
//! items. It lets the quickstart and the tests run with no network; it says nothing about what
//! a real model would answer. One submodule per pipeline holds its tasks' answers: `researchqa`,
//! `crg`, `reference` (rubric and degraded answer), `grade` (the rubric grader of the reference
//! self-check and the score pipeline), `nuggets` (nuggets and their support check) and `score`
//! (responses to score). The judge error rate applies to the crg judge (per request), the
//! grader and the support check (per criterion or claim).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::{ChatProvider, ChatRequest, ChatResponse, LlmError, TokenUsage, estimate_tokens};

mod crg;
mod grade;
mod nuggets;
mod reference;
mod researchqa;
mod score;

pub use researchqa::{RESEARCHQA_CLASSIFY_TASK, RESEARCHQA_JUDGE_TASK};

/// `response_format` name of the researchqa generation stage.
pub const RESEARCHQA_TASK: &str = "researchqa_query_rubric";
/// `response_format` name of the crg generation stage.
pub const CRG_TASK: &str = "crg_rubric";
/// `response_format` name of the crg judge stage.
pub const CRG_JUDGE_TASK: &str = "crg_judge";
/// `response_format` name of the reference generation stage.
pub const REFERENCE_TASK: &str = "reference_rubric";
/// `response_format` name of the reference self-check's degraded answer.
pub const REFERENCE_DEGRADE_TASK: &str = "reference_degrade";
/// `response_format` name of the rubric grader (reference self-check and score).
pub const RUBRIC_GRADE_TASK: &str = "rubric_grade";
/// `response_format` name of the nugget extraction stage.
pub const NUGGETS_TASK: &str = "nuggets_generate";
/// `response_format` name of the nugget support check.
pub const NUGGETS_SUPPORT_TASK: &str = "nuggets_support";
/// `response_format` name of the score pipeline's response stage.
pub const SCORE_RESPOND_TASK: &str = "score_respond";

/// Knobs of the simulated answers (shared by the in-process provider and mock-llm).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SimulatedOptions {
    /// Fraction (0..=1) of judge answers that err: crg judge answers that prefer the wrong
    /// response, and rubric-grade verdicts and nugget support checks that are flipped (each
    /// criterion or claim drawn on its own). Drawn from a hash of the request (messages and
    /// seed), so a replayed request errs alike and a request with a new seed or rubric gets a
    /// fresh draw.
    pub judge_error_rate: f64,
}

pub struct SimulatedProvider {
    latency: Duration,
    options: SimulatedOptions,
}

impl SimulatedProvider {
    /// `latency_ms` is waited before every answer, to make dry runs behave like real work.
    pub fn new(latency_ms: u64) -> Self {
        Self::with_options(latency_ms, SimulatedOptions::default())
    }

    pub fn with_options(latency_ms: u64, options: SimulatedOptions) -> Self {
        Self {
            latency: Duration::from_millis(latency_ms),
            options,
        }
    }
}

#[async_trait::async_trait]
impl ChatProvider for SimulatedProvider {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let content = simulated_answer_with(request, &self.options);
        let prompt_tokens = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content) + 4)
            .sum();
        let usage = TokenUsage {
            prompt_tokens,
            completion_tokens: estimate_tokens(&content),
        };
        Ok(ChatResponse {
            content,
            finish_reason: "stop".into(),
            usage,
        })
    }
}

/// The answer the simulated provider gives to a request with default options (a judge that
/// never errs); shared with the mock HTTP server so both answer alike.
pub fn simulated_answer(request: &ChatRequest) -> String {
    simulated_answer_with(request, &SimulatedOptions::default())
}

/// The answer the simulated provider gives to a request under `options`.
pub fn simulated_answer_with(request: &ChatRequest, options: &SimulatedOptions) -> String {
    let prompt: String = request
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let task = request.response_format.as_ref().map(|f| f.name.as_str());
    match task {
        Some(RESEARCHQA_TASK) => researchqa::generate(&prompt),
        Some(RESEARCHQA_JUDGE_TASK) => researchqa::judge(&prompt),
        Some(RESEARCHQA_CLASSIFY_TASK) => researchqa::classify(&prompt),
        Some(CRG_TASK) => crg::generate(&prompt, request.seed),
        Some(REFERENCE_TASK) => reference::generate(&prompt),
        Some(REFERENCE_DEGRADE_TASK) => reference::degrade(&prompt),
        Some(RUBRIC_GRADE_TASK) => {
            let draw = request_draw(request);
            grade::grade(&prompt, |n| item_draw(draw, n) < options.judge_error_rate)
        }
        Some(NUGGETS_TASK) => nuggets::generate(&prompt),
        Some(NUGGETS_SUPPORT_TASK) => {
            let draw = request_draw(request);
            nuggets::support(&prompt, |n| item_draw(draw, n) < options.judge_error_rate)
        }
        Some(SCORE_RESPOND_TASK) => score::respond(&prompt, request.seed),
        Some(CRG_JUDGE_TASK) => {
            let errs = request_draw(request) < options.judge_error_rate;
            crg::judge(&prompt, errs)
        }
        _ => format!(
            "simulated answer about {}",
            key_terms(&prompt, 3).join(", ")
        ),
    }
}

/// A uniform number in [0, 1) derived from the request's task, messages and seed.
pub fn request_draw(request: &ChatRequest) -> f64 {
    let mut hasher = blake3::Hasher::new();
    if let Some(format) = &request.response_format {
        hasher.update(format.name.as_bytes());
    }
    for message in &request.messages {
        hasher.update(&(message.role.len() as u64).to_le_bytes());
        hasher.update(message.role.as_bytes());
        hasher.update(&(message.content.len() as u64).to_le_bytes());
        hasher.update(message.content.as_bytes());
    }
    hasher.update(&request.seed.map_or([0xff; 8], u64::to_le_bytes));
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("eight bytes");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform number in [0, 1) for item `item` (a criterion or claim number) of a request whose
/// [`request_draw`] is `draw`: each item of one request gets its own draw, and the same request
/// and item always get the same one.
pub(crate) fn item_draw(draw: f64, item: u64) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&draw.to_bits().to_le_bytes());
    hasher.update(&item.to_le_bytes());
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .expect("eight bytes");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// A number written in the prompt as `at most N` (the first such phrase; trailing punctuation
/// ignored), or `default`.
pub(crate) fn stated_max(prompt: &str, default: usize) -> usize {
    prompt
        .split("at most ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The lowercase words of `text`, split as [`key_terms`] splits (letters, digits and inner
/// hyphens), so a key term of one text can be looked up among the words of another.
pub(crate) fn word_set(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '-')
        .map(|w| w.trim_matches('-').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A numbered line `[<n>] <rest>`: its number and the rest, trimmed.
pub(crate) fn numbered_line(line: &str) -> Option<(u64, &str)> {
    let rest = line.trim().strip_prefix('[')?;
    let (number, rest) = rest.split_once(']')?;
    Some((number.trim().parse().ok()?, rest.trim()))
}

/// The text between `<tag>` and `</tag>`, trimmed.
pub(crate) fn tagged<'a>(prompt: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = prompt.find(&open)? + open.len();
    let end = prompt[start..].find(&close)? + start;
    Some(prompt[start..end].trim())
}

/// The `count` most frequent content words of `text` (ties broken by first appearance).
pub(crate) fn key_terms(text: &str, count: usize) -> Vec<String> {
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for (position, word) in text
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| w.chars().count() >= 5 && w.chars().all(|c| c.is_alphabetic() || c == '-'))
        .enumerate()
    {
        let word = word.trim_matches('-').to_lowercase();
        if word.chars().count() < 5 || rubricmill_core::text::is_stopword(&word) {
            continue;
        }
        seen.entry(word).or_insert((0, position)).0 += 1;
    }
    let mut ranked: Vec<(String, (usize, usize))> = seen.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    ranked
        .into_iter()
        .take(count)
        .map(|(word, _)| word)
        .collect()
}

/// The heading without its numbering ("4.3 Categorization" → "categorization").
pub(crate) fn topic_of(heading: &str) -> String {
    let last = heading.rsplit(" › ").next().unwrap_or(heading);
    let words: Vec<&str> = last
        .split_whitespace()
        .skip_while(|w| w.chars().any(|c| c.is_ascii_digit()))
        .collect();
    let topic = if words.is_empty() {
        last.to_owned()
    } else {
        words.join(" ")
    };
    topic.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResponseFormat;
    use rubricmill_core::Message;
    use serde_json::json;

    fn request(task: &str, prompt: &str) -> ChatRequest {
        ChatRequest {
            model: "simulated".into(),
            messages: vec![Message::new("user", prompt)],
            temperature: 0.0,
            max_tokens: 512,
            seed: None,
            response_format: Some(ResponseFormat {
                name: task.into(),
                schema: json!({}),
            }),
        }
    }

    #[test]
    fn researchqa_answer_is_valid_and_derived_from_the_section() {
        let prompt = "<max_items>4</max_items>\n<section_heading>2 Background › 2.1 Caching policies</section_heading>\n\
            <section_text>Eviction policies decide which cached prefixes survive. Eviction under memory pressure \
            matters because prefixes are shared.</section_text>\n<cited_works>\n[7] Okafor (2019). Prefix sharing\n</cited_works>";
        let answer: serde_json::Value =
            serde_json::from_str(&simulated_answer(&request(RESEARCHQA_TASK, prompt))).unwrap();
        let query = answer["query"].as_str().unwrap();
        assert!(query.contains("caching policies"), "{query}");
        assert!(query.contains("eviction"), "{query}");
        let rubric = answer["rubric"].as_array().unwrap();
        assert_eq!(rubric.len(), 4);
        assert!(
            rubric
                .iter()
                .all(|i| i["item"].as_str().unwrap().starts_with("Does the response"))
        );
        let citation = rubric.iter().find(|i| i["types"][0] == "Citation").unwrap();
        assert_eq!(citation["citation"], "7");
        assert!(citation["item"].as_str().unwrap().contains("Okafor"));
    }

    #[test]
    fn crg_answer_has_hard_rules_from_the_prompt_and_principles() {
        let prompt =
            "<conversation>user: give me a bulleted list of pasta sauces in french</conversation>";
        let answer: serde_json::Value =
            serde_json::from_str(&simulated_answer(&request(CRG_TASK, prompt))).unwrap();
        let items = answer["items"].as_array().unwrap();
        let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"hard_rule") && kinds.contains(&"principle"));
        let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
        assert!(
            texts.contains(&"The response is written in French."),
            "{texts:?}"
        );
        assert!(
            texts.contains(&"The response is formatted as a bulleted list."),
            "{texts:?}"
        );
    }

    #[test]
    fn reference_answer_has_weighted_criteria_and_a_pitfall() {
        let prompt = "Write at most 5 criteria.\n<prompt>\nuser: how should tomato seedlings be hardened off\n</prompt>\n\
            <reference_answer>\nMove seedlings outdoors gradually over a week; shelter seedlings from wind.\n</reference_answer>";
        let answer: serde_json::Value =
            serde_json::from_str(&simulated_answer(&request(REFERENCE_TASK, prompt))).unwrap();
        let criteria = answer["criteria"].as_array().unwrap();
        assert!(criteria.len() <= 5 && criteria.len() >= 2, "{criteria:?}");
        let points: Vec<i64> = criteria
            .iter()
            .map(|c| c["points"].as_i64().unwrap())
            .collect();
        assert!(points.iter().all(|p| (-10..=10).contains(p) && *p != 0));
        assert!(criteria.iter().any(|c| c["category"] == "pitfall"));
        assert!(
            criteria[0]["criterion"]
                .as_str()
                .unwrap()
                .contains("seedlings"),
            "{criteria:?}"
        );
    }

    /// The criteria of a reference rubric answer, rendered as the grader prompt lists them.
    fn rendered_criteria(answer: &str) -> (String, Vec<i64>) {
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        let criteria = answer["criteria"].as_array().unwrap();
        let points: Vec<i64> = criteria
            .iter()
            .map(|c| c["points"].as_i64().unwrap())
            .collect();
        let lines: Vec<String> = criteria
            .iter()
            .zip(&points)
            .enumerate()
            .map(|(i, (c, p))| {
                format!(
                    "[{}] ({p:+} points) {}",
                    i + 1,
                    c["criterion"].as_str().unwrap()
                )
            })
            .collect();
        (lines.join("\n"), points)
    }

    /// The points of the criteria a graded response meets.
    fn graded_points(criteria: &str, points: &[i64], response: &str) -> i64 {
        let prompt = format!(
            "<conversation_to_grade>\nuser: q\n</conversation_to_grade>\n<rubric_criteria>\n{criteria}\n\
             </rubric_criteria>\n<graded_response>\n{response}\n</graded_response>"
        );
        let answer: serde_json::Value =
            serde_json::from_str(&simulated_answer(&request(RUBRIC_GRADE_TASK, &prompt))).unwrap();
        let verdicts = answer["verdicts"].as_array().unwrap();
        assert_eq!(verdicts.len(), points.len(), "{answer}");
        verdicts
            .iter()
            .zip(points)
            .filter(|(v, _)| v["met"] == true)
            .map(|(_, p)| p)
            .sum()
    }

    #[test]
    fn the_grader_separates_the_reference_from_its_degraded_answer_and_good_from_poor_responses() {
        let conversation = "user: how should tomato seedlings be hardened off before planting out";
        let reference = "Move the tomato seedlings outdoors gradually over a week, shelter the seedlings \
                         from wind and bring them in at night.";
        let generated = simulated_answer(&request(
            REFERENCE_TASK,
            &format!(
                "Write at most 5 criteria.\n<prompt>\n{conversation}\n</prompt>\n\
                 <reference_answer>\n{reference}\n</reference_answer>"
            ),
        ));
        let (criteria, points) = rendered_criteria(&generated);
        let degraded: serde_json::Value = serde_json::from_str(&simulated_answer(&request(
            REFERENCE_DEGRADE_TASK,
            &format!(
                "<prompt>\n{conversation}\n</prompt>\n<answer_to_degrade>\n{reference}\n</answer_to_degrade>"
            ),
        )))
        .unwrap();
        let degraded = degraded["answer"].as_str().unwrap();
        let best: i64 = points.iter().filter(|p| **p > 0).sum();
        assert_eq!(graded_points(&criteria, &points, reference), best);
        assert!(
            graded_points(&criteria, &points, degraded) < 0,
            "{degraded}"
        );

        let respond = |seed: u64| {
            let mut r = request(
                SCORE_RESPOND_TASK,
                &format!("<conversation_to_answer>\n{conversation}\n</conversation_to_answer>"),
            );
            r.seed = Some(seed);
            let answer: serde_json::Value = serde_json::from_str(&simulated_answer(&r)).unwrap();
            answer["response"].as_str().unwrap().to_owned()
        };
        let good = graded_points(&criteria, &points, &respond(0));
        let poor = graded_points(&criteria, &points, &respond(1));
        assert!(good > poor, "good {good}, poor {poor}");
    }

    #[test]
    fn unknown_tasks_still_get_a_plain_answer() {
        let answer = simulated_answer(&request(
            "something_else",
            "tell me about sourdough starters",
        ));
        assert!(answer.starts_with("simulated answer about"), "{answer}");
    }

    #[test]
    fn answers_are_deterministic() {
        let r = request(
            CRG_TASK,
            "<conversation>user: how do I boil an egg</conversation>",
        );
        assert_eq!(simulated_answer(&r), simulated_answer(&r));
    }
}
