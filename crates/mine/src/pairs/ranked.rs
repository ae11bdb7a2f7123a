//! The ranked layouts, where a record holds several responses ordered by position, score or
//! rank: `listwise`, `ultrafeedback`, `nectar` and `helpsteer`. Each reads its responses into
//! `Ranked` items (text, where they are, and the score they are ordered by); `rank_pairs`
//! then orders them best first (a stable sort: equal scores keep record order) and makes the
//! pairs `input.pairing` asks for:
//!
//! * `listwise` (default): the adjacent pairs of the ranking, then the best against each of
//!   the rest, deduplicated;
//! * `best_vs_worst`: the first best against the last worst.
//!
//! A comparison between two equal scores, two identical texts, or two texts already paired is
//! skipped with its reason ([`SkippedPair`]). Directions are never guessed: each layout's own
//! score field follows its schema (UltraFeedback and HelpSteer quality attributes: higher is
//! better; Nectar `rank`: 1 is the best), and a generic `score` or `rank` field follows
//! `input.score_order`, without which the record is rejected naming that setting.

use std::borrow::Cow;

use rubricmill_core::PreferencePair;
use rubricmill_core::spec::{HelpsteerAttribute, Pairing, ScoreOrder, UltrafeedbackScore};
use serde_json::{Map, Value};

use super::content::{Cx, Msg, content_id, number, type_name};
use super::error::{PairError, SkipReason, SkippedPair};
use super::fields::{item_path, key_path};

/// What a ranked record gives: its pairs and the comparisons that gave none.
pub(super) type RankedPairs = (Vec<PreferencePair>, Vec<SkippedPair>);

/// A score and which way it is better.
#[derive(Debug, Clone)]
struct Score {
    /// What the score is called in reasons (`overall_score`, `rank`, `sum of the HelpSteer
    /// attributes`).
    name: String,
    value: f64,
    order: ScoreOrder,
}

impl Score {
    /// Smaller sorts first (better).
    fn sort_key(&self) -> f64 {
        match self.order {
            ScoreOrder::HigherIsBetter => -self.value,
            ScoreOrder::LowerIsBetter => self.value,
        }
    }
}

/// One response of a ranked record.
struct Ranked<'a> {
    path: String,
    text: Cow<'a, str>,
    score: Option<Score>,
}

/// A generic `score` or `rank` on an item: its direction must come from `input.score_order`.
fn generic_score(
    cx: &Cx<'_>,
    item: &Map<String, Value>,
    at: &str,
) -> Result<Option<Score>, PairError> {
    for key in ["score", "rank"] {
        let Some(v) = item.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let path = key_path(at, key);
        let value = number(v, &path)?;
        let order = cx
            .layout
            .score_order
            .ok_or(PairError::ScoreOrderRequired(path))?;
        return Ok(Some(Score {
            name: key.to_owned(),
            value,
            order,
        }));
    }
    Ok(None)
}

/// The list field `field` of the record.
fn list<'a>(cx: &Cx<'a>, field: &str, expected: &'static str) -> Result<&'a [Value], PairError> {
    match cx.require(field)? {
        Value::Array(items) => Ok(items),
        other => Err(PairError::WrongType {
            field: cx.path(field).to_owned(),
            expected,
            found: type_name(other),
        }),
    }
}

fn object<'a>(
    v: &'a Value,
    at: &str,
    expected: &'static str,
) -> Result<&'a Map<String, Value>, PairError> {
    v.as_object().ok_or_else(|| PairError::WrongType {
        field: at.to_owned(),
        expected,
        found: type_name(v),
    })
}

/// The text of an item: the first of `keys` present.
fn item_text<'a>(
    cx: &Cx<'_>,
    item: &'a Map<String, Value>,
    at: &str,
    keys: &[&str],
) -> Result<Cow<'a, str>, PairError> {
    let (key, v) = keys
        .iter()
        .find_map(|k| item.get(*k).map(|v| (*k, v)))
        .ok_or_else(|| PairError::MissingField(key_path(at, keys[0])))?;
    cx.text(v, &key_path(at, key))
}

