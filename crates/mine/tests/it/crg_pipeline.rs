//! The crg pipeline against the simulated provider: the order swap, the consistency filter,
//! rejection sampling with fresh seeds, listwise records, separate judge models and the
//! accounting of kept and dropped pairs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rubricmill_core::spec::{CrgSpec, LayoutSpec};
use rubricmill_core::{
    CrgRow, Location, OutputRow, PairLayout, RawPayload, RawRecord, RejectRow, SourceRef,
};
use rubricmill_llm::simulated::{CRG_JUDGE_TASK, CRG_TASK, SimulatedOptions};
use rubricmill_llm::{
    ChatProvider, ChatRequest, ChatResponse, Gateway, GatewayConfig, LlmError, SimulatedProvider,
};
use rubricmill_mine::crg::{CHOSEN_FIRST, REJECTED_FIRST};
use rubricmill_mine::{
    CrgPipeline, Pipeline, RecordContext, RecordOutcome, StageModel, Stages, Templates,
};
use serde_json::json;

/// The simulated provider, recording every request; `generate_answer` replaces its rubric.
struct Recording {
    inner: SimulatedProvider,
    generate_answer: Option<String>,
    requests: Mutex<Vec<ChatRequest>>,
}

#[async_trait::async_trait]
impl ChatProvider for Recording {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        let task = request.response_format.as_ref().map(|f| f.name.as_str());
        if let (Some(CRG_TASK), Some(answer)) = (task, &self.generate_answer) {
            let mut response = self.inner.chat(request).await?;
            response.content = answer.clone();
            return Ok(response);
        }
        self.inner.chat(request).await
    }
}

struct Setup {
    pipeline: CrgPipeline,
    provider: Arc<Recording>,
}

impl Setup {
    fn new(spec: CrgSpec, judge_error_rate: f64, generate_answer: Option<&str>) -> Self {
        Self::build(
            spec,
            judge_error_rate,
            generate_answer,
            PairLayout::Auto.into(),
        )
    }

    fn with_layout(spec: CrgSpec, layout: LayoutSpec) -> Self {
        Self::build(spec, 0.0, None, layout)
    }

    fn build(
        spec: CrgSpec,
        judge_error_rate: f64,
        generate_answer: Option<&str>,
        layout: LayoutSpec,
    ) -> Self {
        let provider = Arc::new(Recording {
            inner: SimulatedProvider::with_options(0, SimulatedOptions { judge_error_rate }),
            generate_answer: generate_answer.map(str::to_owned),
            requests: Mutex::new(Vec::new()),
        });
        let gateway = Arc::new(Gateway::new(provider.clone(), GatewayConfig::default()));
        let stage = |model: &str| StageModel {
            model: model.into(),
            temperature: 0.0,
            max_tokens: 800,
            seed: None,
        };
        let stages = Stages::new(
            BTreeMap::from([
                (
                    "generate".to_owned(),
                    (gateway.clone(), stage("writer-model")),
                ),
                ("judge".to_owned(), (gateway, stage("judge-model"))),
            ]),
            Templates::default(),
        );
        let pipeline = CrgPipeline::new(&stages, spec, layout, &BTreeMap::new());
        Self { pipeline, provider }
    }

    fn requests(&self, task: &str) -> Vec<ChatRequest> {
        self.provider
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.response_format.as_ref().is_some_and(|f| f.name == task))
            .cloned()
            .collect()
    }

    async fn run(&self, record: serde_json::Value) -> (Vec<CrgRow>, Vec<RejectRow>) {
        let outcome = self.outcome(record).await;
        let rows = outcome
            .rows
            .into_iter()
            .map(|row| match row {
                OutputRow::Crg(row) => row,
                other => panic!("crg makes crg rows, not {other:?}"),
            })
            .collect();
        (rows, outcome.rejects)
    }

    /// The whole outcome of one record, stage counts included.
    async fn outcome(&self, record: serde_json::Value) -> RecordOutcome {
        let record = RawRecord {
            source: SourceRef {
                file: "file:///data/pairs.jsonl".into(),
                location: Location::Line(1),
            },
            payload: RawPayload::Json(record),
        };
        let ctx = RecordContext {
            shard_id: "s".into(),
            attempt_id: "a".into(),
        };
        self.pipeline.process(record, &ctx).await.unwrap()
    }
}

