//! Training the head over cached features, with Keras's semantics where Keras has the feature:
//! batches from an endlessly reshuffled stream (`steps_per_epoch` of them per epoch, or one
//! pass), per-epoch loss/accuracy and validation loss/accuracy, `EarlyStopping` and
//! `ModelCheckpoint`. Training never touches the store or the terminal: it reports to a
//! [`TrainObserver`].

pub mod centroid;
mod cosine;
pub mod cv;
mod dense;
pub mod head;
mod layout;
mod matmul;
pub mod memory;
pub mod metrics;
pub mod open_set;
pub mod optim;

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::{CheckpointConfig, EarlyStoppingConfig, ExperimentConfig, HeadType, Monitor};
use crate::error::{Error, Result};
use head::{argmax, HeadParams, HeadRunner, HeadTrainer};
use metrics::ConfusionMatrix;
use optim::Optimizer;

/// Feature rows and their class indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabeledFeatures {
    pub dim: usize,
    /// `[len, dim]` row-major.
    pub x: Vec<f32>,
    pub y: Vec<usize>,
}

impl LabeledFeatures {
    pub fn new(dim: usize) -> Self {
        LabeledFeatures {
            dim,
            x: Vec::new(),
            y: Vec::new(),
        }
    }

    pub fn push(&mut self, features: &[f32], class: usize) {
        assert_eq!(features.len(), self.dim);
        self.x.extend_from_slice(features);
        self.y.push(class);
    }

    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    pub fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let mut x = Vec::with_capacity(rows.len() * self.dim);
        for &r in rows {
            x.extend_from_slice(&self.x[r * self.dim..(r + 1) * self.dim]);
        }
        (x, rows.iter().map(|&r| self.y[r]).collect())
    }

    /// The given rows as a set of their own.
    pub fn subset(&self, rows: &[usize]) -> LabeledFeatures {
        let (x, y) = self.gather(rows);
        LabeledFeatures {
            dim: self.dim,
            x,
            y,
        }
    }

    /// Scales every row to unit length (rows of zeros stay zero).
    pub fn l2_normalize(&mut self) {
        for row in self.x.chunks_exact_mut(self.dim) {
            l2_normalize_row(row);
        }
    }
}

pub fn l2_normalize_row(row: &mut [f32]) {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        row.iter_mut().for_each(|v| *v /= norm);
    }
}

/// One epoch's figures, as Keras logs them.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

impl EpochMetrics {
    pub fn get(&self, monitor: Monitor) -> Option<f64> {
        match monitor {
            Monitor::Loss => Some(self.loss),
            Monitor::Accuracy => Some(self.accuracy),
            Monitor::ValLoss => self.val_loss,
            Monitor::ValAccuracy => self.val_accuracy,
        }
    }
}

/// Where training reports; the run store and the terminal listen here.
pub trait TrainObserver {
    /// An epoch ended; by default nobody listens.
    fn epoch_finished(&mut self, _metrics: &EpochMetrics) -> Result<()> {
        Ok(())
    }
    /// ModelCheckpoint decided to save these weights; by default they are not saved.
    fn checkpoint(&mut self, _params: &HeadParams, _epoch: usize) -> Result<()> {
        Ok(())
    }
    /// Polled between steps; `true` ends training with [`Error::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// How training ended.
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// The final weights: the best epoch's when early stopping restores them.
    pub params: HeadParams,
    pub epochs: Vec<EpochMetrics>,
    /// The epoch early stopping (else the checkpoint) judged best, 1-based.
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
}

/// Loss, accuracy and predictions of a head on a labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    pub predicted: Vec<usize>,
}

impl Evaluation {
    pub fn confusion(&self, classes: usize, actual: &[usize]) -> ConfusionMatrix {
        ConfusionMatrix::new(classes, actual, &self.predicted)
    }
}

/// Rows per forward pass when evaluating.
const EVAL_BATCH: usize = 256;

