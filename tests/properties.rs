//! Generated input for the loaders that read what users and folders hand facelab: mutated
//! experiment files (wrong types, huge numbers, deep nesting, odd strings) must give a config or
//! an error, never a panic; arbitrary bytes given as an image must decode or be refused.

use std::path::Path;

use facelab::config::Experiment;
use proptest::prelude::*;

const BASE: &str = "\
data: {dir: facedata, train: train, test: test}
head: {hidden: [1024, 512], dropout: 0.2}
train:
  optimizer: {name: rmsprop, lr: 0.001}
  epochs: 3
  batch_size: 16
augment: {copies: 2, rotation: 45, brightness: [0.8, 1.2]}
early_stopping: {monitor: val_loss, patience: 3}
";

/// Values a careless or hostile user might write in place of any value.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        Just("1e400".to_owned()),
        Just("-.inf".to_owned()),
        Just(".nan".to_owned()),
        Just("~".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        (1usize..200).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..200).prop_map(|n| format!("{}{}", "{a: ".repeat(n), "}".repeat(n))),
        "[ -~]{0,40}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,20}",
        Just("&a [1]".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary AAAA".to_owned()),
    ]
}

/// The base config with the value after one `key: ` replaced.
fn mutated_config() -> impl Strategy<Value = String> {
    let slots: Vec<usize> = BASE.match_indices(": ").map(|(i, _)| i + 2).collect();
    (prop::sample::select(slots), odd_value()).prop_map(|(at, value)| {
        let end = BASE[at..]
            .find(['\n', ',', '}'])
            .map_or(BASE.len(), |e| at + e);
        format!("{}{}{}", &BASE[..at], value, &BASE[end..])
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_mutated_experiment_file_parses_or_is_refused(text in mutated_config()) {
        let _ = Experiment::parse(Path::new("mutated.yaml"), &text);
    }

    #[test]
    fn arbitrary_text_as_an_experiment_file_never_panics(text in "\\PC{0,400}") {
        let _ = Experiment::parse(Path::new("random.yaml"), &text);
    }

    #[test]
    fn arbitrary_bytes_as_an_image_decode_or_are_refused(
        header in prop::sample::select(vec![
            &b"\\x89PNG\\r\\n\\x1a\\n"[..], b"\\xff\\xd8\\xff\\xe0", b"GIF89a", b"BM", b"P5\\n", b"RIFF", b"II*\\0",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = header.to_vec();
        bytes.extend(body);
        let _ = facelab::image_prep::decode(Path::new("random.bin"), &bytes);
    }
}

#[test]
fn a_valid_config_survives_the_mutator_s_base() {
    Experiment::parse(Path::new("base.yaml"), BASE).unwrap();
}
