//! Grading a response against a weighted rubric (template `rubric_grade`), shared by the
//! reference pipeline's self-check and the score pipeline.
//!
//! One call grades every criterion for one response: the criteria are shown numbered with their
//! points (`[1] (+8 points) The response …`), the answer is `{"verdicts": [{criterion, met,
//! rationale}]}`. The score is HealthBench's: the points of the met criteria (a met pitfall
//! subtracts its points) over the sum of the positive points, clipped to [0, 1]. A criterion the
//! judge gave no verdict on counts as not met; an answer with verdicts on fewer than half of the
//! criteria is unusable (the gateway repairs it once, then the grade fails).

use std::sync::Arc;

use rubricmill_core::{CriterionVerdict, Message, Usage};
use rubricmill_llm::scope::in_stage;
use rubricmill_llm::simulated::RUBRIC_GRADE_TASK;
use rubricmill_llm::structured::extract_json;
use rubricmill_llm::{ChatRequest, Gateway, LlmError, ResponseFormat};
use serde_json::{Value, json};

use crate::pipeline::{StageModel, Stages};
use crate::prompt::Template;

/// Output tokens of a typical grading answer per criterion, for estimates.
pub const TYPICAL_TOKENS_PER_CRITERION: u64 = 30;

/// One criterion as the grader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GradeCriterion<'a> {
    pub text: &'a str,
    pub points: i32,
}

