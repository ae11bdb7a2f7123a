//! Pair normalisation over the project's own layout samples (`samples/pairs/layouts/*.ndjson`,
//! written for these tests from each layout's public schema description): every record is
//! read as the layout auto-detection picks, gives exactly the pairs and skipped comparisons
//! expected, or is rejected with the expected reason; and the settings that change the reading
//! (`pairing`, `score_order`, `drop_non_text`, `helpsteer_attribute`, `ultrafeedback_score`)
//! change it as documented.

use std::path::PathBuf;

use rubricmill_core::spec::{
    HelpsteerAttribute, LayoutSpec, Pairing, ScoreOrder, UltrafeedbackScore,
};
use rubricmill_core::{Message, PairLayout};
use rubricmill_mine::pairs::{FieldMap, Normalized, PairReader, RecordError};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../samples/pairs/layouts")
        .join(name)
}

/// Every record of a sample, read with `layout`.
fn read_sample(name: &str, layout: LayoutSpec) -> Vec<Result<Normalized, RecordError>> {
    let text = std::fs::read_to_string(sample(name)).expect("sample file");
    let reader = PairReader::new(layout, FieldMap::default());
    text.lines()
        .map(|line| {
            let record: serde_json::Value =
                serde_json::from_str(line).expect("sample line is JSON");
            reader.read(&record)
        })
        .collect()
}

/// What one record should give.
#[derive(Debug)]
enum Expect {
    /// Read as this layout: this many pairs and skipped comparisons.
    Pairs(PairLayout, usize, usize),
    /// Rejected with exactly this reason.
    Reject(&'static str),
}
use Expect::{Pairs, Reject};

/// Checks every record against `expected`; returns the records that were read, in order (the
/// rejected ones left out, so indices skip them).
fn check(name: &str, layout: LayoutSpec, expected: &[Expect]) -> Vec<Normalized> {
    let results = read_sample(name, layout);
    assert_eq!(results.len(), expected.len(), "{name}: record count");
    let mut read = Vec::new();
    for (line, (result, want)) in results.into_iter().zip(expected).enumerate() {
        let line = line + 1;
        match (result, want) {
            (Ok(n), Pairs(layout, pairs, skipped)) => {
                assert_eq!(n.layout, *layout, "{name} line {line}");
                assert_eq!(
                    (n.pairs.len(), n.skipped.len()),
                    (*pairs, *skipped),
                    "{name} line {line}: pairs and skipped: {:?}",
                    n.skipped
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                );
                for pair in &n.pairs {
                    assert!(!pair.chosen.is_empty() && !pair.rejected.is_empty());
                    assert_ne!(pair.chosen, pair.rejected);
                    assert_eq!(pair.prompt.last().map(|m| m.role.as_str()), Some("user"));
                }
                read.push(n);
            }
            (Err(e), Reject(reason)) => assert_eq!(e.to_string(), *reason, "{name} line {line}"),
            (got, want) => panic!("{name} line {line}: expected {want:?}, got {got:?}"),
        }
    }
    read
}

fn auto() -> LayoutSpec {
    LayoutSpec::default()
}

fn user(s: &str) -> Message {
    Message::new("user", s)
}

#[test]
fn llama_factory_current_layout_with_typed_parts() {
    let read = check(
        "llama-factory.ndjson",
        auto(),
        &[
            Pairs(PairLayout::LlamaFactory, 1, 0),
            Pairs(PairLayout::LlamaFactory, 1, 0),
            Reject(
                "field `chosen_messages.0.content.0`: non-text content part `image_url`; set input.drop_non_text = true to keep only the text parts (read as llama-factory)",
            ),
            Reject("chosen does not end with an assistant turn (read as llama-factory)"),
            Pairs(PairLayout::LlamaFactory, 1, 0),
        ],
    );
    assert_eq!(
        read[0].pairs[0].prompt,
        vec![
            Message::new("system", "You are a patient cooking tutor."),
            user("Why does my risotto turn out gluey?")
        ]
    );
    assert_eq!(read[1].pairs[0].prompt.len(), 3);
    assert!(read[0].pairs[0].chosen.starts_with("Usually it is stirred"));

    // With drop_non_text the image part is left out and the text part kept.
    let drop = LayoutSpec {
        drop_non_text: true,
        ..auto()
    };
    let results = read_sample("llama-factory.ndjson", drop);
    let pair = &results[2].as_ref().unwrap().pairs[0];
    assert_eq!(
        pair.prompt,
        vec![user(
            "What is causing these brown spots on my tomato leaves?"
        )]
    );
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 4);
}

