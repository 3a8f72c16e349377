//! k-fold cross-validation of a head, with the folds trained in lockstep as xgboost's `cv`
//! does: every fold trains epoch k, then that epoch's figures are the means over the folds, so
//! early stopping (and a sweep's pruner, through the observer) watch one curve. The folds of an
//! epoch train on all cores at once; each fold's arithmetic does not depend on the thread that
//! runs it, so results are the same on any machine size.

use std::time::Instant;

use rayon::prelude::*;

use super::{
    check_finite, evaluate, flush_denormals_on_all_threads, initial_params, training_runner,
    EarlyStopping, EpochMetrics, FoldTraining, LabeledFeatures, TrainObserver,
};
use crate::config::{ExperimentConfig, HeadType};
use crate::error::{Error, Result};
use crate::train::head::HeadRunner;

/// One fold: the rows of the shared training set it trains on, and its validation rows.
#[derive(Debug, Clone)]
pub struct Fold {
    pub train_rows: Vec<usize>,
    pub val: LabeledFeatures,
}

/// How cross-validation ended.
#[derive(Debug, Clone)]
pub struct CvOutcome {
    /// Per epoch, the means over folds (`val_*` are the cross-validated figures).
    pub epochs: Vec<EpochMetrics>,
    /// The epoch whose figures the run reports and whose count the final head trains for: the
    /// best epoch when early stopping restores the best, else the last.
    pub chosen_epoch: usize,
    pub stopped_early: bool,
}

impl CvOutcome {
    pub fn chosen(&self) -> &EpochMetrics {
        &self.epochs[self.chosen_epoch - 1]
    }
}

/// Trains a fresh head per fold (on its rows of `train`), all in lockstep, reporting the mean
/// figures per epoch.
pub fn cross_validate(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    folds: &[Fold],
    observer: &mut dyn TrainObserver,
) -> Result<CvOutcome> {
    if folds
        .iter()
        .any(|f| f.train_rows.is_empty() || f.val.is_empty())
    {
        return Err(Error::InvalidArgument(
            "a cross-validation fold has no training or no validation images; use fewer folds"
                .into(),
        ));
    }
    if config.head.kind == HeadType::Centroid {
        return super::centroid::cross_validate(config, classes, train, folds, observer);
    }
    flush_denormals_on_all_threads();
    // Every fold starts from the same seeded weights, made once.
    let initial = initial_params(config, train.dim, classes);
    let runners: Vec<HeadRunner> = folds.iter().map(|_| training_runner(config)).collect();
    let mut trainings: Vec<FoldTraining> = runners
        .iter()
        .zip(folds)
        .map(|(runner, fold)| {
            FoldTraining::new(
                config,
                initial.clone(),
                runner,
                train,
                fold.train_rows.clone(),
            )
        })
        .collect();
    // One evaluator per fold: dfdx's buffer cache is not safe to share between threads (its
    // pop checks and takes under two separate locks, so two threads can race for one buffer).
    let evaluators: Vec<HeadRunner> = folds.iter().map(|_| HeadRunner::new(0, 0.0)).collect();
    let mut early = config.early_stopping.as_ref().map(|c| {
        let mut watch_only = c.clone();
        watch_only.restore_best = false;
        EarlyStopping::new(&watch_only)
    });
    let mut epochs = Vec::new();
    let mut stopped_early = false;
    for epoch in 1..=config.train.epochs {
        if observer.cancelled() {
            return Err(Error::Cancelled);
        }
        let start = Instant::now();
        let per_fold: Vec<Result<[f64; 4]>> = trainings
            .par_iter_mut()
            .zip(folds)
            .zip(&evaluators)
            .map(|((training, fold), evaluator)| {
                let (loss, accuracy) = training.epoch(epoch, &|| false)?;
                let val = evaluate(evaluator, &training.trainer.params(), &fold.val);
                check_finite(val.loss, epoch, training.steps)?;
                Ok([loss, accuracy, val.loss, val.accuracy])
            })
            .collect();
        let mut sums = [0.0f64; 4];
        for figures in per_fold {
            for (sum, value) in sums.iter_mut().zip(figures?) {
                *sum += value;
            }
        }
        let n = folds.len() as f64;
        let metrics = EpochMetrics {
            epoch,
            loss: sums[0] / n,
            accuracy: sums[1] / n,
            val_loss: Some(sums[2] / n),
            val_accuracy: Some(sums[3] / n),
            seconds: start.elapsed().as_secs_f64(),
        };
        observer.epoch_finished(&metrics)?;
        let stop = early
            .as_mut()
            .is_some_and(|e| e.epoch_end(&metrics, &trainings[0].trainer.params()));
        epochs.push(metrics);
        if stop {
            stopped_early = true;
            break;
        }
    }
    let restores_best = config
        .early_stopping
        .as_ref()
        .is_some_and(|c| c.restore_best);
    let chosen_epoch = early
        .filter(|_| restores_best)
        .and_then(|e| e.best_epoch)
        .unwrap_or(epochs.len());
    Ok(CvOutcome {
        epochs,
        chosen_epoch,
        stopped_early,
    })
}