fn pair() -> serde_json::Value {
    json!({
        "id": "p1",
        "prompt": "What helps a sore throat?",
        "chosen": "Warm tea with ginger and honey soothes it; rest your voice.",
        "rejected": "Nothing helps, just wait.",
    })
}

fn text_of(request: &ChatRequest) -> String {
    request.messages.last().unwrap().content.clone()
}

#[tokio::test]
async fn a_consistent_rubric_is_kept_after_one_attempt_judged_in_both_orders() {
    let setup = Setup::new(CrgSpec::default(), 0.0, None);
    let (rows, rejects) = setup.run(pair()).await;
    assert!(rejects.is_empty());
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(row.kept, "{:?}", row.drop_reason);
    assert_eq!(row.drop_reason, None);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.consistency, Some(1.0));
    assert_eq!(row.rubric_id, "p1");
    let verdicts: Vec<(&str, &str)> = row
        .verdicts
        .iter()
        .map(|v| (v.order.as_str(), v.preferred.as_str()))
        .collect();
    assert_eq!(
        verdicts,
        vec![(CHOSEN_FIRST, "chosen"), (REJECTED_FIRST, "chosen")]
    );
    assert_eq!(row.attempt_log.len(), 1);
    assert!(row.attempt_log[0].consistent);
    assert_eq!(row.judge_model, "judge-model");
    assert_eq!(row.provenance.model, "writer-model");
    assert!(!row.judge_prompt_hash.is_empty());
    assert_ne!(row.judge_prompt_hash, row.provenance.prompt_hash);
    // One generation, two judge calls: the pair shown in both orders.
    assert_eq!(setup.requests(CRG_TASK).len(), 1);
    let judged = setup.requests(CRG_JUDGE_TASK);
    assert_eq!(judged.len(), 2);
    assert!(judged.iter().all(|r| r.model == "judge-model"));
    let a_is_chosen = |r: &ChatRequest| {
        let text = text_of(r);
        let a = text.find("<response_a>\nWarm tea").is_some();
        let b = text.find("<response_b>\nWarm tea").is_some();
        assert!(a != b, "the chosen response is shown once: {text}");
        a
    };
    let mut orders: Vec<bool> = judged.iter().map(a_is_chosen).collect();
    orders.sort();
    assert_eq!(orders, vec![false, true]);
    assert!(
        judged.iter().all(|r| text_of(r).contains("[Hard Rule]")),
        "the judge sees the numbered text rubric"
    );
    assert_eq!(
        row.provenance.tokens_in,
        setup.pipeline_usage_tokens_in(),
        "the record's usage is on its row"
    );
}

impl Setup {
    fn pipeline_usage_tokens_in(&self) -> u64 {
        self.provider
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                r.messages
                    .iter()
                    .map(|m| rubricmill_llm::estimate_tokens(&m.content) + 4)
                    .sum::<u64>()
            })
            .sum()
    }
}

