//! Unit tests of pair normalisation: every layout's reading and its rejections, detection,
//! content parts, field paths, ranking, ties and score directions.

use super::*;

use rubricmill_core::Message;
use rubricmill_core::spec::{Pairing, ScoreOrder};
use serde_json::json;

fn none() -> FieldMap {
    FieldMap::default()
}

fn map(pairs: &[(&str, &str)]) -> FieldMap {
    FieldMap::new(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn msg(role: &str, content: &str) -> Message {
    Message::new(role, content)
}

fn auto(v: &Value) -> Result<PreferencePair, PairError> {
    normalize_pair(v, PairLayout::Auto, &none())
}

// ---- HH-RLHF ----------------------------------------------------------------------------

const HH_CHOSEN: &str = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant:  Why did the chicken cross the road?";
const HH_REJECTED: &str = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke\n\nAssistant: No.";

#[test]
fn hh_multi_turn_shared_prefix_becomes_prompt() {
    let rec = json!({"chosen": HH_CHOSEN, "rejected": HH_REJECTED});
    let p = normalize_pair(&rec, PairLayout::HhRlhf, &none()).unwrap();
    assert_eq!(
        p.prompt,
        vec![
            msg("user", "Hi there"),
            msg("assistant", "Hello! How can I help?"),
            msg("user", "Tell me a joke")
        ]
    );
    assert_eq!(p.chosen, "Why did the chicken cross the road?");
    assert_eq!(p.rejected, "No.");
    assert_eq!(p.pair_id.len(), 24);
    assert!(p.pair_id.chars().all(|c| c.is_ascii_hexdigit()));
    // Auto detects the same layout and gives the same pair.
    assert_eq!(auto(&rec).unwrap(), p);
    assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::HhRlhf);
}

#[test]
fn hh_single_turn_and_markers_inside_a_line_stay_text() {
    let rec = json!({
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4. Human: thanks",
        "rejected": "Human: What is 2+2?\n\nAssistant: 5"
    });
    let p = auto(&rec).unwrap();
    assert_eq!(p.prompt, vec![msg("user", "What is 2+2?")]);
    assert_eq!(p.chosen, "4. Human: thanks");
    assert_eq!(p.rejected, "5");
}

#[test]
fn hh_consecutive_assistant_turns_merge_into_one_response() {
    // As in the real corpus: the final Assistant text itself contains "\n\nAssistant:".
    let rec = json!({
        "chosen": "\n\nHuman: Q\n\nAssistant: part one.  Human: more?\n\nAssistant:  part two",
        "rejected": "\n\nHuman: Q\n\nAssistant: other"
    });
    let p = auto(&rec).unwrap();
    assert_eq!(p.prompt, vec![msg("user", "Q")]);
    assert_eq!(p.chosen, "part one.  Human: more?\n\npart two");
    assert_eq!(p.rejected, "other");
}

#[test]
fn hh_triple_newline_before_marker_is_a_marker() {
    let turns = split_hh_transcript("\n\nHuman: a\n\n\nAssistant: b").unwrap();
    assert_eq!(turns, vec![msg("user", "a"), msg("assistant", "b")]);
}

#[test]
fn hh_rejections() {
    let hh = |c: &str, r: &str| {
        normalize_pair(
            &json!({"chosen": c, "rejected": r}),
            PairLayout::HhRlhf,
            &none(),
        )
        .unwrap_err()
    };
    assert_eq!(
        hh("just text", "\n\nHuman: a\n\nAssistant: b"),
        PairError::TranscriptUnparsable("chosen: no human/assistant markers".into())
    );
    assert_eq!(
        hh(
            "\n\nHuman: a\n\nAssistant: b",
            "preamble\n\nHuman: a\n\nAssistant: c"
        ),
        PairError::TranscriptUnparsable(
            "rejected: text before the first human/assistant marker".into()
        )
    );
    assert_eq!(
        hh(
            "\n\nAssistant: b\n\nHuman: a\n\nAssistant: b",
            "\n\nHuman: a\n\nAssistant: c"
        ),
        PairError::TranscriptUnparsable("chosen: starts with an assistant turn".into())
    );
    assert_eq!(
        hh(
            "\n\nHuman: a\n\nAssistant: b\n\nHuman: c",
            "\n\nHuman: a\n\nAssistant: c"
        ),
        PairError::NoFinalAssistant("chosen")
    );
    assert_eq!(
        hh(
            "\n\nHuman: a\n\nAssistant:  ",
            "\n\nHuman: a\n\nAssistant: c"
        ),
        PairError::EmptyResponse("chosen")
    );
    assert_eq!(
        hh(
            "\n\nHuman: a\n\nAssistant: c ",
            "\n\nHuman: a\n\nAssistant:  c"
        ),
        PairError::IdenticalResponses
    );
    assert_eq!(
        hh(
            "\n\nHuman: a\n\nAssistant: x\n\nHuman: b\n\nAssistant: c",
            "\n\nHuman: a\n\nAssistant: y\n\nHuman: b\n\nAssistant: d"
        ),
        PairError::PromptMismatch(2)
    );
    assert_eq!(
        hh("\n\nHuman:  \n\nAssistant: c", "\n\nHuman:\n\nAssistant: d"),
        PairError::EmptyPrompt
    );
    let e = normalize_pair(
        &json!({"chosen": 3, "rejected": "x"}),
        PairLayout::HhRlhf,
        &none(),
    )
    .unwrap_err();
    assert_eq!(
        e.reason(),
        "field `chosen`: expected a human/assistant transcript string, found number"
    );
    let e = normalize_pair(&json!({"chosen": HH_CHOSEN}), PairLayout::HhRlhf, &none()).unwrap_err();
    assert_eq!(e, PairError::MissingField("rejected".into()));
    assert_eq!(e.reason(), "missing field `rejected`");
    assert_eq!(e.kind(), "missing_field");
}

// ---- strings ----------------------------------------------------------------------------

#[test]
fn strings_layout_with_string_and_list_prompts() {
    let p = auto(&json!({"prompt": "Q?", "chosen": " good ", "rejected": "bad"})).unwrap();
    assert_eq!(p.prompt, vec![msg("user", "Q?")]);
    assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));

    let rec = json!({
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
        "chosen": "good", "rejected": "bad"
    });
    let p = normalize_pair(&rec, PairLayout::Strings, &none()).unwrap();
    assert_eq!(
        p.prompt,
        vec![msg("system", "Be brief."), msg("user", "Q?")]
    );
}

