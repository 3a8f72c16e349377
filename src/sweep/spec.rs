//! The sweep file's schema, in the shape W&B sweep users know: a base experiment, a method, a
//! metric with its goal, a search space of dotted experiment keys, and optional early
//! termination. Unknown keys are errors, as in experiment files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::{RunRecord, Selection};
use crate::train::EpochMetrics;

/// One sweep file with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Defaults to the file's stem.
    #[serde(default)]
    pub name: Option<String>,
    /// The base experiment, relative to the sweep file; every trial is it plus overrides.
    pub experiment: PathBuf,
    pub method: Method,
    pub metric: MetricSpec,
    /// Trials to run; ignored by grid, which runs every combination.
    #[serde(default)]
    pub trials: Option<usize>,
    #[serde(default)]
    pub seed: u64,
    /// Trials trained at once on this machine.
    #[serde(default = "one")]
    pub parallel: usize,
    /// Dotted experiment keys and their values or distributions, in file order.
    pub parameters: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    pub early_terminate: Option<EarlyTerminate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Grid,
    Random,
    Tpe,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Tpe => "tpe",
        }
    }
}

/// What trials are judged by: always a validation figure, never a test figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMetric {
    CvAccuracy,
    CvLoss,
    ValAccuracy,
    ValLoss,
}

impl SweepMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            SweepMetric::CvAccuracy => "cv_accuracy",
            SweepMetric::CvLoss => "cv_loss",
            SweepMetric::ValAccuracy => "val_accuracy",
            SweepMetric::ValLoss => "val_loss",
        }
    }

    pub fn parse(s: &str) -> Option<SweepMetric> {
        [
            SweepMetric::CvAccuracy,
            SweepMetric::CvLoss,
            SweepMetric::ValAccuracy,
            SweepMetric::ValLoss,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    pub fn is_accuracy(self) -> bool {
        matches!(self, SweepMetric::CvAccuracy | SweepMetric::ValAccuracy)
    }

    /// This metric among a run's selection figures.
    pub fn of_selection(self, selection: &Selection) -> f64 {
        if self.is_accuracy() {
            selection.accuracy
        } else {
            selection.loss
        }
    }

    /// This metric for a run, from the selection figures it recorded.
    pub fn of_run(self, run: &RunRecord) -> Option<f64> {
        run.selection.as_ref().map(|s| self.of_selection(s))
    }

    /// This metric in one epoch's figures (the per-epoch validation values).
    pub fn of_epoch(self, epoch: &EpochMetrics) -> Option<f64> {
        if self.is_accuracy() {
            epoch.val_accuracy
        } else {
            epoch.val_loss
        }
    }

    /// Cross-validated metrics need `data.validation.folds`; held-out ones `fraction`.
    pub fn needs_folds(self) -> bool {
        matches!(self, SweepMetric::CvAccuracy | SweepMetric::CvLoss)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Goal {
    Maximize,
    Minimize,
}

impl Goal {
    pub fn as_str(self) -> &'static str {
        match self {
            Goal::Maximize => "maximize",
            Goal::Minimize => "minimize",
        }
    }

    /// Whether `a` is better than `b` under this goal.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Maximize => a > b,
            Goal::Minimize => a < b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    pub name: SweepMetric,
    /// By default accuracies are maximised and losses minimised.
    #[serde(default)]
    pub goal: Option<Goal>,
}

impl MetricSpec {
    pub fn goal(&self) -> Goal {
        self.goal.unwrap_or(if self.name.is_accuracy() {
            Goal::Maximize
        } else {
            Goal::Minimize
        })
    }
}

/// One parameter: `values` (any YAML values), or `min`/`max` with a distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// `uniform` by default; `int_uniform` when `min` and `max` are both integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<Distribution>,
    /// Quantisation step: drawn values are rounded to a multiple of `q` (from `min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    Uniform,
    /// Uniform in the logarithm; `min` and `max` are values, as in W&B's `log_uniform_values`
    /// and Optuna's `log=True`.
    LogUniform,
    IntUniform,
}

/// Stopping trials that do worse than earlier ones (Optuna's `MedianPruner`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyTerminate {
    #[serde(rename = "type")]
    pub kind: TerminateKind,
    /// No trial is pruned before this epoch (Optuna's `n_warmup_steps`).
    #[serde(default)]
    pub min_epochs: usize,
    /// Finished trials needed before any pruning (Optuna's `n_startup_trials`, default 5).
    #[serde(default = "five")]
    pub startup_trials: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminateKind {
    Median,
}

fn one() -> usize {
    1
}

fn five() -> usize {
    5
}