#[test]
fn llama_factory_previous_alpaca_and_sharegpt_layouts() {
    let read = check(
        "llama-factory-alpaca.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Alpaca, 1, 0),
            Pairs(PairLayout::Alpaca, 1, 0),
            Pairs(PairLayout::Alpaca, 1, 0),
            Reject("chosen and rejected responses are identical (read as alpaca)"),
        ],
    );
    let first = &read[0].pairs[0].prompt;
    assert_eq!(first.len(), 1);
    assert!(
        first[0]
            .content
            .starts_with("Summarise the following note in one sentence.\nThe team moved")
    );
    assert_eq!(
        read[1].pairs[0].prompt[0],
        Message::new("system", "Answer as a friendly librarian.")
    );
    let history = &read[2].pairs[0].prompt;
    assert_eq!(
        history.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
        ["user", "assistant", "user"]
    );
    assert_eq!(history[2], user("And how long should I let it rest?"));

    let read = check(
        "llama-factory-sharegpt.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Sharegpt, 1, 0),
            Pairs(PairLayout::Sharegpt, 1, 0),
            Pairs(PairLayout::Sharegpt, 1, 0),
            Reject("chosen does not end with an assistant turn (read as sharegpt)"),
        ],
    );
    assert_eq!(read[1].pairs[0].prompt[0].role, "system");
    assert_eq!(read[2].pairs[0].prompt.len(), 3);
}

#[test]
fn trl_standard_explicit_and_implicit_prompts() {
    let read = check(
        "trl-standard.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Strings, 1, 0),
            Pairs(PairLayout::Strings, 1, 0),
            Pairs(PairLayout::TrlImplicit, 1, 0),
            Pairs(PairLayout::TrlImplicit, 1, 0),
            Reject(
                "missing field `prompt`, and chosen and rejected share no leading text to take as the prompt (read as trl-implicit)",
            ),
        ],
    );
    let implicit = &read[2].pairs[0];
    assert_eq!(implicit.prompt, vec![user("The capital of Australia is")]);
    assert_eq!(
        (implicit.chosen.as_str(), implicit.rejected.as_str()),
        ("Canberra.", "Sydney.")
    );
    let qa = &read[3].pairs[0];
    assert_eq!(
        qa.prompt,
        vec![user("Q: How many legs does a spider have?\nA:")]
    );
    assert_eq!(qa.chosen, "Eight.");
}

#[test]
fn trl_conversational_explicit_and_implicit_prompts() {
    let read = check(
        "trl-conversational.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Messages, 1, 0),
            Pairs(PairLayout::Messages, 1, 0),
            Pairs(PairLayout::Messages, 1, 0),
            Pairs(PairLayout::Messages, 1, 0),
            Reject(
                "chosen and rejected differ before their final assistant turn (at turn 1) (read as messages)",
            ),
        ],
    );
    assert_eq!(read[1].pairs[0].prompt[0].role, "system");
    assert_eq!(read[3].pairs[0].prompt.len(), 3);
    assert_eq!(read[3].pairs[0].rejected, "20.");
}