#[test]
fn strings_prompt_given_as_hh_transcript_is_split() {
    let rec = json!({
        "prompt": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:",
        "chosen": " good", "rejected": " bad"
    });
    let p = auto(&rec).unwrap();
    assert_eq!(
        p.prompt,
        vec![msg("user", "a"), msg("assistant", "b"), msg("user", "c")]
    );
    assert_eq!(p.chosen, "good");
}

#[test]
fn strings_rejections() {
    let s = |v: Value| normalize_pair(&v, PairLayout::Strings, &none()).unwrap_err();
    assert_eq!(
        s(json!({"prompt": "", "chosen": "a", "rejected": "b"})),
        PairError::EmptyPrompt
    );
    assert_eq!(
        s(json!({"chosen": "a", "rejected": "b"})),
        PairError::MissingField("prompt".into())
    );
    assert_eq!(
        s(json!({"prompt": "q", "chosen": "a", "rejected": null})),
        PairError::MissingField("rejected".into())
    );
    assert_eq!(
        s(json!({"prompt": "q", "chosen": "a", "rejected": " \n"})),
        PairError::EmptyResponse("rejected")
    );
    assert_eq!(
        s(json!({"prompt": "q", "chosen": "same", "rejected": "same\n"})),
        PairError::IdenticalResponses
    );
    assert_eq!(
        s(json!({"prompt": "q", "chosen": ["a"], "rejected": "b"})).reason(),
        "field `chosen`: expected a string, found array"
    );
    assert_eq!(
        s(json!({"prompt": 7, "chosen": "a", "rejected": "b"})).reason(),
        "field `prompt`: expected a string or a list of messages, found number"
    );
    assert_eq!(
        s(json!({"prompt": [{"role": "alien", "content": "q"}], "chosen": "a", "rejected": "b"}))
            .reason(),
        "field `prompt.0`: unknown speaker role `alien`"
    );
    assert_eq!(
        s(json!({"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"})),
        PairError::MissingField("prompt.0.content".into())
    );
    assert_eq!(s(json!([1, 2])), PairError::NotAnObject("array"));
}

// ---- field mapping and ids --------------------------------------------------------------