/// `listwise`: `{prompt, responses}`; responses are strings (best first) or objects with the
/// text in `text`, `content`, `response`, `value` or `answer`, and optionally a `score` or
/// `rank` on every one (direction from `input.score_order`).
pub(super) fn listwise_pairs(cx: &Cx<'_>) -> Result<RankedPairs, PairError> {
    let prompt = cx.prompt(cx.require("prompt")?, cx.path("prompt"))?;
    let path = cx.path("responses");
    let items = list(cx, "responses", "a list of responses, best first")?;
    let mut ranked = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = item_path(path, i);
        let item = match v {
            Value::String(s) => Ranked {
                path: at,
                text: Cow::Borrowed(s),
                score: None,
            },
            Value::Object(o) => Ranked {
                text: item_text(
                    cx,
                    o,
                    &at,
                    &["text", "content", "response", "value", "answer"],
                )?,
                score: generic_score(cx, o, &at)?,
                path: at,
            },
            other => {
                return Err(PairError::WrongType {
                    field: at,
                    expected: "a string or a {text, score|rank} object",
                    found: type_name(other),
                });
            }
        };
        ranked.push(item);
    }
    if let Some(first) = ranked.first()
        && let Some(odd) = ranked
            .iter()
            .find(|r| r.score.as_ref().map(|s| &s.name) != first.score.as_ref().map(|s| &s.name))
    {
        return Err(PairError::WrongType {
            field: odd.path.clone(),
            expected: "the same ranking key (score, rank or none) as the first response",
            found: "another key",
        });
    }
    rank_pairs(cx, prompt, ranked)
}

/// `ultrafeedback`: `{instruction, completions: [{response, overall_score,
/// fine-grained_score, annotations}]}`, ranked by `input.ultrafeedback_score` (higher is
/// better).
pub(super) fn ultrafeedback_pairs(cx: &Cx<'_>) -> Result<RankedPairs, PairError> {
    let prompt = cx.prompt(cx.require("instruction")?, cx.path("instruction"))?;
    let path = cx.path("completions");
    let items = list(
        cx,
        "completions",
        "a list of {response, overall_score} completions",
    )?;
    let which = cx.layout.ultrafeedback_score;
    let mut ranked = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = item_path(path, i);
        let item = object(v, &at, "a {response, overall_score} completion")?;
        let text = item_text(cx, item, &at, &["response"])?;
        let score = match ultrafeedback_score(item, &at, which)? {
            Some(value) => Score {
                name: which.as_str().to_owned(),
                value,
                order: ScoreOrder::HigherIsBetter,
            },
            None => generic_score(cx, item, &at)?.ok_or_else(|| {
                let key = match which {
                    UltrafeedbackScore::OverallScore => "overall_score",
                    UltrafeedbackScore::FineGrainedScore => "fine-grained_score",
                    UltrafeedbackScore::MeanRating => "annotations",
                };
                PairError::MissingField(key_path(&at, key))
            })?,
        };
        ranked.push(Ranked {
            path: at,
            text,
            score: Some(score),
        });
    }
    rank_pairs(cx, prompt, ranked)
}