#[test]
fn openai_messages_with_content_parts() {
    let read = check(
        "openai-messages.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Messages, 1, 0),
            Pairs(PairLayout::Messages, 1, 0),
            Reject(
                "field `chosen.0.content.1`: non-text content part `image_url`; set input.drop_non_text = true to keep only the text parts (read as messages)",
            ),
            Pairs(PairLayout::Messages, 1, 0),
        ],
    );
    assert_eq!(
        read[0].pairs[0].prompt[1],
        user("I have one day in Lisbon.\nWhat should I not miss?")
    );
    // Line 4 (line 3 was rejected): OpenAI's `developer` role is a system turn.
    assert_eq!(
        read[2].pairs[0].prompt[0],
        Message::new("system", "Answer with a number only.")
    );
    assert_eq!(read[2].pairs[0].chosen, "180");
    let drop = LayoutSpec {
        drop_non_text: true,
        ..auto()
    };
    let results = read_sample("openai-messages.ndjson", drop);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        results[2].as_ref().unwrap().pairs[0].prompt,
        vec![user("What breed is the dog in this photo?")]
    );
}

#[test]
fn ultrafeedback_listwise_best_vs_worst_and_mean_rating() {
    let read = check(
        "ultrafeedback.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Ultrafeedback, 5, 0),
            Pairs(PairLayout::Ultrafeedback, 4, 1),
            Pairs(PairLayout::Ultrafeedback, 0, 3),
            Reject(
                "field `completions.1.overall_score`: expected a number, found string (read as ultrafeedback)",
            ),
            Pairs(PairLayout::Ultrafeedback, 1, 0),
        ],
    );
    // Best first by overall_score; the tie between the two 7.0 completions is skipped.
    assert_eq!(
        read[1].skipped[0].to_string(),
        "tie: `completions.0` and `completions.1` have the same overall_score (7), so neither is preferred"
    );
    assert!(read[0].pairs[0].chosen.starts_with("Leaves are green"));
    assert_eq!(read[0].pairs.last().unwrap().rejected, "Autumn.");
    assert_eq!(
        read[0].pairs[0].prompt,
        vec![user("Explain why leaves change colour in autumn.")]
    );

    let best = LayoutSpec {
        pairing: Pairing::BestVsWorst,
        ..auto()
    };
    let read = check(
        "ultrafeedback.ndjson",
        best,
        &[
            Pairs(PairLayout::Ultrafeedback, 1, 0),
            Pairs(PairLayout::Ultrafeedback, 1, 0),
            Pairs(PairLayout::Ultrafeedback, 0, 1),
            Reject(
                "field `completions.1.overall_score`: expected a number, found string (read as ultrafeedback)",
            ),
            Pairs(PairLayout::Ultrafeedback, 1, 0),
        ],
    );
    assert_eq!(read[0].pairs[0].rejected, "Autumn.");
    assert_eq!(read[1].pairs[0].rejected, "Focus harder.");

    // The mean of the annotation ratings separates every completion of the sample.
    let mean = LayoutSpec {
        ultrafeedback_score: UltrafeedbackScore::MeanRating,
        ..auto()
    };
    let read = check(
        "ultrafeedback.ndjson",
        mean,
        &[
            Pairs(PairLayout::Ultrafeedback, 5, 0),
            Pairs(PairLayout::Ultrafeedback, 5, 0),
            Pairs(PairLayout::Ultrafeedback, 3, 0),
            Pairs(PairLayout::Ultrafeedback, 1, 0),
            Pairs(PairLayout::Ultrafeedback, 1, 0),
        ],
    );
    // 4.75 (m-a) > 4.5 (m-c) > 4.25 (m-b).
    assert!(read[2].pairs[0].chosen.starts_with("No. Use certified"));
    assert!(read[2].pairs[0].rejected.starts_with("Only use proper"));
}