#[test]
fn field_mapping_with_dotted_paths_and_indices() {
    let fields = map(&[
        ("prompt", "question.text"),
        ("chosen", "answers.0.text"),
        ("rejected", "answers.-1.text"),
        ("id", "meta.uid"),
    ]);
    let rec = json!({
        "question": {"text": "Why is the sky blue?"},
        "answers": [{"text": "Rayleigh scattering."}, {"text": "x"}, {"text": "Because."}],
        "meta": {"uid": 42}
    });
    assert_eq!(
        fields.get(&rec, "chosen"),
        Some(&json!("Rayleigh scattering."))
    );
    assert_eq!(fields.get(&rec, "rejected"), Some(&json!("Because.")));
    assert_eq!(fields.get(&rec, "missing"), None);
    let p = normalize_pair(&rec, PairLayout::Auto, &fields).unwrap();
    assert_eq!(p.pair_id, "42");
    assert_eq!(p.prompt, vec![msg("user", "Why is the sky blue?")]);
    assert_eq!(p.chosen, "Rayleigh scattering.");
    assert_eq!(p.rejected, "Because.");

    // Missing mapped paths are named by their path in the record.
    let e = normalize_pair(
        &json!({"question": {"text": "q"}, "answers": []}),
        PairLayout::Strings,
        &fields,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "missing field `answers.0.text`");
    // Out-of-range and non-numeric indices and paths through scalars lead nowhere.
    let f = map(&[
        ("a", "answers.9.text"),
        ("b", "answers.x"),
        ("c", "meta.uid.deeper"),
    ]);
    assert_eq!(f.get(&rec, "a"), None);
    assert_eq!(f.get(&rec, "b"), None);
    assert_eq!(f.get(&rec, "c"), None);
    // A literal dotted key is found.
    let f = map(&[("prompt", "q.text")]);
    assert_eq!(
        f.get(&json!({"q.text": "hi"}), "prompt"),
        Some(&json!("hi"))
    );
}

#[test]
fn pair_ids_from_id_field_or_content() {
    let a = json!({"prompt": "q", "chosen": "a", "rejected": "b"});
    let a2 = json!({"prompt": "q", "chosen": "a ", "rejected": "b", "id": null});
    let b = json!({"prompt": "q", "chosen": "b", "rejected": "a"});
    let (pa, pa2, pb) = (auto(&a).unwrap(), auto(&a2).unwrap(), auto(&b).unwrap());
    assert_eq!(pa.pair_id, pa2.pair_id);
    assert_ne!(pa.pair_id, pb.pair_id);
    assert_eq!(pa.pair_id.len(), 24);
    let with_id = json!({"id": "x-1", "prompt": "q", "chosen": "a", "rejected": "b"});
    assert_eq!(auto(&with_id).unwrap().pair_id, "x-1");
    let bad = json!({"id": [1], "prompt": "q", "chosen": "a", "rejected": "b"});
    assert_eq!(
        auto(&bad).unwrap_err().reason(),
        "field `id`: expected a string or a number, found array"
    );
}

// ---- ShareGPT ---------------------------------------------------------------------------

#[test]
fn sharegpt_turns_and_strings() {
    let rec = json!({
        "conversations": [
            {"from": "system", "value": "You are helpful."},
            {"from": "human", "value": "Name a colour."}
        ],
        "chosen": {"from": "gpt", "value": "Blue."},
        "rejected": "Seven."
    });
    let p = auto(&rec).unwrap();
    assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::Sharegpt);
    assert_eq!(
        p.prompt,
        vec![
            msg("system", "You are helpful."),
            msg("user", "Name a colour.")
        ]
    );
    assert_eq!(
        (p.chosen.as_str(), p.rejected.as_str()),
        ("Blue.", "Seven.")
    );
}

#[test]
fn sharegpt_rejections() {
    let g = |v: Value| normalize_pair(&v, PairLayout::Sharegpt, &none()).unwrap_err();
    assert_eq!(
        g(json!({"conversations": "hi", "chosen": "a", "rejected": "b"})).reason(),
        "field `conversations`: expected a list of {from, value} turns, found string"
    );
    assert_eq!(
        g(json!({"conversations": [{"from": "human", "value": "q"}],
                 "chosen": {"from": "human", "value": "a"}, "rejected": "b"})),
        PairError::NoFinalAssistant("chosen")
    );
    assert_eq!(
        g(
            json!({"conversations": [{"from": "wizard", "value": "q"}], "chosen": "a", "rejected": "b"})
        ),
        PairError::UnknownRole {
            field: "conversations.0".into(),
            role: "wizard".into()
        }
    );
    assert_eq!(
        g(json!({"conversations": [], "chosen": "a", "rejected": "b"})),
        PairError::EmptyPrompt
    );
    assert_eq!(
        g(json!({"conversations": [{"from": "human", "value": "q"}], "chosen": 1, "rejected": "b"}))
            .reason(),
        "field `chosen`: expected a {from, value} turn, a string or a list of turns, found number"
    );
}

// ---- messages ---------------------------------------------------------------------------

