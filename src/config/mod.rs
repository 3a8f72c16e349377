//! Experiment files (`experiments/*.yaml`): parsing with every default resolved, validation,
//! and errors that name the file, the line where it can be found, the key and the value.
//!
//! `schema` holds the keys and defaults, `validate` the checks on values, `location` finds a
//! key's line, `overrides` applies `--set KEY=VALUE`, and `diff` compares the configs of runs.

mod diff;
mod location;
mod overrides;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{limits, read_text_limited};

pub use diff::{differing_keys, flatten_yaml};
pub(crate) use location::line_of_key;
pub use overrides::Override;
pub use schema::*;

/// Whether `key` (or a key above or below it) was set with `--set`.
fn is_overridden(overridden: &[String], key: &str) -> bool {
    let key = key.split('[').next().unwrap_or(key);
    overridden
        .iter()
        .any(|o| o == key || key.starts_with(&format!("{o}.")) || o.starts_with(&format!("{key}.")))
}

/// A loaded, validated experiment and where it came from.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's text, to point errors found later (e.g. in the dataset) at their line.
    pub text: String,
    pub config: ExperimentConfig,
    /// Keys set on the command line rather than in the file (their errors say so).
    pub overridden: Vec<String>,
}

impl Experiment {
    /// Reads, parses and validates an experiment file.
    pub fn load(path: &Path) -> Result<Experiment> {
        Self::load_with(path, &[])
    }

    /// [`Experiment::load`] with `overrides` applied to the file's document before it is
    /// checked, so an overridden value is held to the same rules as a written one.
    pub fn load_with(path: &Path, overrides: &[Override]) -> Result<Experiment> {
        let text = read_text_limited(path, limits::TEXT).map_err(|e| Error::Config {
            path: path.to_owned(),
            line: None,
            key: "file".into(),
            message: format!(
                "{}; check the path (experiments live in experiments/*.yaml)",
                e.reason()
            ),
        })?;
        Self::parse_with(path, &text, overrides)
    }