/// The config of a head trained for a known number of epochs with nothing left to watch: the
/// final head after cross-validation (the chosen epoch count), and open-set calibration's heads.
pub fn refit_config(config: &ExperimentConfig, epochs: usize) -> ExperimentConfig {
    let mut refit = config.clone();
    refit.train.epochs = epochs;
    refit.early_stopping = None;
    refit.checkpoint = None;
    refit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Experiment;
    use crate::test_values::blobs;
    use crate::train::fit;
    use crate::train::head::HeadParams;

    struct Epochs(Vec<EpochMetrics>);

    impl TrainObserver for Epochs {
        fn epoch_finished(&mut self, m: &EpochMetrics) -> Result<()> {
            self.0.push(m.clone());
            Ok(())
        }
        fn checkpoint(&mut self, _: &HeadParams, _: usize) -> Result<()> {
            Ok(())
        }
    }

    fn config(extra: &str) -> ExperimentConfig {
        let text = format!("data: {{dir: d}}\nhead: {{hidden: [8]}}\ntrain: {{optimizer: {{name: adam, lr: 0.01}}, epochs: 6, batch_size: 8, seed: 3}}\n{extra}");
        Experiment::parse(std::path::Path::new("t.yaml"), &text)
            .unwrap()
            .config
    }

    /// Three folds over 30 rows: rows i % 3 == f validate fold f.
    fn folds(data: &LabeledFeatures) -> Vec<Fold> {
        (0..3)
            .map(|f| {
                let (val, train): (Vec<usize>, Vec<usize>) =
                    (0..data.len()).partition(|i| i % 3 == f);
                Fold {
                    train_rows: train,
                    val: data.subset(&val),
                }
            })
            .collect()
    }

    #[test]
    fn each_epoch_reports_the_mean_over_folds_trained_from_scratch() {
        let data = blobs(10, 1);
        let folds = folds(&data);
        let mut seen = Epochs(Vec::new());
        let outcome = cross_validate(&config(""), 3, &data, &folds, &mut seen).unwrap();
        assert_eq!(seen.0.len(), 6);
        assert_eq!(outcome.chosen_epoch, 6);
        assert_eq!(outcome.chosen().val_accuracy, Some(1.0));
        // The mean of the folds' validation figures, each fold trained alone as `fit` does.
        let mut alone = Vec::new();
        for fold in &folds {
            let train = data.subset(&fold.train_rows);
            let mut fold_epochs = Epochs(Vec::new());
            fit(&config(""), 3, &train, Some(&fold.val), &mut fold_epochs).unwrap();
            alone.push(fold_epochs.0[0].val_loss.unwrap());
        }
        let mean = alone.iter().sum::<f64>() / 3.0;
        assert!(
            (seen.0[0].val_loss.unwrap() - mean).abs() < 1e-9,
            "{mean} vs {:?}",
            seen.0[0]
        );
        let again = cross_validate(&config(""), 3, &data, &folds, &mut Epochs(Vec::new())).unwrap();
        let figures = |epochs: &[EpochMetrics]| -> Vec<[Option<f64>; 4]> {
            epochs
                .iter()
                .map(|m| [Some(m.loss), Some(m.accuracy), m.val_loss, m.val_accuracy])
                .collect()
        };
        assert_eq!(figures(&again.epochs), figures(&outcome.epochs));
    }

    #[test]
    fn early_stopping_on_the_mean_curve_chooses_the_epoch_the_final_head_trains_for() {
        let data = blobs(10, 1);
        let config =
            config("early_stopping: {monitor: val_loss, patience: 2, min_delta: 1000, restore_best: true}\n");
        let outcome =
            cross_validate(&config, 3, &data, &folds(&data), &mut Epochs(Vec::new())).unwrap();
        assert!(outcome.stopped_early);
        assert_eq!((outcome.epochs.len(), outcome.chosen_epoch), (3, 1));
        let refit = refit_config(&config, outcome.chosen_epoch);
        assert_eq!(refit.train.epochs, 1);
        assert!(refit.early_stopping.is_none() && refit.checkpoint.is_none());
    }
}