#[test]
fn messages_shared_prefix_and_separate_prompt() {
    let rec = json!({
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]
    });
    let p = auto(&rec).unwrap();
    assert_eq!(detect_layout(&rec, &none()).unwrap(), PairLayout::Messages);
    assert_eq!(p.prompt, vec![msg("user", "Q")]);
    assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));

    // A separate prompt the prefix already begins with is not repeated (UltraFeedback style).
    let mut with_prompt = rec.clone();
    with_prompt["prompt"] = json!("Q");
    assert_eq!(auto(&with_prompt).unwrap().prompt, vec![msg("user", "Q")]);

    // A separate prompt and responses alone; content given as text parts.
    let rec = json!({
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": "good"}]}],
        "rejected": [{"role": "assistant", "content": "bad"}]
    });
    let p = auto(&rec).unwrap();
    assert_eq!(p.prompt, vec![msg("system", "S"), msg("user", "Q")]);
    assert_eq!(p.chosen, "good");

    // A separate prompt the prefix does not begin with is prepended.
    let rec = json!({
        "prompt": [{"role": "system", "content": "S"}],
        "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]
    });
    assert_eq!(
        auto(&rec).unwrap().prompt,
        vec![msg("system", "S"), msg("user", "Q")]
    );
}

#[test]
fn messages_rejections() {
    let m = |v: Value| normalize_pair(&v, PairLayout::Messages, &none()).unwrap_err();
    let u = |c: &str| json!({"role": "user", "content": c});
    let a = |c: &str| json!({"role": "assistant", "content": c});
    assert_eq!(
        m(
            json!({"chosen": [u("Q"), a("x"), u("R"), a("good")], "rejected": [u("Q"), a("y"), u("R"), a("bad")]})
        ),
        PairError::PromptMismatch(2)
    );
    assert_eq!(
        m(json!({"chosen": [u("Q"), a("good"), u("more")], "rejected": [u("Q"), a("bad")]})),
        PairError::NoFinalAssistant("chosen")
    );
    assert_eq!(
        m(json!({"chosen": [], "rejected": [u("Q"), a("bad")]})),
        PairError::EmptyResponse("chosen")
    );
    assert_eq!(
        m(json!({"chosen": [a("good")], "rejected": [a("bad")]})),
        PairError::EmptyPrompt
    );
    assert_eq!(
        m(json!({"chosen": "good", "rejected": [a("bad")]})).reason(),
        "field `chosen`: expected a list of {role, content} messages, found string"
    );
    assert_eq!(
        m(json!({"chosen": [u("Q"), {"role": 5, "content": "x"}], "rejected": [u("Q"), a("b")]}))
            .reason(),
        "field `chosen.1.role`: expected a string, found number"
    );
    assert_eq!(
        m(json!({"chosen": [u("Q"), a(" same")], "rejected": [u("Q"), a("same")]})),
        PairError::IdenticalResponses
    );
}

// ---- auto-detection ---------------------------------------------------------------------

