//! The experiment file's schema: every key an experiment may set, with the defaults Keras
//! users expect (RMSprop at 0.001, batch 16, ...). Unknown keys are errors (`deny_unknown_fields`),
//! so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backbone::BackboneKind;
use crate::image_prep::ResizeMode;

/// One experiment, as written in its YAML file with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Defaults to the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Which network makes the features: `mobilenet_v2` (ImageNet, the notebook's) or
    /// `dlib_resnet` (dlib's face-trained ResNet on aligned faces).
    #[serde(default, skip_serializing_if = "BackboneKind::is_default")]
    pub backbone: BackboneKind,
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
    /// Saying "unknown" to strangers: a threshold calibrated for a false-acceptance rate.
    /// Absent: on (at 5%) for `cosine` and `centroid` heads, off for `dense`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_set: Option<OpenSetConfig>,
    /// How test images (and `facelab predict`) are turned into features.
    #[serde(default, skip_serializing_if = "PredictConfig::is_default")]
    pub predict: PredictConfig,
}

/// `open_set`: calibrate an acceptance threshold on people the head never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSetConfig {
    /// The share of strangers' faces a run may accept (false-positive identification rate).
    #[serde(default = "default_far")]
    pub far: f64,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// `predict`: test-time choices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// Average the features of each image and its mirror image before the head.
    #[serde(default)]
    pub flip_average: bool,
}

impl PredictConfig {
    fn is_default(&self) -> bool {
        *self == PredictConfig::default()
    }
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
    /// Validation images held out of the training images, for honest model selection.
    #[serde(default)]
    pub validation: Option<ValidationConfig>,
    #[serde(default = "default_resize")]
    pub resize: ResizeMode,
    /// Display names by folder name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A folder of `dir` holding one folder per stranger: never trained on, their images
    /// measure how many strangers a run accepts. By default `strangers`, when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strangers: Option<String>,
}

/// The strangers folder's name when `data.strangers` is not given.
pub const DEFAULT_STRANGERS: &str = "strangers";

impl DataConfig {
    /// The strangers folder (relative to `dir`) and whether it was named in the file.
    pub fn strangers_folder(&self) -> (&str, bool) {
        match &self.strangers {
            Some(name) => (name, true),
            None => (DEFAULT_STRANGERS, false),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    pub test_fraction: f64,
    #[serde(default)]
    pub seed: u64,
}

/// Held-out validation within the training images, per person (stratified): `folds: k` for
/// k-fold cross-validation (`cv_*` metrics, the mean over folds) or `fraction` for one held-out
/// share (`val_*` metrics). Either way the test set is used once, after training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Shuffles each person's images before they are dealt to folds.
    #[serde(default)]
    pub seed: u64,
}

/// How the training images are split for validation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validation {
    Folds(usize),
    Fraction(f64),
}

impl ValidationConfig {
    /// The split asked for; `None` until validation has checked that exactly one is given.
    pub fn kind(&self) -> Option<Validation> {
        match (self.folds, self.fraction) {
            (Some(k), None) => Some(Validation::Folds(k)),
            (None, Some(f)) => Some(Validation::Fraction(f)),
            _ => None,
        }
    }
}

/// What kind of head names the faces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadType {
    /// Dense layers and a softmax (the notebook's head).
    #[default]
    Dense,
    /// A projection to `embedding` units, L2-normalised, and a cosine-margin (CosFace) output.
    Cosine,
    /// Class centroids in a whitened space, fitted in closed form (no epochs).
    Centroid,
}

impl HeadType {
    pub fn name(self) -> &'static str {
        match self {
            HeadType::Dense => "dense",
            HeadType::Cosine => "cosine",
            HeadType::Centroid => "centroid",
        }
    }
}

/// Every head's keys in one mapping, so that a sweep can vary `head.type` alone; a key that
/// does not apply to the head's type is ignored. The cosine and centroid keys are written out
/// only when given, so the configs (and hashes) of dense runs stay as they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    #[serde(default, rename = "type", skip_serializing_if = "is_dense")]
    pub kind: HeadType,
    /// `dense`: hidden layer sizes, each followed by ReLU (and dropout when set).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    #[serde(default)]
    pub dropout: f64,
    /// Scale each feature vector to unit length before the head.
    #[serde(default)]
    pub l2_normalize: bool,
    /// `cosine`: units of the projection before the cosine (0: the features themselves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<usize>,
    /// `cosine` and `centroid`: logits are `scale` times the cosine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// `cosine`: the additive cosine margin (CosFace) subtracted from the true class in training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// `centroid`: how far the within-class covariance is shrunk toward its mean eigenvalue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shrinkage: Option<f64>,
}

fn is_dense(kind: &HeadType) -> bool {
    *kind == HeadType::Dense
}

impl HeadConfig {
    pub fn embedding(&self) -> usize {
        self.embedding.unwrap_or(256)
    }
    pub fn scale(&self) -> f64 {
        self.scale.unwrap_or(30.0)
    }
    pub fn margin(&self) -> f64 {
        self.margin.unwrap_or(0.35)
    }
    pub fn shrinkage(&self) -> f64 {
        self.shrinkage.unwrap_or(0.2)
    }
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
    /// Seeds the copies; by default `train.seed`. A sweep sets it so that trials with their
    /// own training seeds share one set of copies (and their cached features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
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
            seed: None,
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
    /// The seed of the augmented copies: `augment.seed`, else `train.seed`.
    pub fn augment_seed(&self) -> u64 {
        self.augment.seed.unwrap_or(self.train.seed)
    }

    /// The false-acceptance rate to calibrate for, when the run calibrates a threshold (see
    /// [`ExperimentConfig::open_set`]).
    pub fn open_set_far(&self) -> Option<f64> {
        match &self.open_set {
            Some(o) => o.enabled.then_some(o.far),
            None => (self.head.kind != HeadType::Dense).then_some(default_far()),
        }
    }

    /// Whether early stopping restores the best epoch's weights when training ends.
    pub fn restores_best(&self) -> bool {
        self.early_stopping.as_ref().is_some_and(|e| e.restore_best)
    }

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
fn default_far() -> f64 {
    0.05
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
            kind: HeadType::Dense,
            hidden: default_hidden(),
            dropout: 0.0,
            l2_normalize: false,
            embedding: None,
            scale: None,
            margin: None,
            shrinkage: None,
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