/// Trains a head for `classes` classes on `train`, validating on `val` after every epoch.
pub fn fit(
    config: &ExperimentConfig,
    classes: usize,
    train: &LabeledFeatures,
    val: Option<&LabeledFeatures>,
    observer: &mut dyn TrainObserver,
) -> Result<FitOutcome> {
    if val.is_none_or(|v| v.is_empty()) && config.validation_monitor_key().is_some() {
        return Err(Error::InvalidArgument(
            "early stopping or checkpointing watches a validation metric, but there is no test set"
                .into(),
        ));
    }
    if train.is_empty() {
        return Err(Error::InvalidArgument("no training images".into()));
    }
    if config.head.kind == HeadType::Centroid {
        return centroid::fit(config, classes, train, val, observer);
    }
    flush_denormals_on_all_threads();
    let runner = training_runner(config);
    let all_rows = (0..train.len()).collect();
    let params = initial_params(config, train.dim, classes);
    let mut fold = FoldTraining::new(config, params, &runner, train, all_rows);
    let mut early = config.early_stopping.as_ref().map(EarlyStopping::new);
    let mut checkpoint = config.checkpoint.as_ref().map(Checkpoint::new);
    let mut epochs = Vec::new();
    let mut stopped_early = false;

    for epoch in 1..=config.train.epochs {
        let start = Instant::now();
        let (loss, accuracy) = fold.epoch(epoch, &|| observer.cancelled())?;
        // Row-major weights, copied out of the trainer's panels once, when first wanted.
        let params = std::cell::OnceCell::new();
        let params = || params.get_or_init(|| fold.trainer.params());
        let evaluation = val
            .filter(|v| !v.is_empty())
            .map(|v| evaluate(&runner, params(), v));
        if let Some(e) = &evaluation {
            check_finite(e.loss, epoch, fold.steps)?;
        }
        let metrics = EpochMetrics {
            epoch,
            loss,
            accuracy,
            val_loss: evaluation.as_ref().map(|e| e.loss),
            val_accuracy: evaluation.as_ref().map(|e| e.accuracy),
            seconds: start.elapsed().as_secs_f64(),
        };
        observer.epoch_finished(&metrics)?;
        if let Some(c) = checkpoint.as_mut() {
            if c.should_save(&metrics) {
                observer.checkpoint(params(), epoch)?;
            }
        }
        let stop = early
            .as_mut()
            .is_some_and(|e| e.epoch_end(&metrics, params()));
        epochs.push(metrics);
        if stop {
            stopped_early = true;
            break;
        }
    }

    let best_epoch = early
        .as_ref()
        .and_then(|e| e.best_epoch)
        .or_else(|| checkpoint.as_ref().and_then(|c| c.best_epoch));
    let mut params = fold.trainer.params();
    if let Some(best) = early.and_then(EarlyStopping::weights_to_restore) {
        params = best;
    }
    Ok(FitOutcome {
        params,
        epochs,
        best_epoch,
        stopped_early,
    })
}

/// The weights every head of `config` starts from (seeded by `train.seed`).
fn initial_params(config: &ExperimentConfig, inputs: usize, classes: usize) -> HeadParams {
    let (head, seed) = (&config.head, config.train.seed);
    match head.kind {
        HeadType::Cosine => {
            HeadParams::init_cosine(inputs, head.embedding(), classes, head.scale() as f32, seed)
        }
        HeadType::Dense | HeadType::Centroid => {
            HeadParams::init(inputs, &head.hidden, classes, seed)
        }
    }
}

/// The runner a head of `config` trains with: its dropout, and its margin for a cosine head.
fn training_runner(config: &ExperimentConfig) -> HeadRunner {
    let runner = HeadRunner::new(config.train.seed, config.head.dropout);
    match config.head.kind {
        HeadType::Cosine => runner.with_margin(config.head.margin()),
        HeadType::Dense | HeadType::Centroid => runner,
    }
}

