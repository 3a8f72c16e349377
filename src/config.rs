//! Experiment files (`experiments/*.yaml`): parsing with every default resolved, validation,
//! and errors that name the file, the line where it can be found, the key and the value. Unknown
//! keys are errors, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image_prep::ResizeMode;

/// One experiment, as written in its YAML file with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Defaults to the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    pub data: DataConfig,
    #[serde(default)]
    pub head: HeadConfig,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default)]
    pub early_stopping: Option<EarlyStoppingConfig>,
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Relative to the workspace root.
    #[serde(default = "default_data_dir")]
    pub dir: PathBuf,
    /// Subfolders of `dir` holding one folder per person.
    #[serde(default)]
    pub train: Option<String>,
    #[serde(default)]
    pub test: Option<String>,
    /// Instead of `train`/`test`: split `dir`'s person folders.
    #[serde(default)]
    pub split: Option<SplitConfig>,
    #[serde(default = "default_resize")]
    pub resize: ResizeMode,
    /// Display names by folder name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub test_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Hidden layer sizes, each followed by ReLU (and dropout when set).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
    /// Scale each feature vector to unit length before the head.
    #[serde(default)]
    pub l2_normalize: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Batches per epoch, drawn from an endlessly reshuffled stream as Keras does with a
    /// generator; by default one pass over the training set.
    #[serde(default)]
    pub steps_per_epoch: Option<usize>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

/// The optimizer and its settings, with Keras's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    Rmsprop {
        #[serde(default = "default_lr")]
        lr: f64,
        #[serde(default = "default_rho")]
        rho: f64,
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    Adam {
        #[serde(default = "default_lr")]
        lr: f64,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
    Sgd {
        #[serde(default = "default_sgd_lr")]
        lr: f64,
        #[serde(default)]
        momentum: f64,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Rmsprop {
            lr: default_lr(),
            rho: default_rho(),
            epsilon: default_epsilon(),
        }
    }
}

impl OptimizerConfig {
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Rmsprop { lr, .. }
            | OptimizerConfig::Adam { lr, .. }
            | OptimizerConfig::Sgd { lr, .. } => *lr,
        }
    }
}

/// Keras `ImageDataGenerator`-style augmentation of training images; `copies` augmented
/// versions of each training image are made once and their features cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    #[serde(default)]
    pub copies: usize,
    /// Degrees; each copy turns by a uniform angle in [-rotation, rotation].
    #[serde(default)]
    pub rotation: f64,
    /// Fractions of the width and height.
    #[serde(default)]
    pub width_shift: f64,
    #[serde(default)]
    pub height_shift: f64,
    /// Zoom factors drawn from [1 - zoom, 1 + zoom].
    #[serde(default)]
    pub zoom: f64,
    /// Shear angle in degrees, drawn from [-shear, shear].
    #[serde(default)]
    pub shear: f64,
    #[serde(default)]
    pub horizontal_flip: bool,
    /// Brightness factor drawn from [low, high].
    #[serde(default = "default_brightness")]
    pub brightness: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            copies: 0,
            rotation: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            zoom: 0.0,
            shear: 0.0,
            horizontal_flip: false,
            brightness: default_brightness(),
        }
    }
}

/// A metric the callbacks watch; losses improve downwards, accuracies upwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    ValLoss,
    ValAccuracy,
    Loss,
    Accuracy,
}

impl Monitor {
    pub fn higher_is_better(self) -> bool {
        matches!(self, Monitor::ValAccuracy | Monitor::Accuracy)
    }

    /// Whether the metric is computed on the test set, which must then exist.
    pub fn needs_validation(self) -> bool {
        matches!(self, Monitor::ValLoss | Monitor::ValAccuracy)
    }
}

