//! Property tests of the preference-record reader, which reads untrusted JSON in a dozen
//! layouts: for any record (random JSON built from the layouts' own field names, and the
//! project's layout samples with random damage), under auto-detection and under every forced
//! layout, reading never panics, is deterministic, and a record it accepts yields at least one
//! pair or skipped comparison, each pair with two different non-empty responses.

use std::path::PathBuf;

use proptest::prelude::*;
use rubricmill_core::PairLayout;
use rubricmill_mine::pairs::{FieldMap, PairReader};
use serde_json::{Map, Value};

/// Field names the layouts look for, so random records reach deep into every reader.
const KEYS: &[&str] = &[
    "prompt",
    "chosen",
    "rejected",
    "messages",
    "role",
    "content",
    "conversations",
    "from",
    "value",
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "responses",
    "completions",
    "answers",
    "rank",
    "score",
    "scores",
    "rating",
    "ratings",
    "chosen_messages",
    "rejected_messages",
    "type",
    "text",
    "response",
    "response1",
    "response2",
    "overall_preference",
    "helpfulness",
    "fine-grained_score",
    "annotations",
    "model",
    "chosen-rating",
    "rejected-rating",
    "question",
    "human",
    "gpt",
    "user",
    "assistant",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        Just(Value::from(f64::MAX)),
        prop::sample::select(KEYS).prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
        "(\n\nHuman: \\PC{0,10}\n\nAssistant: \\PC{0,10}){1,3}".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|entries| {
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// Reads `record` under every layout and checks the invariants.
fn check(record: &Value) -> Result<(), TestCaseError> {
    let layouts = std::iter::once(PairLayout::Auto).chain(PairLayout::CONCRETE.iter().copied());
    for layout in layouts {
        let reader = PairReader::new(layout, FieldMap::default());
        let first = reader.read(record);
        let second = reader.read(record);
        prop_assert_eq!(&first, &second, "reading is deterministic");
        if let Ok(normalized) = first {
            prop_assert!(normalized.comparisons() >= 1, "{:?}", normalized);
            for pair in &normalized.pairs {
                prop_assert_ne!(&pair.chosen, &pair.rejected, "{:?}", pair);
            }
        }
    }
    Ok(())
}

fn samples() -> Vec<Value> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/pairs/layouts");
    let mut records = Vec::new();
    for entry in std::fs::read_dir(folder).expect("layout samples") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        records.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert!(records.len() >= 12, "one sample file per layout at least");
    records
}

/// One random change to a record: a field removed, replaced by random JSON, or its string cut.
#[derive(Debug, Clone)]
enum Damage {
    Remove(usize),
    Replace(usize, Value),
    Truncate(usize, usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Remove),
        (any::<usize>(), json()).prop_map(|(i, v)| Damage::Replace(i, v)),
        (any::<usize>(), 0usize..20).prop_map(|(i, n)| Damage::Truncate(i, n)),
    ]
}

fn apply(record: &mut Value, damage: &Damage) {
    let Some(object) = record.as_object_mut() else {
        return;
    };
    if object.is_empty() {
        return;
    }
    let keys: Vec<String> = object.keys().cloned().collect();
    match damage {
        Damage::Remove(i) => {
            object.remove(&keys[i % keys.len()]);
        }
        Damage::Replace(i, value) => {
            object.insert(keys[i % keys.len()].clone(), value.clone());
        }
        Damage::Truncate(i, n) => {
            if let Some(Value::String(text)) = object.get_mut(&keys[i % keys.len()]) {
                let cut: String = text.chars().take(*n).collect();
                *text = cut;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_records_never_panic(record in json()) {
        check(&record)?;
    }

    #[test]
    fn damaged_samples_never_panic(
        pick in any::<usize>(),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let samples = samples();
        let mut record = samples[pick % samples.len()].clone();
        for damage in &damages {
            apply(&mut record, damage);
        }
        check(&record)?;
    }
}