    /// Parses and validates YAML text; `path` names the file in errors and gives the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment> {
        Self::parse_with(path, text, &[])
    }

    /// [`Experiment::parse`] with `overrides` applied (see [`Experiment::load_with`]).
    pub fn parse_with(path: &Path, text: &str, overrides: &[Override]) -> Result<Experiment> {
        if let Some(line) = location::too_deep(text) {
            return Err(Error::Config {
                path: path.to_owned(),
                line: Some(line),
                key: "(document)".into(),
                message: format!(
                    "nested more than {} levels deep; an experiment file needs a few",
                    location::MAX_DEPTH
                ),
            });
        }
        let file_error = |e: serde_norway::Error| Error::Config {
            path: path.to_owned(),
            line: e.location().map(|l| l.line()),
            key: location::yaml_error_key(&e),
            message: clip(location::yaml_error_message(&e)),
        };
        let overridden: Vec<String> = overrides.iter().map(|o| o.key.clone()).collect();
        // The file must be valid by itself; what fails after that, an override broke.
        let mut config: ExperimentConfig = serde_norway::from_str(text).map_err(file_error)?;
        if !overrides.is_empty() {
            let mut document: serde_norway::Value =
                serde_norway::from_str(text).map_err(file_error)?;
            let set_error = |key: String, message: String| Error::Config {
                path: path.to_owned(),
                line: None,
                key,
                message: format!("{message} (set with --set)"),
            };
            for o in overrides {
                o.apply(&mut document)
                    .map_err(|message| set_error(o.key.clone(), message))?;
            }
            // Through text rather than `from_value`, whose errors do not name the key; the
            // parser's position is in that text, not the file, so it is left out.
            let merged = serde_norway::to_string(&document).expect("a YAML value serialises");
            config = serde_norway::from_str(&merged).map_err(|e| {
                let message = e.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                set_error(location::yaml_error_key(&e), clip(message.to_owned()))
            })?;
        }
        if config.name.is_none() {
            config.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        let experiment = Experiment {
            path: path.to_owned(),
            text: text.to_owned(),
            config,
            overridden,
        };
        if let Some((key, message)) = validate::first_invalid(&experiment.config) {
            return Err(experiment.error(&key, message));
        }
        Ok(experiment)
    }

    /// An error about `key` of this experiment, pointed at the key's line (or, for a key
    /// that is missing, at its closest written parent).
    pub fn error(&self, key: &str, message: String) -> Error {
        if is_overridden(&self.overridden, key) {
            return Error::Config {
                path: self.path.clone(),
                line: None,
                key: key.to_owned(),
                message: format!("{message} (set with --set)"),
            };
        }
        let parents =
            std::iter::successors(Some(key), |k| k.rsplit_once('.').map(|(parent, _)| parent));
        Error::Config {
            path: self.path.clone(),
            line: parents.into_iter().find_map(|k| line_of_key(&self.text, k)),
            key: key.to_owned(),
            message,
        }
    }

    pub fn name(&self) -> &str {
        self.config.name.as_deref().unwrap_or("experiment")
    }

    /// The configuration with every default written out: what a run records.
    pub fn resolved_yaml(&self) -> String {
        serde_norway::to_string(&self.config).expect("a config always serialises")
    }

    pub fn config_hash(&self) -> String {
        blake3::hash(self.resolved_yaml().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// Parses a YAML file's text into `T` (a sweep file, say), refusing deep nesting first, with
/// errors that name the file, line and key as an experiment file's do.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    if let Some(line) = location::too_deep(text) {
        return Err(Error::Config {
            path: path.to_owned(),
            line: Some(line),
            key: "(document)".into(),
            message: format!("nested more than {} levels deep", location::MAX_DEPTH),
        });
    }
    serde_norway::from_str(text).map_err(|e| Error::Config {
        path: path.to_owned(),
        line: e.location().map(|l| l.line()),
        key: location::yaml_error_key(&e),
        message: clip(location::yaml_error_message(&e)),
    })
}

/// Longest parser message quoted in an error: a huge scalar is shown by its start.
const MAX_MESSAGE_CHARS: usize = 300;

fn clip(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let start: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{start}… (message cut)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTEBOOK: &str = "\
data:
  dir: facedata
  train: train
  test: test
head:
  hidden: [1024, 512]
train:
  optimizer: {name: rmsprop, lr: 0.001}
  epochs: 3
  steps_per_epoch: 68
  batch_size: 16
augment:
  copies: 2
  rotation: 45
  horizontal_flip: true
early_stopping: {monitor: val_loss, patience: 3, restore_best: true}
checkpoint: {monitor: val_loss}
";

    fn parse(text: &str) -> Result<Experiment> {
        Experiment::parse(Path::new("experiments/x.yaml"), text)
    }

    #[test]
    fn defaults_are_resolved_and_the_name_comes_from_the_file() {
        let e = parse(NOTEBOOK).unwrap();
        assert_eq!(e.name(), "x");
        assert_eq!(e.config.train.steps_per_epoch, Some(68));
        assert_eq!(
            e.config.train.optimizer,
            OptimizerConfig::Rmsprop {
                lr: 0.001,
                rho: 0.9,
                epsilon: 1e-7
            }
        );
        assert_eq!(e.config.augment.brightness, [1.0, 1.0]);
        assert!(e.config.checkpoint.as_ref().unwrap().save_best_only);
        let reparsed = parse(&e.resolved_yaml()).unwrap();
        assert_eq!(reparsed.config, e.config);
    }

    fn config_error(text: &str) -> (Option<usize>, String, String) {
        match parse(text).unwrap_err() {
            Error::Config {
                line, key, message, ..
            } => (line, key, message),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_key_and_line() {
        let (line, key, message) = config_error("data:\n  dir: facedata\ntrain:\n  epocs: 3\n");
        assert_eq!(line, Some(4));
        assert!(key.contains("train"), "{key}");
        assert!(message.contains("epocs"), "{message}");

        let (line, _, message) =
            config_error("data:\n  dir: facedata\ntrain:\n  batch_size: sixteen\n");
        assert_eq!(line, Some(4));
        assert!(
            message.contains("sixteen") || message.contains("invalid type"),
            "{message}"
        );
    }

    #[test]
    fn a_message_says_the_key_and_line_once_and_names_the_choices() {
        let (line, key, message) = config_error("data: {dir: d}\nbackbone: resnet50\n");
        assert_eq!((line, key.as_str()), (Some(2), "backbone"));
        assert!(
            message.starts_with("unknown variant `resnet50`")
                && message.contains("`mobilenet_v2` or `dlib_resnet`")
                && !message.contains("line"),
            "{message}"
        );
        let e = parse("data: {dir: d}\nbackbone: dlib_resnet\n").unwrap();
        assert_eq!(e.config.backbone, crate::backbone::BackboneKind::DlibResnet);
        assert!(e.resolved_yaml().contains("backbone: dlib_resnet"));
        let default = parse("data: {dir: d}\n").unwrap();
        assert!(
            !default.resolved_yaml().contains("backbone"),
            "the default stays out of resolved configs, so their hashes do not change"
        );
    }

    #[test]
    fn a_huge_value_gives_a_short_error() {
        let text = NOTEBOOK.replace(
            "batch_size: 16",
            &format!("batch_size: {}", "x".repeat(500_000)),
        );
        let (line, key, message) = config_error(&text);
        assert_eq!((line, key.as_str()), (Some(11), "train.batch_size"));
        assert!(
            message.len() < 1000 && message.ends_with("(message cut)"),
            "{}",
            message.len()
        );
    }

    #[test]
    fn deep_nesting_is_refused_quickly_before_parsing() {
        let deep_flow = format!("data: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (line, key, message) = config_error(&deep_flow);
        assert_eq!((line, key.as_str()), (Some(1), "(document)"));
        assert!(message.contains("nested"), "{message}");
        let deep_block: String = (0..2000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert_eq!(config_error(&deep_block).0, Some(130));
        // Brackets inside quotes and comments are text.
        parse(&format!(
            "{NOTEBOOK}name: \"{}\"  # {}\n",
            "[".repeat(50),
            "{".repeat(50)
        ))
        .unwrap();
    }

    #[test]
    fn a_learning_rate_beyond_f32_is_refused() {
        for lr in ["1e39", "1e-50"] {
            let (_, key, message) =
                config_error(&NOTEBOOK.replace("lr: 0.001", &format!("lr: {lr}")));
            assert_eq!(key, "train.optimizer.lr");
            assert!(
                message.contains(lr) && message.contains("32-bit"),
                "{message}"
            );
        }
    }

    #[test]
    fn out_of_range_values_name_key_value_and_line() {
        let text = NOTEBOOK.replace("lr: 0.001", "lr: -0.5");
        let (line, key, message) = config_error(&text);
        assert_eq!((line, key.as_str()), (Some(8), "train.optimizer.lr"));
        assert!(message.contains("-0.5"), "{message}");

        let (line, key, _) = config_error(&NOTEBOOK.replace("batch_size: 16", "batch_size: 0"));
        assert_eq!((line, key.as_str()), (Some(11), "train.batch_size"));

        let (line, key, _) = config_error(&NOTEBOOK.replace("[1024, 512]", "[1024, 0]"));
        assert_eq!((line, key.as_str()), (Some(6), "head.hidden[1]"));
    }

    #[test]
    fn line_of_key_follows_nesting_and_flow_maps() {
        assert_eq!(line_of_key(NOTEBOOK, "train.epochs"), Some(9));
        assert_eq!(line_of_key(NOTEBOOK, "early_stopping.patience"), Some(16));
        assert_eq!(line_of_key(NOTEBOOK, "augment.zoom"), None);
    }
}
