//! Judging a trained head: test accuracy and confusion matrix, and, when the run calibrates a
//! threshold (`open_set`), the leave-people-out calibration and the open-set report over the
//! test faces and the strangers.

use crate::config::Experiment;
use crate::error::{Error, Result};
use crate::train::cv::refit_config;
use crate::train::head::{HeadRunner, Output};
use crate::train::metrics::ConfusionMatrix;
use crate::train::open_set::{calibrate, OpenSetReport};
use crate::train::{self, FitOutcome, LabeledFeatures};

use super::prepare::{as_head_sees, PreparedData};
use super::trained_epochs;

/// What a run is judged by.
pub struct Judgement {
    pub test_accuracy: Option<f64>,
    /// The test set's confusion matrix, with class folder names and display labels.
    pub confusion: Option<(ConfusionMatrix, Vec<String>, Vec<String>)>,
    pub open_set: Option<OpenSetReport>,
    /// Seconds spent training the open-set calibration's heads (training proper, like the
    /// run's own steps).
    pub calibration_seconds: f64,
}

/// Judges `outcome`'s head on `test` (as the head sees it) and, when the run calibrates, on
/// held-out training people and the strangers. Cancellation is honoured before calibrating.
pub fn judge(
    experiment: &Experiment,
    prepared: &PreparedData,
    test: &LabeledFeatures,
    outcome: &FitOutcome,
    cancelled: &dyn Fn() -> bool,
) -> Result<Judgement> {
    let data = &prepared.data;
    let runner = HeadRunner::new(0, 0.0);
    let evaluation = (!test.is_empty()).then(|| train::evaluate(&runner, &outcome.params, test));
    let confusion = evaluation.as_ref().map(|e| {
        (
            e.confusion(data.classes.len(), &test.y),
            data.classes.clone(),
            data.labels.clone(),
        )
    });
    let config = &experiment.config;
    let mut calibration_seconds = 0.0;
    let open_set = match config.open_set_far() {
        None => None,
        Some(far) => {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let train = as_head_sees(config, &prepared.train);
            let calibration_config = refit_config(config, trained_epochs(config, outcome));
            let calibration_start = std::time::Instant::now();
            let calibration = calibrate(
                &calibration_config,
                data.classes.len(),
                &train,
                &prepared.train_is_copy,
                far,
            )
            .map_err(|e| experiment.error("open_set", e.to_string()))?;
            calibration_seconds = calibration_start.elapsed().as_secs_f64();
            let strangers = as_head_sees(config, &prepared.strangers);
            let known_correct = evaluation
                .as_ref()
                .map(|e| {
                    e.predicted
                        .iter()
                        .zip(&test.y)
                        .map(|(p, y)| p == y)
                        .collect()
                })
                .unwrap_or_default();
            Some(OpenSetReport {
                score: score_name(outcome.params.output).into(),
                far,
                threshold: calibration.threshold,
                calibration_scores: calibration.stranger_scores,
                known_scores: runner.acceptance(&outcome.params, &test.x),
                known_correct,
                stranger_scores: runner.acceptance(&outcome.params, &strangers.x),
            })
        }
    };
    Ok(Judgement {
        test_accuracy: evaluation.map(|e| e.accuracy),
        confusion,
        open_set,
        calibration_seconds,
    })
}

/// What a head's acceptance scores are.
pub fn score_name(output: Output) -> &'static str {
    match output {
        Output::Softmax => "probability",
        Output::Cosine { .. } => "cosine",
    }
}