#[test]
fn auto_detection_picks_the_documented_layout() {
    let u = |c: &str| json!({"role": "user", "content": c});
    let a = |c: &str| json!({"role": "assistant", "content": c});
    let cases = [
        (
            json!({"chosen_messages": [u("q"), a("x")], "rejected_messages": [u("q"), a("y")]}),
            PairLayout::LlamaFactory,
        ),
        (
            json!({"instruction": "q", "completions": []}),
            PairLayout::Ultrafeedback,
        ),
        (json!({"prompt": "q", "answers": []}), PairLayout::Nectar),
        (
            json!({"prompt": "q", "responses": ["a", "b"]}),
            PairLayout::Listwise,
        ),
        (
            json!({"prompt": "q", "responses": [{"response": "a", "helpfulness": 3}]}),
            PairLayout::Helpsteer,
        ),
        (
            json!({"prompt": "q", "response": "a", "helpfulness": 3}),
            PairLayout::Helpsteer,
        ),
        (
            json!({"conversations": [], "chosen": "a", "rejected": "b"}),
            PairLayout::Sharegpt,
        ),
        (
            json!({"instruction": "q", "input": "", "chosen": "a", "rejected": "b"}),
            PairLayout::Alpaca,
        ),
        (
            json!({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_rating": 2, "rejected_rating": 1}),
            PairLayout::ArgillaDpo,
        ),
        (
            json!({"prompt": "q", "chosen": [a("x")], "rejected": [a("y")], "score_chosen": 8.0, "score_rejected": 3.0}),
            PairLayout::ArgillaDpo,
        ),
        (
            json!({"system": "s", "input": "q", "chosen": "a", "rejected": "b"}),
            PairLayout::ArgillaDpo,
        ),
        (
            json!({"chosen": [u("q"), a("x")], "rejected": [u("q"), a("y")]}),
            PairLayout::Messages,
        ),
        (
            json!({"prompt": "\n\nHuman: q\n\nAssistant:", "chosen": "a", "rejected": "b"}),
            PairLayout::HhRlhf,
        ),
        (
            json!({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "\n\nHuman: q\n\nAssistant: b"}),
            PairLayout::HhRlhf,
        ),
        (
            json!({"prompt": "q", "chosen": "a", "rejected": "b"}),
            PairLayout::Strings,
        ),
        (
            json!({"prompt": "q", "chosen": {"role": "assistant", "content": "a"}, "rejected": "b"}),
            PairLayout::Strings,
        ),
        (
            json!({"chosen": "The sky is blue.", "rejected": "The sky is green."}),
            PairLayout::TrlImplicit,
        ),
    ];
    for (record, layout) in cases {
        assert_eq!(detect_layout(&record, &none()), Ok(layout), "{record}");
    }
}

#[test]
fn auto_detection_rejections() {
    assert_eq!(
        auto(&json!({"rejected": "b"})),
        Err(PairError::MissingField("chosen".into()))
    );
    assert_eq!(
        auto(&json!({"chosen": "plain", "rejected": "b"})),
        Err(PairError::NoImplicitPrompt("prompt".into()))
    );
    assert_eq!(
        auto(&json!({"chosen": {"role": "assistant", "content": "a"}, "rejected": "b"})),
        Err(PairError::MissingField("prompt".into()))
    );
    assert_eq!(
        auto(&json!({"chosen": true, "rejected": "b"}))
            .unwrap_err()
            .reason(),
        "field `chosen`: expected a string, a message or a list of messages, found boolean"
    );
    assert_eq!(auto(&json!("text")), Err(PairError::NotAnObject("string")));
    assert_eq!(
        auto(&json!({"question": "q", "good": "a", "bad": "b"}))
            .unwrap_err()
            .reason(),
        "fits no known pair layout: found fields `bad`, `good`, `question`; expected `chosen` and `rejected`, `chosen_messages` and `rejected_messages`, `completions`, `answers` or `responses` (or map them with input.fields)"
    );
    // The reason of a record read by a detected layout says which; a forced one does not.
    let record = json!({"prompt": "q", "chosen": "a", "rejected": " a"});
    let detected = PairReader::default().read(&record).unwrap_err();
    assert_eq!(detected.detected, Some(PairLayout::Strings));
    assert_eq!(
        detected.to_string(),
        "chosen and rejected responses are identical (read as strings)"
    );
    let forced = PairReader::new(PairLayout::Strings, none())
        .read(&record)
        .unwrap_err();
    assert_eq!(
        forced.to_string(),
        "chosen and rejected responses are identical"
    );
}

// ---- content parts ----------------------------------------------------------------------

#[test]
fn content_parts_text_value_and_non_text() {
    let rec = |content: Value| {
        json!({
            "chosen": [{"role": "user", "content": content.clone()}, {"role": "assistant", "content": [{"type": "text", "value": "good"}]}],
            "rejected": [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "output_text", "text": "bad"}]}]
        })
    };
    let p = auto(&rec(
        json!([{"type": "text", "value": "one"}, "two", {"text": "three"}]),
    ))
    .unwrap();
    assert_eq!(p.prompt, vec![msg("user", "one\ntwo\nthree")]);
    assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));

    let with_audio = rec(
        json!([{"type": "input_audio", "input_audio": {"data": "…"}}, {"type": "text", "text": "transcribe"}]),
    );
    assert_eq!(
        auto(&with_audio),
        Err(PairError::NonTextPart {
            field: "chosen.0.content.0".into(),
            part_type: "input_audio".into()
        })
    );
    let keep_text = PairReader::new(
        LayoutSpec {
            drop_non_text: true,
            ..LayoutSpec::default()
        },
        none(),
    );
    let p = &keep_text.read(&with_audio).unwrap().pairs[0];
    assert_eq!(p.prompt, vec![msg("user", "transcribe")]);
    // Only non-text parts, dropped: the prompt is empty, and says so.
    let only_image = rec(json!([{"type": "image_url", "image_url": {"url": "x"}}]));
    assert_eq!(
        keep_text.read(&only_image).unwrap_err().error,
        PairError::EmptyPrompt
    );

    assert_eq!(
        auto(&rec(json!([{"type": "text"}]))),
        Err(PairError::MissingField("chosen.0.content.0.text".into()))
    );
    assert_eq!(
        auto(&rec(json!([{"type": "text", "text": 5}])))
            .unwrap_err()
            .reason(),
        "field `chosen.0.content.0.text`: expected a string, found number"
    );
    assert_eq!(
        auto(&rec(json!([7]))).unwrap_err().reason(),
        "field `chosen.0.content.0`: expected a string or a {type, text} content part, found number"
    );
    // One part object as the whole content.
    let p = auto(&rec(json!({"type": "text", "text": "solo"}))).unwrap();
    assert_eq!(p.prompt, vec![msg("user", "solo")]);
}

// ---- field paths ------------------------------------------------------------------------