/// The chosen UltraFeedback score of one completion, `None` when it has none.
fn ultrafeedback_score(
    item: &Map<String, Value>,
    at: &str,
    which: UltrafeedbackScore,
) -> Result<Option<f64>, PairError> {
    let field = |key: &'static str| item.get(key).filter(|v| !v.is_null()).map(|v| (key, v));
    match which {
        UltrafeedbackScore::OverallScore => field("overall_score")
            .map(|(k, v)| number(v, &key_path(at, k)))
            .transpose(),
        UltrafeedbackScore::FineGrainedScore => field("fine-grained_score")
            .or_else(|| field("fine_grained_score"))
            .map(|(k, v)| number(v, &key_path(at, k)))
            .transpose(),
        UltrafeedbackScore::MeanRating => {
            let Some((_, annotations)) = field("annotations") else {
                return Ok(None);
            };
            let annotations_path = key_path(at, "annotations");
            let aspects = object(
                annotations,
                &annotations_path,
                "an object of {Rating} per aspect",
            )?;
            let mut ratings = Vec::new();
            for (aspect, v) in aspects {
                let aspect_path = key_path(&annotations_path, aspect);
                let entries: Vec<(String, &Value)> = match v {
                    Value::Array(list) => list
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (item_path(&aspect_path, i), e))
                        .collect(),
                    other => vec![(aspect_path, other)],
                };
                for (entry_path, entry) in entries {
                    let entry = object(entry, &entry_path, "a {Rating, Rationale} annotation")?;
                    let rating_path = key_path(&entry_path, "Rating");
                    match entry.get("Rating") {
                        None => return Err(PairError::MissingField(rating_path)),
                        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case("n/a") => {}
                        Some(r) => ratings.push(number(r, &rating_path)?),
                    }
                }
            }
            if ratings.is_empty() {
                return Err(PairError::MissingField(key_path(
                    &annotations_path,
                    "<aspect>.Rating",
                )));
            }
            Ok(Some(ratings.iter().sum::<f64>() / ratings.len() as f64))
        }
    }
}

/// `nectar`: `{prompt, answers: [{answer, rank}]}` with rank 1 the best.
pub(super) fn nectar_pairs(cx: &Cx<'_>) -> Result<RankedPairs, PairError> {
    let prompt = cx.prompt(cx.require("prompt")?, cx.path("prompt"))?;
    let path = cx.path("answers");
    let items = list(cx, "answers", "a list of {answer, rank} answers")?;
    let mut ranked = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = item_path(path, i);
        let item = object(v, &at, "an {answer, rank} answer")?;
        let text = item_text(cx, item, &at, &["answer"])?;
        let score = match item.get("rank").filter(|v| !v.is_null()) {
            Some(rank) => Score {
                name: "rank".to_owned(),
                value: number(rank, &key_path(&at, "rank"))?,
                order: ScoreOrder::LowerIsBetter,
            },
            None => generic_score(cx, item, &at)?
                .ok_or_else(|| PairError::MissingField(key_path(&at, "rank")))?,
        };
        ranked.push(Ranked {
            path: at,
            text,
            score: Some(score),
        });
    }
    rank_pairs(cx, prompt, ranked)
}

/// Does this object carry a HelpSteer attribute (for detection)?
pub(super) fn has_helpsteer_attribute(item: &Value) -> bool {
    item.as_object().is_some_and(|o| {
        HelpsteerAttribute::ATTRIBUTES
            .iter()
            .any(|a| o.get(*a).is_some_and(|v| !v.is_null()))
    })
}

/// `helpsteer`: `{prompt, responses: [{response, helpfulness, correctness, coherence,
/// complexity, verbosity}]}`, ranked by `input.helpsteer_attribute`. A single HelpSteer row
/// (`{prompt, response, helpfulness, …}`) has nothing to compare and is rejected saying so.
pub(super) fn helpsteer_pairs(cx: &Cx<'_>) -> Result<RankedPairs, PairError> {
    if cx.get("responses").is_none() && cx.get("response").is_some() {
        return Err(PairError::OneResponse(
            "a HelpSteer row; group the rows of one prompt into {prompt, responses: [{response, helpfulness, …}]}",
        ));
    }
    let prompt = cx.prompt(cx.require("prompt")?, cx.path("prompt"))?;
    let path = cx.path("responses");
    let items = list(
        cx,
        "responses",
        "a list of {response, helpfulness, …} responses",
    )?;
    let attribute = cx.layout.helpsteer_attribute;
    let order = attribute.documented_order().or(cx.layout.score_order);
    let mut ranked = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let at = item_path(path, i);
        let item = object(v, &at, "a {response, helpfulness, …} response")?;
        let text = item_text(cx, item, &at, &["response", "text"])?;
        let value = match attribute {
            HelpsteerAttribute::Sum => {
                let mut sum = 0.0;
                for name in HelpsteerAttribute::ATTRIBUTES {
                    let v = item
                        .get(*name)
                        .filter(|v| !v.is_null())
                        .ok_or_else(|| PairError::MissingField(key_path(&at, name)))?;
                    sum += number(v, &key_path(&at, name))?;
                }
                Some(sum)
            }
            single => item
                .get(single.as_str())
                .filter(|v| !v.is_null())
                .map(|v| number(v, &key_path(&at, single.as_str())))
                .transpose()?,
        };
        let score = match value {
            Some(value) => Score {
                name: match attribute {
                    HelpsteerAttribute::Sum => "sum of the HelpSteer attributes".to_owned(),
                    single => single.as_str().to_owned(),
                },
                value,
                order: order.ok_or_else(|| {
                    PairError::ScoreOrderRequired(key_path(&at, attribute.as_str()))
                })?,
            },
            None => generic_score(cx, item, &at)?
                .ok_or_else(|| PairError::MissingField(key_path(&at, attribute.as_str())))?,
        };
        ranked.push(Ranked {
            path: at,
            text,
            score: Some(score),
        });
    }
    rank_pairs(cx, prompt, ranked)
}