impl ExperimentConfig {
    /// The key of the first callback that watches a validation metric, if any.
    pub fn validation_monitor_key(&self) -> Option<&'static str> {
        if self
            .early_stopping
            .as_ref()
            .is_some_and(|e| e.monitor.needs_validation())
        {
            Some("early_stopping.monitor")
        } else if self
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.monitor.needs_validation())
        {
            Some("checkpoint.monitor")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    #[serde(default = "default_monitor")]
    pub monitor: Monitor,
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
    #[serde(default)]
    pub restore_best: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    #[serde(default = "default_monitor")]
    pub monitor: Monitor,
    #[serde(default = "default_true")]
    pub save_best_only: bool,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("facedata")
}
fn default_resize() -> ResizeMode {
    ResizeMode::Squash
}
fn default_hidden() -> Vec<usize> {
    vec![1024, 512]
}
fn default_epochs() -> usize {
    10
}
fn default_batch_size() -> usize {
    16
}
fn default_seed() -> u64 {
    42
}
fn default_lr() -> f64 {
    0.001
}
fn default_sgd_lr() -> f64 {
    0.01
}
fn default_rho() -> f64 {
    0.9
}
fn default_epsilon() -> f64 {
    1e-7
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_brightness() -> [f64; 2] {
    [1.0, 1.0]
}
fn default_monitor() -> Monitor {
    Monitor::ValLoss
}
fn default_true() -> bool {
    true
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig {
            hidden: default_hidden(),
            dropout: 0.0,
            l2_normalize: false,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            optimizer: OptimizerConfig::default(),
            epochs: default_epochs(),
            steps_per_epoch: None,
            batch_size: default_batch_size(),
            seed: default_seed(),
        }
    }
}

/// A loaded, validated experiment and where it came from.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub path: PathBuf,
    /// The file's text, to point errors found later (e.g. in the dataset) at their line.
    pub text: String,
    pub config: ExperimentConfig,
}