#[test]
fn nectar_ranks_one_is_best() {
    let read = check(
        "nectar.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Nectar, 5, 0),
            Pairs(PairLayout::Nectar, 2, 1),
            Reject("missing field `answers.1.rank` (read as nectar)"),
            Pairs(PairLayout::Nectar, 3, 0),
        ],
    );
    assert!(
        read[0].pairs[0]
            .chosen
            .starts_with("Give it at least six hours")
    );
    assert_eq!(read[0].pairs[2].rejected, "Plants die, buy a new one.");
    assert_eq!(
        read[1].pairs[0].prompt,
        vec![
            user("I'm planning a picnic."),
            Message::new("assistant", "Nice! Where are you going?"),
            user("A park by the river. What food travels well?")
        ]
    );
    assert_eq!(read[1].skipped[0].kind(), "tie");
    // Line 4 (line 3 was rejected).
    assert_eq!(read[2].pairs[0].chosen, "The Keeper of the Last Light");
    // A stated direction that contradicts Nectar's is refused by the spec, not used here: the
    // layout's own `rank` always reads 1 as the best.
    let stated = LayoutSpec {
        score_order: Some(ScoreOrder::LowerIsBetter),
        ..auto()
    };
    assert_eq!(
        read_sample("nectar.ndjson", stated)[0]
            .as_ref()
            .unwrap()
            .pairs[0]
            .chosen,
        read[0].pairs[0].chosen
    );
}

#[test]
fn helpsteer_by_attribute_or_sum() {
    check(
        "helpsteer.ndjson",
        auto(),
        &[
            Pairs(PairLayout::Helpsteer, 1, 0),
            Pairs(PairLayout::Helpsteer, 2, 1),
            Reject(
                "record holds one response, so nothing to compare: a HelpSteer row; group the rows of one prompt into {prompt, responses: [{response, helpfulness, …}]} (read as helpsteer)",
            ),
            Pairs(PairLayout::Helpsteer, 0, 1),
        ],
    );
    let sum = LayoutSpec {
        helpsteer_attribute: HelpsteerAttribute::Sum,
        ..auto()
    };
    let read = check(
        "helpsteer.ndjson",
        sum,
        &[
            Pairs(PairLayout::Helpsteer, 1, 0),
            Pairs(PairLayout::Helpsteer, 2, 1),
            Reject(
                "record holds one response, so nothing to compare: a HelpSteer row; group the rows of one prompt into {prompt, responses: [{response, helpfulness, …}]} (read as helpsteer)",
            ),
            Pairs(PairLayout::Helpsteer, 1, 0),
        ],
    );
    // Line 4 (line 3 was rejected).
    assert!(read[2].pairs[0].chosen.starts_with("Lower the egg"));
    assert!(
        read[1].skipped[0]
            .to_string()
            .contains("sum of the HelpSteer attributes (14)")
    );
    // Verbosity measures amount: without a stated direction the record is rejected.
    let verbosity = LayoutSpec {
        helpsteer_attribute: HelpsteerAttribute::Verbosity,
        ..auto()
    };
    let results = read_sample("helpsteer.ndjson", verbosity);
    assert_eq!(
        results[0].as_ref().unwrap_err().to_string(),
        "field `responses.0.verbosity`: which way this score is better is not documented for this layout; set input.score_order = \"higher_is_better\" or \"lower_is_better\" (read as helpsteer)"
    );
    let terse = LayoutSpec {
        helpsteer_attribute: HelpsteerAttribute::Verbosity,
        score_order: Some(ScoreOrder::LowerIsBetter),
        ..auto()
    };
    let results = read_sample("helpsteer.ndjson", terse);
    assert_eq!(
        results[0].as_ref().unwrap().pairs[0].chosen,
        "A kind of poem."
    );
}