/// The numbered criteria as the grading prompt shows them.
pub fn criteria_text(criteria: &[GradeCriterion<'_>]) -> String {
    criteria
        .iter()
        .enumerate()
        .map(|(i, c)| format!("[{}] ({:+} points) {}", i + 1, c.points, one_line(c.text)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The conversation as the prompts show it: `role: content` turns separated by blank lines.
pub fn conversation_text(prompt: &[Message]) -> String {
    prompt
        .iter()
        .map(|m| format!("{}: {}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Verdicts from a grading answer, one per criterion (0-based `criterion`), in rubric order.
pub fn parse_verdicts(answer: &str, criteria: usize) -> Result<Vec<CriterionVerdict>, String> {
    let value = extract_json(answer).map_err(|e| e.to_string())?;
    let list = value.get("verdicts").and_then(Value::as_array).ok_or(
        "give {\"verdicts\": [{\"criterion\": 1, \"met\": true, \"rationale\": \"...\"}]}",
    )?;
    let mut verdicts: Vec<CriterionVerdict> = (0..criteria)
        .map(|i| CriterionVerdict {
            criterion: i as u32,
            met: None,
            rationale: String::new(),
        })
        .collect();
    for (index, item) in numbered_entries(list, "criterion", criteria) {
        let met = match item.get("met") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "met" => Some(true),
                "false" | "no" | "not met" | "unmet" => Some(false),
                _ => None,
            },
            _ => None,
        };
        let slot = &mut verdicts[index];
        if slot.met.is_some() {
            continue;
        }
        slot.met = met;
        slot.rationale = item
            .get("rationale")
            .and_then(Value::as_str)
            .map(|r| r.trim().to_owned())
            .unwrap_or_default();
    }
    let given = verdicts.iter().filter(|v| v.met.is_some()).count();
    if given * 2 < criteria {
        return Err(format!(
            "verdicts on {given} of {criteria} criteria; give one per criterion"
        ));
    }
    Ok(verdicts)
}

/// The entries of a numbered answer list, each with the 0-based index of the item it is about:
/// the 1-based number under `key` (a number, or a string such as `"[2]"`), else the entry's
/// position. Entries numbered outside `1..=count` are skipped.
pub(crate) fn numbered_entries<'a>(
    list: &'a [Value],
    key: &'a str,
    count: usize,
) -> impl Iterator<Item = (usize, &'a Value)> + 'a {
    list.iter().enumerate().filter_map(move |(position, item)| {
        let number = match item.get(key) {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(Value::String(s)) => s.trim().trim_matches(['[', ']']).parse().ok(),
            _ => Some(position + 1),
        };
        let index = number
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < count)?;
        Some((index, item))
    })
}

/// HealthBench's score: points of met criteria over the sum of positive points, clipped to
/// [0, 1]. `None` when the rubric has no positive points.
pub fn score(points: &[i32], verdicts: &[CriterionVerdict]) -> Option<f64> {
    let possible: i64 = points
        .iter()
        .filter(|p| **p > 0)
        .map(|p| i64::from(*p))
        .sum();
    if possible == 0 {
        return None;
    }
    let earned: i64 = verdicts
        .iter()
        .filter(|v| v.met == Some(true))
        .filter_map(|v| points.get(v.criterion as usize))
        .map(|p| i64::from(*p))
        .sum();
    Some((earned as f64 / possible as f64).clamp(0.0, 1.0))
}

/// Grades responses with the `rubric_grade` template through one stage's gateway.
#[derive(Clone)]
pub struct Grader {
    gateway: Arc<Gateway>,
    model: StageModel,
    template: Template,
}

impl Grader {
    /// The grader of stage `stage` (usually `judge`).
    pub fn new(stages: &Stages, stage: &str) -> Self {
        let (gateway, model) = stages.get(stage);
        Self {
            gateway,
            model,
            template: stages.templates.get("rubric_grade"),
        }
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    pub fn model(&self) -> &str {
        &self.model.model
    }

    pub fn template(&self) -> &Template {
        &self.template
    }

    fn response_format() -> ResponseFormat {
        ResponseFormat {
            name: RUBRIC_GRADE_TASK.into(),
            schema: json!({
                "type": "object",
                "required": ["verdicts"],
                "properties": {"verdicts": {"type": "array", "items": {
                    "type": "object",
                    "required": ["criterion", "met"],
                    "properties": {
                        "criterion": {"type": "integer"},
                        "met": {"type": "boolean"},
                        "rationale": {"type": "string"}
                    }
                }}}
            }),
        }
    }

    /// The grading request for one response.
    pub fn request(
        &self,
        conversation: &str,
        criteria: &[GradeCriterion<'_>],
        response: &str,
        seed: Option<u64>,
    ) -> ChatRequest {
        ChatRequest {
            model: self.model.model.clone(),
            messages: self.template.render(&[
                ("conversation", conversation),
                ("criteria", &criteria_text(criteria)),
                ("response", response),
            ]),
            temperature: self.model.temperature,
            max_tokens: self.model.max_tokens,
            seed: seed.or(self.model.seed),
            response_format: Some(Self::response_format()),
        }
    }

    /// Grades one response; the usage is what the call cost, whatever its outcome.
    pub async fn grade(
        &self,
        conversation: &str,
        criteria: &[GradeCriterion<'_>],
        response: &str,
        seed: Option<u64>,
    ) -> (Result<Vec<CriterionVerdict>, LlmError>, Usage) {
        let request = self.request(conversation, criteria, response, seed);
        let count = criteria.len();
        in_stage(
            "judge",
            self.gateway
                .chat_parsed(&request, |answer| parse_verdicts(answer, count)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_are_numbered_with_signed_points_on_one_line() {
        let text = criteria_text(&[
            GradeCriterion {
                text: "The response names\n yeast.",
                points: 8,
            },
            GradeCriterion {
                text: "The response recommends bleach.",
                points: -6,
            },
        ]);
        assert_eq!(
            text,
            "[1] (+8 points) The response names yeast.\n[2] (-6 points) The response recommends bleach."
        );
    }

    #[test]
    fn verdicts_are_read_by_number_and_missing_ones_stay_unknown() {
        let answer = r#"{"verdicts": [
            {"criterion": 2, "met": false, "rationale": "No bleach."},
            {"criterion": 1, "met": "yes", "rationale": "Names yeast."},
            {"criterion": 9, "met": true},
            {"criterion": 1, "met": false}
        ]}"#;
        let verdicts = parse_verdicts(answer, 3).unwrap();
        assert_eq!(verdicts.len(), 3);
        assert_eq!(verdicts[0].met, Some(true));
        assert_eq!(verdicts[0].rationale, "Names yeast.");
        assert_eq!(verdicts[1].met, Some(false));
        assert_eq!(verdicts[2].met, None);
        let too_few = parse_verdicts(r#"{"verdicts": [{"criterion": 1, "met": true}]}"#, 3);
        assert!(too_few.unwrap_err().contains("1 of 3"));
        assert!(parse_verdicts("no json here", 2).is_err());
    }

    #[test]
    fn score_is_healthbench_points_over_positive_points_clipped() {
        let verdict = |criterion: u32, met: Option<bool>| CriterionVerdict {
            criterion,
            met,
            rationale: String::new(),
        };
        let points = [8, 4, -6];
        // Both positives met, pitfall avoided: 12 / 12.
        let best = [
            verdict(0, Some(true)),
            verdict(1, Some(true)),
            verdict(2, Some(false)),
        ];
        assert_eq!(score(&points, &best), Some(1.0));
        // One positive and the pitfall: (8 - 6) / 12.
        let mixed = [
            verdict(0, Some(true)),
            verdict(1, None),
            verdict(2, Some(true)),
        ];
        assert!((score(&points, &mixed).unwrap() - 2.0 / 12.0).abs() < 1e-9);
        // Only the pitfall: clipped at 0.
        let worst = [
            verdict(0, Some(false)),
            verdict(1, Some(false)),
            verdict(2, Some(true)),
        ];
        assert_eq!(score(&points, &worst), Some(0.0));
        assert_eq!(score(&[-3], &[verdict(0, Some(false))]), None);
    }
}