impl Experiment {
    /// Reads, parses and validates an experiment file.
    pub fn load(path: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            line: None,
            key: "file".into(),
            message: format!("{e}; check the path (experiments live in experiments/*.yaml)"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates YAML text; `path` names the file in errors and gives the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Experiment> {
        let mut config: ExperimentConfig =
            serde_yaml::from_str(text).map_err(|e| Error::Config {
                path: path.to_owned(),
                line: e.location().map(|l| l.line()),
                key: yaml_error_key(&e),
                message: e.to_string(),
            })?;
        if config.name.is_none() {
            config.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        let experiment = Experiment {
            path: path.to_owned(),
            text: text.to_owned(),
            config,
        };
        if let Some((key, message)) = first_invalid(&experiment.config) {
            return Err(experiment.error(&key, message));
        }
        Ok(experiment)
    }

    /// An error about `key` of this experiment, pointed at the key's line (or, for a key
    /// that is missing, at its closest written parent).
    pub fn error(&self, key: &str, message: String) -> Error {
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
        serde_yaml::to_string(&self.config).expect("a config always serialises")
    }

    pub fn config_hash(&self) -> String {
        blake3::hash(self.resolved_yaml().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// serde_yaml prefixes nested errors with the key path (`train.batch_size: ...`).
fn yaml_error_key(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    match text.split_once(": ") {
        Some((key, _)) if !key.contains(' ') => key.to_owned(),
        _ => "(document)".to_owned(),
    }
}

/// The first value that parses but makes no sense, as (key path, message).
fn first_invalid(c: &ExperimentConfig) -> Option<(String, String)> {
    let fail = |key: &str, message: String| Some((key.to_owned(), message));
    let d = &c.data;
    if d.split.is_some() && (d.train.is_some() || d.test.is_some()) {
        return fail(
            "data.split",
            "give either data.split or data.train/data.test, not both".into(),
        );
    }
    if d.split.is_none() && d.train.is_some() != d.test.is_some() {
        let missing = if d.train.is_none() {
            "data.train"
        } else {
            "data.test"
        };
        return fail(
            missing,
            "data.train and data.test go together; add the missing one or use data.split".into(),
        );
    }
    if let Some(split) = &d.split {
        if !(split.test_fraction > 0.0 && split.test_fraction < 1.0) {
            return fail(
                "data.split.test_fraction",
                format!("{} is not between 0 and 1 (exclusive)", split.test_fraction),
            );
        }
    }
    if let Some(i) = c.head.hidden.iter().position(|&h| h == 0) {
        return fail(
            &format!("head.hidden[{i}]"),
            "0 units: every hidden layer needs at least 1".into(),
        );
    }
    if !(0.0..1.0).contains(&c.head.dropout) {
        return fail(
            "head.dropout",
            format!("{} is not in [0, 1)", c.head.dropout),
        );
    }
    let t = &c.train;
    let lr = t.optimizer.lr();
    if !(lr.is_finite() && lr > 0.0) {
        return fail(
            "train.optimizer.lr",
            format!("{lr} is not a positive learning rate"),
        );
    }
    if let Some(problem) = optimizer_problem(&t.optimizer) {
        return Some(problem);
    }
    if t.epochs == 0 {
        return fail("train.epochs", "0: train for at least 1 epoch".into());
    }
    if t.batch_size == 0 {
        return fail(
            "train.batch_size",
            "0: a batch needs at least 1 example".into(),
        );
    }
    if t.steps_per_epoch == Some(0) {
        return fail(
            "train.steps_per_epoch",
            "0: leave it out for one pass per epoch".into(),
        );
    }
    let a = &c.augment;
    for (key, value) in [
        ("augment.rotation", a.rotation),
        ("augment.width_shift", a.width_shift),
        ("augment.height_shift", a.height_shift),
        ("augment.zoom", a.zoom),
        ("augment.shear", a.shear),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            return fail(
                key,
                format!("{value} is negative; ranges are given as their half-width"),
            );
        }
    }
    if a.zoom >= 1.0 {
        return fail(
            "augment.zoom",
            format!(
                "{} would allow zooming to 0 or below; use less than 1",
                a.zoom
            ),
        );
    }
    let [low, high] = a.brightness;
    if !(low > 0.0 && low <= high) {
        return fail(
            "augment.brightness",
            format!("[{low}, {high}] is not a range of positive factors, low first"),
        );
    }
    if let Some(es) = &c.early_stopping {
        if !(es.min_delta.is_finite() && es.min_delta >= 0.0) {
            return fail(
                "early_stopping.min_delta",
                format!("{} is negative", es.min_delta),
            );
        }
    }
    None
}

fn optimizer_problem(o: &OptimizerConfig) -> Option<(String, String)> {
    let bad_fraction = |key: &str, v: f64| {
        (!(0.0..1.0).contains(&v)).then(|| {
            (
                format!("train.optimizer.{key}"),
                format!("{v} is not in [0, 1)"),
            )
        })
    };
    let bad_epsilon = |v: f64| {
        (v.is_nan() || v <= 0.0).then(|| {
            (
                "train.optimizer.epsilon".to_owned(),
                format!("{v} is not positive"),
            )
        })
    };
    match *o {
        OptimizerConfig::Rmsprop { rho, epsilon, .. } => {
            bad_fraction("rho", rho).or(bad_epsilon(epsilon))
        }
        OptimizerConfig::Adam {
            beta1,
            beta2,
            epsilon,
            ..
        } => bad_fraction("beta1", beta1)
            .or(bad_fraction("beta2", beta2))
            .or(bad_epsilon(epsilon)),
        OptimizerConfig::Sgd { momentum, .. } => bad_fraction("momentum", momentum),
    }
}

/// The 1-based line where a dotted key path (`train.optimizer.lr`, `head.hidden[0]`) is written:
/// each key is looked for below its parent, at line start or inside a flow mapping.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for part in key.split('.') {
        let name = part.split('[').next().unwrap_or(part);
        let pattern = format!("{name}:");
        let hit = (from..lines.len()).find(|&i| {
            let line = lines[i].split('#').next().unwrap_or("");
            let trimmed = line.trim_start();
            trimmed.starts_with(&pattern)
                || line.contains(&format!("{{{pattern}"))
                || line.contains(&format!(" {pattern}"))
        })?;
        found = Some(hit + 1);
        from = hit;
    }
    found
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

/// A YAML document as dotted key paths (`train.optimizer.lr`) and their values, for comparing
/// the configs of runs. Sequences of scalars stay one value (`[1024, 512]`).
pub fn flatten_yaml(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    let key = match k {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, v, out);
                }
            }
            serde_yaml::Value::Tagged(tagged) => walk(prefix, &tagged.value, out),
            other => {
                let text = serde_json::to_string(other)
                    .unwrap_or_default()
                    .replace(',', ", ");
                out.insert(prefix.to_owned(), text.trim_matches('"').to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        walk("", &value, &mut out);
    }
    out
}

/// The keys whose values are not the same in every config (a missing key counts as a value).
pub fn differing_keys(configs: &[BTreeMap<String, String>]) -> Vec<String> {
    let all: std::collections::BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    all.into_iter()
        .filter(|k| {
            configs
                .windows(2)
                .any(|pair| pair[0].get(*k) != pair[1].get(*k))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    #[test]
    fn flattening_and_diffing_configs() {
        let a = flatten_yaml("train:\n  optimizer: {name: adam, lr: 0.01}\n  epochs: 3\nhead:\n  hidden: [1024, 512]\n");
        assert_eq!(a["train.optimizer.lr"], "0.01");
        assert_eq!(a["head.hidden"], "[1024, 512]");
        let b = flatten_yaml("train:\n  optimizer: {name: adam, lr: 0.001}\n  epochs: 3\nhead:\n  hidden: [1024, 512]\nname: b\n");
        assert_eq!(
            differing_keys(&[a, b]),
            vec!["name".to_owned(), "train.optimizer.lr".to_owned()]
        );
    }
}