#[test]
fn argilla_and_distilabel_dpo_exports_with_ties() {
    let read = check(
        "argilla-dpo.ndjson",
        auto(),
        &[
            Pairs(PairLayout::ArgillaDpo, 1, 0),
            Pairs(PairLayout::ArgillaDpo, 1, 0),
            Pairs(PairLayout::ArgillaDpo, 1, 0),
            Pairs(PairLayout::ArgillaDpo, 0, 1),
            Pairs(PairLayout::ArgillaDpo, 0, 1),
        ],
    );
    assert_eq!(
        read[0].pairs[0].prompt,
        vec![user("What is the difference between weather and climate?")]
    );
    assert_eq!(
        read[2].pairs[0].prompt,
        vec![
            Message::new("system", "You are an assistant that answers precisely."),
            user("Which is heavier, a kilogram of feathers or a kilogram of iron?")
        ]
    );
    assert_eq!(
        read[3].skipped[0].to_string(),
        "tie: `chosen_rating` and `rejected_rating` are both 4, so neither response is preferred"
    );
    assert_eq!(
        read[4].skipped[0].to_string(),
        "tie: `status` is \"tie\", so neither response is preferred"
    );
}

#[test]
fn anthropic_hh_with_a_separate_prompt() {
    let read = check(
        "hh-prompt.ndjson",
        auto(),
        &[
            Pairs(PairLayout::HhRlhf, 1, 0),
            Pairs(PairLayout::HhRlhf, 1, 0),
            Pairs(PairLayout::HhRlhf, 1, 0),
            Reject(
                "chosen transcript does not begin with the `prompt` turns (differs at turn 1) (read as hh-rlhf)",
            ),
        ],
    );
    assert_eq!(
        read[0].pairs[0].prompt,
        vec![user("What's a good houseplant for a dark room?")]
    );
    assert!(read[0].pairs[0].chosen.starts_with("A snake plant"));
    assert_eq!(read[1].pairs[0].prompt.len(), 3);
    assert_eq!(read[2].pairs[0].rejected, "Take your glasses off.");
}

#[test]
fn generic_scores_need_a_stated_direction() {
    let reason = "field `responses.0.score`: which way this score is better is not documented for this layout; set input.score_order = \"higher_is_better\" or \"lower_is_better\" (read as listwise)";
    let results = read_sample("listwise-scored.ndjson", auto());
    assert_eq!(results[0].as_ref().unwrap_err().to_string(), reason);
    assert_eq!(results[1].as_ref().unwrap_err().to_string(), reason);
    assert_eq!(
        results[2].as_ref().unwrap().pairs.len(),
        3,
        "best-first strings need no score"
    );
    assert!(results[3].is_err());

    let higher = LayoutSpec {
        score_order: Some(ScoreOrder::HigherIsBetter),
        ..auto()
    };
    let read = check(
        "listwise-scored.ndjson",
        higher,
        &[
            Pairs(PairLayout::Listwise, 3, 0),
            Pairs(PairLayout::Listwise, 2, 1),
            Pairs(PairLayout::Listwise, 3, 0),
            Pairs(PairLayout::Listwise, 1, 0),
        ],
    );
    assert_eq!(read[0].pairs[0].pair_id, "lw-1-0-1");
    assert_eq!(read[0].pairs[0].rejected, "Store it in the fridge.");
    // Lower is better reverses the order.
    let lower = LayoutSpec {
        score_order: Some(ScoreOrder::LowerIsBetter),
        ..auto()
    };
    let results = read_sample("listwise-scored.ndjson", lower);
    assert_eq!(
        results[3].as_ref().unwrap().pairs[0].chosen,
        "Crack it as hard as you can."
    );
}

#[test]
fn a_forced_layout_reads_every_record_as_that_layout() {
    // The ShareGPT sample forced through the messages layout: every record is rejected, naming
    // the field and without a "(read as …)" suffix.
    let forced = LayoutSpec::from(PairLayout::Messages);
    for result in read_sample("llama-factory-sharegpt.ndjson", forced) {
        let e = result.unwrap_err();
        assert_eq!(e.detected, None);
        assert_eq!(
            e.to_string(),
            "field `chosen`: expected a list of {role, content} messages, found object"
        );
    }
}
