//! The rows the store reads and writes, as Rust values: a run's lifecycle, what is known when
//! it starts and when it finishes, the run as stored, and the figures it is selected by.

use crate::train::open_set::OpenSetReport;
use serde::Serialize;

use crate::train::metrics::ConfusionMatrix;

/// A run's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Interrupted,
    /// Stopped by a sweep's pruner: its epochs were worse than the median of earlier trials.
    Pruned,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Pruned => "pruned",
        }
    }

    pub(super) fn parse(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "finished" => RunStatus::Finished,
            "failed" => RunStatus::Failed,
            "pruned" => RunStatus::Pruned,
            _ => RunStatus::Interrupted,
        }
    }
}

/// What is known when a run starts.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub experiment: String,
    pub config_yaml: String,
    pub config_hash: String,
    pub dataset_hash: String,
    pub weights_hash: String,
    pub seed: u64,
    /// The sweep trial this run is, linked in the same transaction that creates it.
    pub trial: Option<TrialOf>,
}

/// A run as stored, with figures derived from its epochs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub experiment: String,
    pub status: RunStatus,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub seed: u64,
    pub config_hash: String,
    pub dataset_hash: String,
    pub weights_hash: String,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub best_val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub error: Option<String>,
    pub tags: Vec<String>,
    pub notes: Option<String>,
    /// The validation figures the run is selected by, when its experiment holds out images.
    pub selection: Option<Selection>,
    /// The sweep and trial number, when the run is a sweep's trial.
    pub sweep: Option<TrialOf>,
    #[serde(skip)]
    pub config_yaml: String,
}

/// Where a run's selection figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionKind {
    /// The mean over cross-validation folds (`data.validation.folds`).
    Cv,
    /// One held-out share of the training images (`data.validation.fraction`).
    Val,
}

impl SelectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectionKind::Cv => "cv",
            SelectionKind::Val => "val",
        }
    }

    pub(super) fn parse(s: &str) -> Option<SelectionKind> {
        match s {
            "cv" => Some(SelectionKind::Cv),
            "val" => Some(SelectionKind::Val),
            _ => None,
        }
    }
}

/// Validation loss and accuracy at the epoch a run chose (never test figures).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Selection {
    pub kind: SelectionKind,
    pub loss: f64,
    pub accuracy: f64,
}

impl Selection {
    /// `cv accuracy 0.9500, cv loss 0.1234`: how the CLI and the TUI show it.
    pub fn summary(&self) -> String {
        let kind = self.kind.as_str();
        format!(
            "{kind} accuracy {:.4}, {kind} loss {:.4}",
            self.accuracy, self.loss
        )
    }
}

/// A run's place in a sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialOf {
    pub sweep_id: String,
    pub number: usize,
}

impl RunRecord {
    /// Seconds from start to end (or to now while running), when the timestamps parse.
    pub fn duration_seconds(&self) -> Option<f64> {
        let start = chrono::DateTime::parse_from_rfc3339(&self.started_at).ok()?;
        let end = match &self.ended_at {
            Some(e) => chrono::DateTime::parse_from_rfc3339(e).ok()?.to_utc(),
            None => chrono::Utc::now(),
        };
        Some((end - start.to_utc()).num_milliseconds() as f64 / 1000.0)
    }
}

/// A finished run's closing figures.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub best_epoch: Option<usize>,
    pub selection: Option<Selection>,
    pub test_accuracy: Option<f64>,
    /// Test-set confusion matrix with class folder names and display labels.
    pub confusion: Option<(ConfusionMatrix, Vec<String>, Vec<String>)>,
    /// The calibrated threshold and the scores it was judged by, when the run has one.
    pub open_set: Option<OpenSetReport>,
    /// The trained head, when the store keeps heads (a shared store does).
    pub head: Option<super::StoredHead>,
}

/// A stored confusion matrix and the per-class figures derived from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredConfusion {
    pub classes: Vec<String>,
    pub labels: Vec<String>,
    pub counts: Vec<Vec<u32>>,
    pub precision: Vec<Option<f64>>,
    pub recall: Vec<Option<f64>>,
}
