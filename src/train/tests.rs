//! Training on separable synthetic features: determinism, early stopping, checkpoints,
//! divergence, the batch stream.
use super::*;
use crate::config::Experiment;
use crate::test_values::blobs;

struct Recorder {
    epochs: Vec<EpochMetrics>,
    checkpoints: Vec<usize>,
}

impl TrainObserver for Recorder {
    fn epoch_finished(&mut self, m: &EpochMetrics) -> Result<()> {
        self.epochs.push(m.clone());
        Ok(())
    }
    fn checkpoint(&mut self, _: &HeadParams, epoch: usize) -> Result<()> {
        self.checkpoints.push(epoch);
        Ok(())
    }
}

fn experiment(extra: &str) -> ExperimentConfig {
    let text = format!("data: {{dir: d}}\nhead: {{hidden: [8]}}\ntrain: {{optimizer: {{name: adam, lr: 0.01}}, epochs: 8, batch_size: 8, seed: 3}}\n{extra}");
    Experiment::parse(std::path::Path::new("t.yaml"), &text)
        .unwrap()
        .config
}

fn run(config: &ExperimentConfig) -> (FitOutcome, Recorder) {
    let (train, val) = (blobs(20, 1), blobs(10, 2));
    let mut rec = Recorder {
        epochs: Vec::new(),
        checkpoints: Vec::new(),
    };
    let outcome = fit(config, 3, &train, Some(&val), &mut rec).unwrap();
    (outcome, rec)
}

#[test]
fn a_diverging_run_ends_with_the_epoch_and_step_where_the_loss_stopped_being_a_number() {
    let mut config = experiment("");
    config.train.optimizer = crate::config::OptimizerConfig::Sgd {
        lr: 1e10,
        momentum: 0.9,
    };
    let mut rec = Recorder {
        epochs: Vec::new(),
        checkpoints: Vec::new(),
    };
    let e = fit(&config, 3, &blobs(20, 1), Some(&blobs(10, 2)), &mut rec).unwrap_err();
    let Error::Diverged { epoch, step, .. } = e else {
        panic!("not a divergence: {e}");
    };
    assert_eq!(
        rec.epochs.len(),
        epoch - 1,
        "the epochs before it were reported"
    );
    assert!(step >= 1);
    assert!(e.to_string().contains("train.optimizer.lr"));
}

#[test]
fn separable_features_are_learned_and_runs_are_deterministic() {
    let config = experiment("");
    let (a, rec) = run(&config);
    let (b, _) = run(&config);
    assert_eq!(rec.epochs.len(), 8);
    assert_eq!(a.params, b.params);
    let last = rec.epochs.last().unwrap();
    assert_eq!(last.val_accuracy, Some(1.0));
    assert!(last.loss < rec.epochs[0].loss);
    let eval = evaluate(&HeadRunner::new(0, 0.0), &a.params, &blobs(10, 9));
    assert_eq!(eval.accuracy, 1.0);
}

#[test]
fn early_stopping_waits_patience_epochs_then_restores_the_best() {
    // A huge min_delta means no epoch after the first counts as an improvement.
    let config = experiment(
        "early_stopping: {monitor: val_loss, patience: 2, min_delta: 1000, restore_best: true}\n",
    );
    let (outcome, rec) = run(&config);
    assert!(outcome.stopped_early);
    assert_eq!(rec.epochs.len(), 3);
    assert_eq!(outcome.best_epoch, Some(1));
    let first_epoch_only = experiment("").clone();
    let mut one = first_epoch_only;
    one.train.epochs = 1;
    let (after_one, _) = run(&one);
    assert_eq!(
        outcome.params, after_one.params,
        "restored weights are epoch 1's"
    );
}

#[test]
fn checkpoint_saves_only_on_strict_improvement() {
    let config = experiment("checkpoint: {monitor: val_loss}\n");
    let (_, rec) = run(&config);
    let mut best = f64::INFINITY;
    let expected: Vec<usize> = rec
        .epochs
        .iter()
        .filter(|m| {
            let better = m.val_loss.unwrap() < best;
            if better {
                best = m.val_loss.unwrap();
            }
            better
        })
        .map(|m| m.epoch)
        .collect();
    assert_eq!(rec.checkpoints, expected);
    assert_eq!(rec.checkpoints[0], 1);
}

#[test]
fn batch_stream_covers_every_row_once_per_pass() {
    let mut stream = BatchStream::new(10, 4, 5);
    let pass: Vec<usize> = (0..3).flat_map(|_| stream.next_batch()).collect();
    let mut sorted = pass.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(stream.next_batch().len(), 4);
}

#[test]
fn improvement_is_strict_and_respects_direction() {
    assert!(improves(0.5, Some(0.6), 0.0, false));
    assert!(!improves(0.6, Some(0.6), 0.0, false));
    assert!(!improves(0.55, Some(0.6), 0.1, false));
    assert!(improves(0.9, Some(0.8), 0.05, true));
    assert!(improves(1.0, None, 0.0, true));
}