#[tokio::test]
async fn a_judge_that_always_errs_drops_the_rubric_after_k_resamples_with_fresh_seeds() {
    let spec = CrgSpec {
        max_resamples: 3,
        ..CrgSpec::default()
    };
    let setup = Setup::new(spec, 1.0, None);
    let (rows, rejects) = setup.run(pair()).await;
    assert!(
        rejects.is_empty(),
        "a dropped rubric is a row, not a reject"
    );
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(!row.kept);
    assert_eq!(row.attempts, 4, "k + 1 attempts");
    assert_eq!(row.consistency, Some(0.0));
    let reason = row.drop_reason.as_deref().unwrap();
    assert!(reason.contains("inconsistent after 4 attempt"), "{reason}");
    assert_eq!(row.attempt_log.len(), 4);
    assert_eq!(
        row.attempt_log
            .iter()
            .map(|a| a.attempt)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(
        row.attempt_log
            .iter()
            .all(|a| !a.consistent && a.verdicts.len() == 2)
    );
    assert!(
        row.attempt_log
            .iter()
            .all(|a| a.verdicts.iter().all(|v| v.preferred == "rejected")),
        "a judge that always errs prefers the rejected response in both orders"
    );
    let generations = setup.requests(CRG_TASK);
    assert_eq!(generations.len(), 4);
    let seeds: Vec<Option<u64>> = generations.iter().map(|r| r.seed).collect();
    assert_eq!(seeds, vec![None, Some(1), Some(2), Some(3)]);
    assert_eq!(generations[0].temperature, 0.0);
    assert!(generations[1..].iter().all(|r| r.temperature > 0.0));
    assert_eq!(setup.requests(CRG_JUDGE_TASK).len(), 8);
}

#[tokio::test]
async fn at_a_30_percent_error_rate_some_pairs_need_resampling_and_all_are_accounted() {
    let setup = Setup::new(CrgSpec::default(), 0.3, None);
    let (mut kept, mut dropped, mut resampled) = (0, 0, 0);
    for i in 0..60 {
        let mut record = pair();
        record["id"] = json!(format!("p{i}"));
        record["prompt"] = json!(format!("Question {i}: what helps a sore throat?"));
        let (rows, rejects) = setup.run(record).await;
        assert!(rejects.is_empty());
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert!((1..=4).contains(&row.attempts));
        assert_eq!(row.attempt_log.len() as u32, row.attempts);
        // Only the last attempt may be consistent, and a kept row's is.
        assert!(
            row.attempt_log[..row.attempt_log.len() - 1]
                .iter()
                .all(|a| !a.consistent)
        );
        assert_eq!(row.attempt_log.last().unwrap().consistent, row.kept);
        if row.kept {
            kept += 1;
        } else {
            dropped += 1;
        }
        if row.attempts > 1 {
            resampled += 1;
        }
    }
    assert_eq!(kept + dropped, 60);
    assert!(resampled >= 10, "{resampled} of 60 pairs were resampled");
    assert!(kept >= 45, "{kept} of 60 kept");
}

#[tokio::test]
async fn a_listwise_record_gives_one_row_per_pair_sharing_one_rubric() {
    let setup = Setup::new(CrgSpec::default(), 0.0, None);
    let record = json!({
        "id": "L7",
        "prompt": "What helps a sore throat?",
        "responses": [
            "Warm tea with ginger and honey soothes it.",
            "Some warm tea may help a little.",
            "Nothing helps.",
        ],
    });
    let (rows, rejects) = setup.run(record).await;
    assert!(rejects.is_empty());
    // Induced pairs: (0,1), (1,2), (0,2); one rubric, written from the widest pair (0,2).
    let ids: Vec<&str> = rows.iter().map(|r| r.pair_id.as_str()).collect();
    assert_eq!(ids, vec!["L7-0-1", "L7-1-2", "L7-0-2"]);
    assert!(rows.iter().all(|r| r.rubric_id == "L7"));
    assert!(rows.iter().all(|r| r.rubric == rows[0].rubric));
    assert_eq!(setup.requests(CRG_TASK).len(), 1);
    assert!(text_of(&setup.requests(CRG_TASK)[0]).contains("Nothing helps."));
    assert_eq!(setup.requests(CRG_JUDGE_TASK).len(), 6);
    // The contrast words of best versus worst (ginger, honey, …) also separate (0,1) but not
    // (1,2): accuracy 2/3 ≥ τ, so the rubric is kept with the two pairs it got right.
    let kept: Vec<(&str, bool)> = rows.iter().map(|r| (r.pair_id.as_str(), r.kept)).collect();
    assert_eq!(
        kept,
        vec![("L7-0-1", true), ("L7-1-2", false), ("L7-0-2", true)]
    );
    assert!(rows.iter().all(|r| r.attempts == 1));
    let accuracy = rows[0].consistency.unwrap();
    assert!((accuracy - 2.0 / 3.0).abs() < 1e-9, "{accuracy}");
    assert!(
        rows[1]
            .drop_reason
            .as_deref()
            .unwrap()
            .contains("mispredicted")
    );
    // The record's usage is on its first row only.
    assert!(rows[0].provenance.tokens_in > 0);
    assert!(rows[1..].iter().all(|r| r.provenance.tokens_in == 0));
}

/// (input, output, rejected) of one stage.
fn stage(outcome: &RecordOutcome, name: &str) -> (u64, u64, u64) {
    let counts = outcome.stages.get(name).cloned().unwrap_or_default();
    (counts.input, counts.output, counts.rejected)
}

#[tokio::test]
async fn tied_comparisons_are_rejects_at_stage_pairs_and_every_comparison_is_counted() {
    let setup = Setup::new(CrgSpec::default(), 0.0, None);
    // UltraFeedback-style: two completions tie on overall_score.
    let record = json!({
        "instruction": "Give two tips for staying focused while studying.",
        "completions": [
            {"response": "Phone in another room; 25-minute blocks with breaks.", "overall_score": 7.0},
            {"response": "A quiet place and one clear goal per session.", "overall_score": 7.0},
            {"response": "Drink lots of coffee.", "overall_score": 4.0},
            {"response": "Focus harder.", "overall_score": 2.0},
        ],
    });
    let outcome = setup.outcome(record).await;
    assert_eq!(stage(&outcome, "parse"), (1, 1, 0));
    // Five comparisons: four pairs and one tie.
    assert_eq!(stage(&outcome, "pairs"), (5, 4, 1));
    assert_eq!(outcome.rows.len(), 4);
    assert_eq!(outcome.rejects.len(), 1);
    let reject = &outcome.rejects[0];
    assert_eq!(reject.stage, "pairs");
    assert_eq!(
        reject.reason,
        "tie: `completions.0` and `completions.1` have the same overall_score (7), so neither is preferred"
    );
    assert!(reject.excerpt.contains("Drink") || reject.excerpt.contains("Phone"));

    // Every comparison a tie: no pair, no call, one reject per comparison.
    let setup = Setup::new(CrgSpec::default(), 0.0, None);
    let record = json!({
        "prompt": "\n\nHuman: Best pasta shape?\n\nAssistant:",
        "answers": [
            {"answer": "Rigatoni holds sauce well.", "rank": 1},
            {"answer": "Penne is versatile.", "rank": 1},
        ],
    });
    let outcome = setup.outcome(record).await;
    assert_eq!(stage(&outcome, "parse"), (1, 1, 0));
    assert_eq!(stage(&outcome, "pairs"), (1, 0, 1));
    assert!(outcome.rows.is_empty());
    assert_eq!(outcome.rejects.len(), 1);
    assert!(setup.requests(CRG_TASK).is_empty());

    // An unreadable record stops at parse, and its reason names the layout it was read as.
    let outcome = setup
        .outcome(json!({"prompt": "q", "answers": [{"answer": "a", "rank": "first"}, {"answer": "b", "rank": 2}]}))
        .await;
    assert_eq!(stage(&outcome, "parse"), (1, 0, 1));
    assert_eq!(stage(&outcome, "pairs"), (0, 0, 0));
    assert_eq!(
        outcome.rejects[0].reason,
        "field `answers.0.rank`: expected a number, found string (read as nectar)"
    );
}

#[tokio::test]
async fn the_pipeline_follows_the_layout_settings() {
    use rubricmill_core::spec::{LayoutSpec, Pairing, ScoreOrder};
    let layout = LayoutSpec {
        pairing: Pairing::BestVsWorst,
        score_order: Some(ScoreOrder::LowerIsBetter),
        ..LayoutSpec::default()
    };
    let setup = Setup::with_layout(CrgSpec::default(), layout);
    let record = json!({
        "id": "R1",
        "prompt": "Name a fast land animal.",
        "responses": [
            {"text": "A snail.", "rank": 3},
            {"text": "The cheetah.", "rank": 1},
            {"text": "A horse.", "rank": 2},
        ],
    });
    let (rows, rejects) = setup.run(record).await;
    assert!(rejects.is_empty(), "{rejects:?}");
    let pairs: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.pair_id.as_str(), r.chosen.as_str(), r.rejected.as_str()))
        .collect();
    assert_eq!(pairs, vec![("R1-0-2", "The cheetah.", "A snail.")]);
}