#[test]
fn json_pointer_mappings_reach_dotted_keys_and_name_their_paths() {
    let fields = map(&[
        ("prompt", "/meta.v1/question"),
        ("chosen", "/answers/0/text"),
        ("rejected", "/answers/1/text"),
    ]);
    let rec = json!({
        "meta.v1": {"question": "Why is the sea salty?"},
        "answers": [{"text": "Minerals from rivers."}, {"text": "Fish."}]
    });
    let p = normalize_pair(&rec, PairLayout::Auto, &fields).unwrap();
    assert_eq!(p.prompt, vec![msg("user", "Why is the sea salty?")]);
    assert_eq!(
        (p.chosen.as_str(), p.rejected.as_str()),
        ("Minerals from rivers.", "Fish.")
    );
    let e = normalize_pair(
        &json!({"meta.v1": {"question": "q"}, "answers": [{"text": "a"}]}),
        PairLayout::Strings,
        &fields,
    )
    .unwrap_err();
    assert_eq!(e.reason(), "missing field `/answers/1/text`");

    // Item paths below a pointer mapping are pointers too.
    let fields = map(&[("responses", "/data/ranked")]);
    let rec = json!({"prompt": "q", "data": {"ranked": ["a", {"text": 3}]}});
    let e = PairReader::new(PairLayout::Listwise, fields)
        .read(&rec)
        .unwrap_err();
    assert_eq!(
        e.error.reason(),
        "field `/data/ranked/1/text`: expected a string or a list of content parts, found number"
    );
    assert!(FieldMap::try_new(&[("prompt".to_owned(), "/a~9".to_owned())].into()).is_err());
}

#[test]
fn trl_implicit_prompt_is_the_shared_leading_text_cut_at_a_word() {
    use super::pairwise::split_shared_prefix;
    assert_eq!(
        split_shared_prefix("The sky is blue.", "The sky is green."),
        Some(("The sky is", "blue.", "green."))
    );
    // The common prefix "…A: Blu" ends inside a word: back to the space.
    assert_eq!(
        split_shared_prefix("Q: sky?\nA: Blue sky.", "Q: sky?\nA: Bluish."),
        Some(("Q: sky?\nA:", "Blue sky.", "Bluish."))
    );
    assert_eq!(
        split_shared_prefix("The sky is blue", "The sky is blue."),
        Some(("The sky is", "blue", "blue."))
    );
    assert_eq!(split_shared_prefix("Yes.", "Yesterday."), None);
    assert_eq!(split_shared_prefix("a", "b"), None);
    assert_eq!(
        split_shared_prefix("été chaud", "été froid"),
        Some(("été", "chaud", "froid"))
    );
}

// ---- pairwise layouts with ratings, alpaca, llama-factory ---------------------------------