/// One head in training: its weights, optimizer and batch stream over its training rows.
struct FoldTraining<'a> {
    trainer: HeadTrainer<'a>,
    optimizer: Optimizer,
    batches: BatchStream,
    steps: usize,
    train: &'a LabeledFeatures,
    /// The rows of `train` this head trains on.
    rows: Vec<usize>,
}

impl<'a> FoldTraining<'a> {
    /// A head starting from `params` (see [`initial_params`]).
    fn new(
        config: &ExperimentConfig,
        params: HeadParams,
        runner: &'a HeadRunner,
        train: &'a LabeledFeatures,
        rows: Vec<usize>,
    ) -> Self {
        let t = &config.train;
        let trainer = runner.trainer(params);
        FoldTraining {
            optimizer: Optimizer::new(&t.optimizer, &trainer.parameter_lengths()),
            trainer,
            batches: BatchStream::new(rows.len(), t.batch_size, t.seed),
            steps: t
                .steps_per_epoch
                .unwrap_or_else(|| rows.len().div_ceil(t.batch_size)),
            train,
            rows,
        }
    }

    /// Trains one epoch; returns its mean loss and accuracy over the rows seen.
    fn epoch(&mut self, epoch: usize, cancelled: &dyn Fn() -> bool) -> Result<(f64, f64)> {
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for step in 1..=self.steps {
            if cancelled() {
                return Err(Error::Cancelled);
            }
            let rows: Vec<usize> = self
                .batches
                .next_batch()
                .into_iter()
                .map(|i| self.rows[i])
                .collect();
            let (x, y) = self.train.gather(&rows);
            let batch = self.trainer.forward_backward(&x, &y);
            check_finite(batch.loss as f64, epoch, step)?;
            loss_sum += batch.loss as f64 * y.len() as f64;
            correct += batch.correct;
            self.trainer.update(batch, &mut self.optimizer);
            seen += y.len();
        }
        Ok((loss_sum / seen as f64, correct as f64 / seen as f64))
    }
}

/// A loss that is NaN or infinite ends training: the weights are past saving.
fn check_finite(loss: f64, epoch: usize, step: usize) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(Error::Diverged {
            value: loss,
            epoch,
            step,
        })
    }
}

/// Mean cross-entropy, accuracy and argmax predictions on `data`, dropout off.
pub fn evaluate(runner: &HeadRunner, params: &HeadParams, data: &LabeledFeatures) -> Evaluation {
    let classes = params.classes();
    let (mut loss, mut right) = (0.0f64, 0usize);
    let mut predicted = Vec::with_capacity(data.len());
    for start in (0..data.len()).step_by(EVAL_BATCH) {
        let end = (start + EVAL_BATCH).min(data.len());
        let logits = runner.logits(params, &data.x[start * data.dim..end * data.dim]);
        for (row, &label) in logits.chunks_exact(classes).zip(&data.y[start..end]) {
            loss -= log_softmax(row)[label] as f64;
            let p = argmax(row);
            right += usize::from(p == label);
            predicted.push(p);
        }
    }
    let n = data.len().max(1) as f64;
    Evaluation {
        loss: loss / n,
        accuracy: right as f64 / n,
        predicted,
    }
}

pub fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
    row.iter().map(|v| v - log_sum).collect()
}

pub fn softmax(row: &[f32]) -> Vec<f32> {
    log_softmax(row).into_iter().map(f32::exp).collect()
}

/// Batches of row indices from passes over a shuffled dataset, reshuffled every pass; the last
/// batch of a pass may be short, as with Keras's `flow`.
struct BatchStream {
    order: Vec<usize>,
    position: usize,
    batch: usize,
    rng: ChaCha8Rng,
}