#[tokio::test]
async fn a_listwise_rubric_below_tau_is_regenerated_then_dropped() {
    let spec = CrgSpec {
        min_accuracy: 1.0,
        max_resamples: 1,
        ..CrgSpec::default()
    };
    let setup = Setup::new(spec, 0.0, None);
    let record = json!({
        "prompt": "What helps a sore throat?",
        "responses": [
            "Warm tea with ginger and honey soothes it.",
            "Some warm tea may help a little.",
            "Nothing helps.",
        ],
    });
    let (rows, _) = setup.run(record).await;
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| !r.kept && r.attempts == 2));
    assert!(rows.iter().all(|r| r.rubric_id == rows[0].rubric_id));
    assert_eq!(setup.requests(CRG_TASK).len(), 2);
    assert_eq!(setup.requests(CRG_JUDGE_TASK).len(), 12);
}

#[tokio::test]
async fn answers_without_rubric_items_are_resampled_then_rejected() {
    let setup = Setup::new(CrgSpec::default(), 0.0, Some("I would rather not."));
    let (rows, rejects) = setup.run(pair()).await;
    assert!(rows.is_empty());
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].stage, "generate");
    assert!(
        rejects[0].reason.contains("no rubric items"),
        "{}",
        rejects[0].reason
    );
    // Four attempts of one call and one repair each; nothing to judge.
    assert_eq!(setup.requests(CRG_TASK).len(), 8);
    assert!(setup.requests(CRG_JUDGE_TASK).is_empty());
}