#[test]
fn argilla_ties_are_skipped_comparisons() {
    let reader = PairReader::default();
    let rec = json!({"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 3.0, "score_rejected": "3"});
    let n = reader.read(&rec).unwrap();
    assert_eq!(
        (n.layout, n.pairs.len(), n.comparisons()),
        (PairLayout::ArgillaDpo, 0, 1)
    );
    assert_eq!(n.skipped[0].kind(), "tie");
    assert_eq!(n.skipped[0].excerpt(), "chosen: a\nrejected: b");
    let rec = json!({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_rating": "high", "rejected_rating": 1});
    assert_eq!(
        reader.read(&rec).unwrap_err().to_string(),
        "field `chosen_rating`: expected a number, found string (read as argilla-dpo)"
    );
    // Ratings are not a direction: a chosen side rated lower still stays chosen.
    let rec = json!({"prompt": "q", "chosen": "a", "rejected": "b", "chosen_rating": 1, "rejected_rating": 5});
    assert_eq!(reader.read(&rec).unwrap().pairs[0].chosen, "a");
    let rec = json!({"chosen": "a", "rejected": "b", "status": "unchanged"});
    assert_eq!(
        reader.read(&rec).unwrap_err().to_string(),
        "missing field `prompt` (or `input`) (read as argilla-dpo)"
    );
}

#[test]
fn alpaca_and_llama_factory_rejections_name_their_fields() {
    let reader = PairReader::default();
    let e = reader
        .read(
            &json!({"instruction": "q", "history": [["only one"]], "chosen": "a", "rejected": "b"}),
        )
        .unwrap_err();
    assert_eq!(
        e.error.reason(),
        "field `history.0`: expected a [query, answer] pair of strings, found array"
    );
    let e = reader
        .read(&json!({"instruction": "q", "chosen": ["a"], "rejected": "b"}))
        .unwrap_err();
    assert_eq!(
        e.error.reason(),
        "field `chosen`: expected a string, found array"
    );
    let e = reader
        .read(&json!({"chosen_messages": [{"role": "user", "content": [{"type": "text", "value": "q"}]}, {"role": "assistant", "content": [{"type": "tool_calls", "value": "{}"}]}],
                      "rejected_messages": []}))
        .unwrap_err();
    assert_eq!(e.error.kind(), "non_text_part");
    let e = reader
        .read(&json!({"chosen_messages": [], "rejected_messages": []}))
        .unwrap_err();
    assert_eq!(e.error, PairError::EmptyResponse("chosen"));
    let e = reader.read(&json!({"rejected_messages": []})).unwrap_err();
    assert_eq!(e.error, PairError::MissingField("chosen_messages".into()));
}

// ---- HH with a separate prompt ------------------------------------------------------------

#[test]
fn hh_separate_prompt_with_plain_or_transcript_responses() {
    let prompt = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:";
    let p = auto(&json!({"prompt": prompt, "chosen": " good", "rejected": "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: bad"})).unwrap();
    assert_eq!(
        p.prompt,
        vec![msg("user", "a"), msg("assistant", "b"), msg("user", "c")]
    );
    assert_eq!((p.chosen.as_str(), p.rejected.as_str()), ("good", "bad"));
    let e = auto(&json!({"prompt": prompt, "chosen": "\n\nHuman: a\n\nAssistant: x\n\nHuman: c\n\nAssistant: good", "rejected": "bad"})).unwrap_err();
    assert_eq!(
        e,
        PairError::TranscriptPromptMismatch {
            side: "chosen",
            prompt: "prompt".into(),
            turn: 2
        }
    );
}

// ---- ranked records ----------------------------------------------------------------------

fn listwise(order: Option<ScoreOrder>, pairing: Pairing) -> PairReader {
    PairReader::new(
        LayoutSpec {
            kind: PairLayout::Listwise,
            score_order: order,
            pairing,
            ..LayoutSpec::default()
        },
        none(),
    )
}

fn texts(n: &Normalized) -> Vec<(&str, &str)> {
    n.pairs
        .iter()
        .map(|p| (p.chosen.as_str(), p.rejected.as_str()))
        .collect()
}

#[test]
fn listwise_adjacent_and_top_versus_rest() {
    let rec = json!({"prompt": "Q", "responses": ["A", "B", "C", "D"]});
    let n = listwise(None, Pairing::Listwise).read(&rec).unwrap();
    assert_eq!(
        texts(&n),
        vec![("A", "B"), ("B", "C"), ("C", "D"), ("A", "C"), ("A", "D")]
    );
    assert!(n.skipped.is_empty());
    assert!(n.pairs.iter().all(|p| p.prompt == vec![msg("user", "Q")]));
    let mut ids: Vec<&str> = n.pairs.iter().map(|p| p.pair_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    // Auto-detection reads the same record the same way.
    assert_eq!(PairReader::default().read(&rec).unwrap(), n);
    let best = listwise(None, Pairing::BestVsWorst).read(&rec).unwrap();
    assert_eq!(texts(&best), vec![("A", "D")]);
}

#[test]
fn listwise_scores_ranks_ties_duplicates_and_ids() {
    let rec = json!({"id": 9, "prompt": "Q", "responses": [
        {"text": "low", "score": 1}, {"text": "high", "score": 5}, {"text": "mid", "score": 3}
    ]});
    let n = listwise(Some(ScoreOrder::HigherIsBetter), Pairing::Listwise)
        .read(&rec)
        .unwrap();
    let got: Vec<(&str, &str, &str)> = n
        .pairs
        .iter()
        .map(|p| (p.pair_id.as_str(), p.chosen.as_str(), p.rejected.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("9-0-1", "high", "mid"),
            ("9-1-2", "mid", "low"),
            ("9-0-2", "high", "low")
        ]
    );

    let rec = json!({"prompt": "Q", "responses": [
        {"content": "b", "rank": 2}, {"content": "a", "rank": 1}, {"content": "b2", "rank": 2}
    ]});
    let n = listwise(Some(ScoreOrder::LowerIsBetter), Pairing::Listwise)
        .read(&rec)
        .unwrap();
    // b and b2 tie: their comparison is skipped with the reason.
    assert_eq!(texts(&n), vec![("a", "b"), ("a", "b2")]);
    assert_eq!(n.skipped.len(), 1);
    assert_eq!(
        n.skipped[0].to_string(),
        "tie: `responses.0` and `responses.2` have the same rank (2), so neither is preferred"
    );

    // Duplicate texts give no pair with themselves and no repeated pair.
    let rec = json!({"prompt": "Q", "responses": ["A", "A ", "B"]});
    let n = listwise(None, Pairing::Listwise).read(&rec).unwrap();
    assert_eq!(texts(&n), vec![("A", "B")]);
    let kinds: Vec<&str> = n.skipped.iter().map(SkippedPair::kind).collect();
    assert_eq!(kinds, ["identical_responses", "repeated_pair"]);
    assert_eq!(n.comparisons(), 3);

    // Best versus worst among ties: the first best against the last worst.
    let rec = json!({"prompt": "Q", "responses": [
        {"text": "w1", "score": 1}, {"text": "b1", "score": 9}, {"text": "b2", "score": 9}, {"text": "w2", "score": 1}
    ]});
    let n = listwise(Some(ScoreOrder::HigherIsBetter), Pairing::BestVsWorst)
        .read(&rec)
        .unwrap();
    assert_eq!(texts(&n), vec![("b1", "w2")]);
}

#[test]
fn listwise_rejections() {
    let l = |v: Value| {
        listwise(Some(ScoreOrder::HigherIsBetter), Pairing::Listwise)
            .read(&v)
            .unwrap_err()
            .error
    };
    assert_eq!(
        l(json!({"prompt": "Q", "responses": ["A"]})),
        PairError::NoPairs("fewer than two responses")
    );
    assert_eq!(
        l(json!({"prompt": "Q", "responses": ["A", " "]})),
        PairError::EmptyListedResponse("responses.1".into())
    );
    assert_eq!(
        l(json!({"responses": ["A", "B"]})),
        PairError::MissingField("prompt".into())
    );
    assert_eq!(
        l(json!({"prompt": " ", "responses": ["A", "B"]})),
        PairError::EmptyPrompt
    );
    assert_eq!(
        l(json!({"prompt": "Q", "responses": "A"})).reason(),
        "field `responses`: expected a list of responses, best first, found string"
    );
    assert_eq!(
        l(json!({"prompt": "Q", "responses": [{"text": "A", "score": 1}, {"text": "B"}]})).reason(),
        "field `responses.1`: expected the same ranking key (score, rank or none) as the first response, found another key"
    );
    assert_eq!(
        l(json!({"prompt": "Q", "responses": [{"text": "A", "score": "high"}, {"text": "B", "score": 1}]}))
            .reason(),
        "field `responses.0.score`: expected a number, found string"
    );
    // Without a stated direction a score is not used.
    let e = listwise(None, Pairing::Listwise)
        .read(&json!({"prompt": "Q", "responses": [{"text": "A", "rank": 1}, {"text": "B", "rank": 2}]}))
        .unwrap_err();
    assert_eq!(
        e.error,
        PairError::ScoreOrderRequired("responses.0.rank".into())
    );
    // All identical: readable, every comparison skipped.
    let n = listwise(None, Pairing::Listwise)
        .read(&json!({"prompt": "Q", "responses": ["A", "A"]}))
        .unwrap();
    assert_eq!((n.pairs.len(), n.skipped.len()), (0, 1));
}

#[test]
fn ranked_layouts_fall_back_to_a_generic_score_only_with_a_stated_order() {
    let rec = json!({"instruction": "Q", "completions": [{"response": "a", "score": 2}, {"response": "b", "score": 1}]});
    let e = PairReader::default().read(&rec).unwrap_err();
    assert_eq!(
        e.error,
        PairError::ScoreOrderRequired("completions.0.score".into())
    );
    let lower = PairReader::new(
        LayoutSpec {
            score_order: Some(ScoreOrder::LowerIsBetter),
            ..LayoutSpec::default()
        },
        none(),
    );
    assert_eq!(lower.read(&rec).unwrap().pairs[0].chosen, "b");
    // A completion with neither its own score nor a generic one names the documented field.
    let rec = json!({"instruction": "Q", "completions": [{"response": "a", "overall_score": 2}, {"response": "b"}]});
    assert_eq!(
        PairReader::default().read(&rec).unwrap_err().error,
        PairError::MissingField("completions.1.overall_score".into())
    );
    // UltraFeedback "N/A" ratings are left out of the mean; none left is an error.
    let reader = PairReader::new(
        LayoutSpec {
            ultrafeedback_score: rubricmill_core::spec::UltrafeedbackScore::MeanRating,
            ..LayoutSpec::default()
        },
        none(),
    );
    let rated =
        |h: &str, t: &str| json!({"helpfulness": {"Rating": h}, "truthfulness": [{"Rating": t}]});
    let rec = json!({"instruction": "Q", "completions": [
        {"response": "a", "annotations": rated("5", "N/A")}, {"response": "b", "annotations": rated("2", "4")}
    ]});
    let n = reader.read(&rec).unwrap();
    assert_eq!(texts(&n), vec![("a", "b")]);
    let rec = json!({"instruction": "Q", "completions": [
        {"response": "a", "annotations": rated("N/A", "N/A")}, {"response": "b", "annotations": rated("2", "4")}
    ]});
    assert_eq!(
        reader.read(&rec).unwrap_err().error.reason(),
        "missing field `completions.0.annotations.<aspect>.Rating`"
    );
}