impl BatchStream {
    fn new(len: usize, batch: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut rng);
        BatchStream {
            order,
            position: 0,
            batch,
            rng,
        }
    }

    fn next_batch(&mut self) -> Vec<usize> {
        if self.position >= self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.position = 0;
        }
        let end = (self.position + self.batch).min(self.order.len());
        let rows = self.order[self.position..end].to_vec();
        self.position = end;
        rows
    }
}

/// Keras's `EarlyStopping`: an epoch improves when it beats the best by more than `min_delta`;
/// training stops once `patience` epochs in a row have not (after the first epoch); with
/// `restore_best`, the best epoch's weights are restored when training ends, stopped or not.
struct EarlyStopping {
    config: EarlyStoppingConfig,
    best: Option<f64>,
    best_epoch: Option<usize>,
    best_weights: Option<HeadParams>,
    wait: usize,
}

impl EarlyStopping {
    fn new(config: &EarlyStoppingConfig) -> Self {
        EarlyStopping {
            config: config.clone(),
            best: None,
            best_epoch: None,
            best_weights: None,
            wait: 0,
        }
    }

    /// Returns whether training should stop.
    fn epoch_end(&mut self, metrics: &EpochMetrics, params: &HeadParams) -> bool {
        let Some(current) = metrics.get(self.config.monitor) else {
            return false;
        };
        if self.config.restore_best && self.best_weights.is_none() {
            self.best_weights = Some(params.clone());
        }
        self.wait += 1;
        let higher = self.config.monitor.higher_is_better();
        if improves(current, self.best, self.config.min_delta, higher) {
            self.best = Some(current);
            self.best_epoch = Some(metrics.epoch);
            if self.config.restore_best {
                self.best_weights = Some(params.clone());
            }
            self.wait = 0;
            return false;
        }
        self.wait >= self.config.patience && metrics.epoch > 1
    }

    fn weights_to_restore(self) -> Option<HeadParams> {
        if self.config.restore_best {
            self.best_weights
        } else {
            None
        }
    }
}

/// Keras's `ModelCheckpoint`: with `save_best_only`, saves when the monitored value strictly
/// beats the best so far; otherwise every epoch.
struct Checkpoint {
    config: CheckpointConfig,
    best: Option<f64>,
    best_epoch: Option<usize>,
}

impl Checkpoint {
    fn new(config: &CheckpointConfig) -> Self {
        Checkpoint {
            config: config.clone(),
            best: None,
            best_epoch: None,
        }
    }

    fn should_save(&mut self, metrics: &EpochMetrics) -> bool {
        let Some(current) = metrics.get(self.config.monitor) else {
            return false;
        };
        let better = improves(
            current,
            self.best,
            0.0,
            self.config.monitor.higher_is_better(),
        );
        if better {
            self.best = Some(current);
            self.best_epoch = Some(metrics.epoch);
        }
        better || !self.config.save_best_only
    }
}

fn improves(current: f64, best: Option<f64>, min_delta: f64, higher_is_better: bool) -> bool {
    match best {
        None => current.is_finite(),
        Some(best) if higher_is_better => current - min_delta > best,
        Some(best) => current + min_delta < best,
    }
}

/// Flush-to-zero and denormals-are-zero on this thread and every pool thread: RMSprop's running
/// averages decay into denormal floats in long runs, and denormal arithmetic is many times
/// slower (PyTorch slowed from 8 to 32 ms a step this way).
pub fn flush_denormals_on_all_threads() {
    set_flush_denormals();
    rayon::broadcast(|_| set_flush_denormals());
}

#[cfg(target_arch = "x86_64")]
fn set_flush_denormals() {
    const FTZ: u32 = 1 << 15;
    const DAZ: u32 = 1 << 6;
    let mut csr: u32 = 0;
    // SAFETY: reads and writes this thread's MXCSR; only the two denormal-mode bits change.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= FTZ | DAZ;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn set_flush_denormals() {}

#[cfg(test)]
mod tests;