#[tokio::test]
async fn without_the_filter_every_rubric_is_kept_unjudged() {
    let spec = CrgSpec {
        consistency_filter: false,
        ..CrgSpec::default()
    };
    let setup = Setup::new(spec, 1.0, None);
    let (rows, _) = setup.run(pair()).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].kept && rows[0].verdicts.is_empty() && rows[0].consistency.is_none());
    assert!(rows[0].judge_model.is_empty());
    assert_eq!(setup.requests(CRG_JUDGE_TASK).len(), 0);
    assert!(!setup.pipeline.prompt_hashes().contains_key("crg_judge"));
}

#[test]
fn estimates_count_the_judge_calls_of_every_induced_pair() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let setup = Setup::new(CrgSpec::default(), 0.0, None);
    let record = |value| RawRecord {
        source: SourceRef {
            file: "x".into(),
            location: Location::Line(1),
        },
        payload: RawPayload::Json(value),
    };
    assert_eq!(setup.pipeline.estimate(&record(pair())).calls, 3);
    let listwise = json!({"prompt": "q", "responses": ["a", "b", "c"]});
    assert_eq!(setup.pipeline.estimate(&record(listwise)).calls, 1 + 2 * 3);
    let hashes = setup.pipeline.prompt_hashes();
    assert!(hashes.contains_key("crg_generate") && hashes.contains_key("crg_judge"));
}