/// Orders the responses best first and makes the pairs `input.pairing` asks for, recording
/// every comparison that gives none. With a record `id`, pair ids are `"{id}-{i}-{j}"`
/// (positions in the best-first order); otherwise they derive from the content.
fn rank_pairs(
    cx: &Cx<'_>,
    prompt: Vec<Msg<'_>>,
    mut items: Vec<Ranked<'_>>,
) -> Result<RankedPairs, PairError> {
    let id = cx.record_id()?;
    if items.len() < 2 {
        return Err(PairError::NoPairs("fewer than two responses"));
    }
    for item in &mut items {
        item.text = match std::mem::take(&mut item.text) {
            Cow::Borrowed(t) => Cow::Borrowed(t.trim()),
            Cow::Owned(t) => Cow::Owned(t.trim().to_owned()),
        };
        if item.text.is_empty() {
            return Err(PairError::EmptyListedResponse(item.path.clone()));
        }
    }
    if !prompt.iter().any(|m| !m.content.trim().is_empty()) {
        return Err(PairError::EmptyPrompt);
    }
    // Stable: equal scores keep record order.
    if items.iter().all(|i| i.score.is_some()) {
        items.sort_by(|a, b| {
            let key = |r: &Ranked<'_>| r.score.as_ref().map_or(0.0, Score::sort_key);
            key(a).total_cmp(&key(b))
        });
    }
    let n = items.len();
    let candidates: Vec<(usize, usize)> = match cx.layout.pairing {
        Pairing::Listwise => (0..n - 1)
            .map(|i| (i, i + 1))
            .chain((2..n).map(|j| (0, j)))
            .collect(),
        Pairing::BestVsWorst => vec![(0, n - 1)],
    };
    let prompt: Vec<_> = prompt.iter().map(Msg::to_message).collect();
    let mut seen: Vec<(&str, &str)> = Vec::new();
    let mut pairs = Vec::new();
    let mut skipped = Vec::new();
    for (i, j) in candidates {
        let (better, worse) = (&items[i], &items[j]);
        let skip = |reason| SkippedPair {
            better: better.path.clone(),
            worse: worse.path.clone(),
            reason,
            better_text: better.text.to_string(),
            worse_text: worse.text.to_string(),
        };
        if let (Some(a), Some(b)) = (&better.score, &worse.score)
            && a.value == b.value
        {
            skipped.push(skip(SkipReason::Tie {
                key: a.name.clone(),
                value: a.value,
            }));
            continue;
        }
        let texts = (better.text.as_ref(), worse.text.as_ref());
        if texts.0 == texts.1 {
            skipped.push(skip(SkipReason::IdenticalTexts));
            continue;
        }
        if seen.contains(&texts) {
            skipped.push(skip(SkipReason::Repeated));
            continue;
        }
        seen.push(texts);
        let pair_id = match &id {
            Some(id) => format!("{id}-{i}-{j}"),
            None => content_id(&prompt, texts.0, texts.1),
        };
        pairs.push(PreferencePair {
            pair_id,
            prompt: prompt.clone(),
            chosen: texts.0.to_owned(),
            rejected: texts.1.to_owned(),
        });
    }
    Ok((pairs, skipped))
}
