//! One training run end to end: experiment -> dataset -> cached features (augmented copies
//! included) -> head training -> test evaluation -> `models/<run-id>/` and the run store.
//! A run is recorded as `running` before training starts and holds a lock file in its model
//! folder while it lives, so a run whose process died (Ctrl-C, SIGKILL) is found and marked
//! `interrupted` by the next facelab that opens the store.

use std::fs::File;
use std::path::{Path, PathBuf};

mod judge;
mod prepare;

pub use prepare::{prepare, training_sets, PreparedData, TrainingSets};

use crate::backbone::Backbones;
use crate::config::{Experiment, ExperimentConfig};
use crate::dataset::ExperimentData;
use crate::error::{Error, Result};
use crate::model::{self, HeadMeta, TrainedHead, BEST_FILE, CONFIG_FILE, HEAD_FILE};
use crate::progress::Progress;
use crate::store::{
    NewRun, RunRecord, RunResult, RunStatus, RunStore, Selection, SelectionKind, SharedStore,
    TrialOf,
};
use crate::train::cv::{cross_validate, refit_config};
use crate::train::head::HeadParams;
use crate::train::{self, EpochMetrics, FitOutcome, TrainObserver};
use crate::workspace::Workspace;

const LOCK_FILE: &str = ".lock";

/// What the caller hears while a run goes on.
pub trait RunEvents {
    /// The run is recorded and training starts; `skipped` are the dataset's images that could
    /// not be read (the run goes on without them).
    fn started(&mut self, _run_id: &str, _data: &ExperimentData, _skipped: &[(PathBuf, String)]) {}
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// Polled between training steps.
    fn cancelled(&self) -> bool {
        false
    }
    /// Asked after each epoch is recorded; `true` ends the run as pruned.
    fn should_prune(&mut self, _metrics: &EpochMetrics) -> bool {
        false
    }
}

/// How a finished run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub test_accuracy: Option<f64>,
    /// The validation figures the run is selected by, when it holds out images.
    pub selection: Option<Selection>,
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
    pub model_dir: PathBuf,
    /// Images that could not be read, with the reason; the run went on without them.
    pub skipped: Vec<(PathBuf, String)>,
    pub phases: PhaseTimes,
    /// Seconds of training proper: making the heads, their steps and validation (all folds,
    /// the final head after cross-validation, and the open-set calibration's heads); not the
    /// store writes, checkpoints and events between epochs, nor saving the head.
    pub step_seconds: f64,
}

/// Where a run's time went, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseTimes {
    /// Listing the dataset and checking the memory estimate.
    pub dataset: f64,
    /// Reading, decoding and augmenting images, and the backbone (cached features are read).
    pub features: f64,
    /// Recording the run and fitting the head.
    pub training: f64,
    /// Saving the head, the test evaluation and the final record.
    pub finishing: f64,
}

/// Opens the workspace's store and marks runs whose process has gone as interrupted.
pub fn open_store(ws: &Workspace) -> Result<RunStore> {
    let store = RunStore::open_location(&ws.store_location())?;
    mark_dead_runs(&store, ws)?;
    Ok(store)
}

/// Marks `running` runs whose process no longer holds their lock as interrupted.
/// A shared (server) store's runs may live on other machines, whose lock files this one cannot
/// see: they are left as they are.
pub fn mark_dead_runs(store: &RunStore, ws: &Workspace) -> Result<Vec<String>> {
    if store.is_shared() {
        return Ok(Vec::new());
    }
    store.mark_interrupted(|id| run_is_alive(&ws.run_dir(id)))
}

/// Deletes a run: its record (epochs, confusion matrix, tags and notes included) and its model
/// folder. A run that is still training is refused: cancel it first.
pub fn delete_run(store: &RunStore, ws: &Workspace, run_id: &str) -> Result<()> {
    let dir = ws.run_dir(run_id);
    if run_is_alive(&dir) {
        return Err(Error::InvalidArgument(format!(
            "run {run_id} is still training; cancel it (x on the Experiments screen, or Ctrl-C) before deleting it"
        )));
    }
    store.delete_run(run_id)?;
    if dir.is_dir() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    Ok(())
}

/// A run's trained head: from its model folder, or, when the folder lacks it and the store
/// keeps it (a run trained on another machine against a shared store), from the store, saved
/// into the folder first.
pub fn load_head(store: &RunStore, ws: &Workspace, run_id: &str) -> Result<TrainedHead> {
    let dir = ws.run_dir(run_id);
    if !dir.join(HEAD_FILE).is_file() {
        if let Some(head) = store.head(run_id)? {
            model::restore_head(&dir, &head)?;
        }
    }
    TrainedHead::load(&dir)
}

/// [`load_head`] for a caller without an open store: the store is opened only when the run's
/// folder lacks the head.
pub fn load_head_in(ws: &Workspace, run_id: &str) -> Result<TrainedHead> {
    let dir = ws.run_dir(run_id);
    if dir.join(HEAD_FILE).is_file() {
        return TrainedHead::load(&dir);
    }
    load_head(&open_store(ws)?, ws, run_id)
}

/// The images a run was tested on, from its recorded config and the dataset as it is now (see
/// [`ExperimentData::evaluation_images`]).
pub fn test_images(ws: &Workspace, run: &RunRecord) -> Result<Vec<PathBuf>> {
    let config_path = ws.run_dir(&run.id).join(CONFIG_FILE);
    let experiment = Experiment::parse(&config_path, &run.config_yaml)?;
    Ok(ExperimentData::load(ws.root(), &experiment)?.evaluation_images())
}

/// Copies a run's resolved config (what it actually ran with) to [`Workspace::rerun_file`], to
/// be edited and trained again as an experiment; returns that file.
pub fn rerun_file(ws: &Workspace, run: &RunRecord) -> Result<PathBuf> {
    let file = ws.rerun_file(&run.id);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::fsutil::write_atomically(&file, run.config_yaml.as_bytes())?;
    Ok(file)
}

/// A run is alive while some process holds the lock file in its model folder.
fn run_is_alive(run_dir: &Path) -> bool {
    match File::open(run_dir.join(LOCK_FILE)) {
        Ok(file) => matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Trains `experiment` in workspace `ws` and records everything; a run estimated to need more
/// than `memory_limit` bytes is refused before anything is allocated or recorded.
pub fn train_experiment(
    ws: &Workspace,
    experiment: &Experiment,
    backbones: &Backbones,
    memory_limit: u64,
    progress: &dyn Progress,
    events: &mut dyn RunEvents,
) -> Result<RunSummary> {
    // Before the features are read: a config that cannot validate fails at once.
    check_validation_available(experiment)?;
    let prepared = prepare(ws, experiment, backbones, memory_limit, progress)?;
    let store = SharedStore::new(open_store(ws)?);
    let place = RunPlace {
        ws,
        store: &store,
        trial: None,
    };
    train_prepared(&place, experiment, &prepared, events)
}

/// Where a run is recorded: the workspace, the store and, for a sweep's trial, which one.
pub struct RunPlace<'a> {
    pub ws: &'a Workspace,
    pub store: &'a SharedStore,
    pub trial: Option<TrialOf>,
}

/// Trains `experiment` on features already prepared for its dataset and records the run.
/// A run its events prune ends `pruned` and returns [`Error::Pruned`].
pub fn train_prepared(
    place: &RunPlace,
    experiment: &Experiment,
    prepared: &PreparedData,
    events: &mut dyn RunEvents,
) -> Result<RunSummary> {
    let config = &experiment.config;
    let mut clock = PhaseClock::start();
    let sets = training_sets(experiment, prepared)?;
    let data = &prepared.data;
    let store = place.store;
    let run_id = new_run_id(&store.lock(), &experiment.config_hash())?;
    let model_dir = place.ws.run_dir(&run_id);
    std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
    let lock_path = model_dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    crate::fsutil::write_atomically(
        &model_dir.join(CONFIG_FILE),
        experiment.resolved_yaml().as_bytes(),
    )?;
    let mut meta = HeadMeta {
        classes: data.classes.clone(),
        labels: data.labels.clone(),
        resize: config.data.resize,
        l2_normalize: config.head.l2_normalize,
        backbone: config.backbone,
        weights_sha256: prepared.weights_sha256.clone(),
        flip_average: config.predict.flip_average,
        open_set: None,
    };
    model::save_meta(&model_dir, &meta)?;
    store.lock().create_run(&NewRun {
        id: run_id.clone(),
        experiment: experiment.name().to_owned(),
        config_yaml: experiment.resolved_yaml(),
        config_hash: experiment.config_hash(),
        dataset_hash: prepared.dataset_hash.clone(),
        weights_hash: prepared.weights_sha256.clone(),
        seed: config.train.seed,
        trial: place.trial.clone(),
    })?;
    events.started(&run_id, data, &prepared.skipped);

    let mut observer = StoreObserver {
        store,
        run_id: &run_id,
        best_path: model_dir.join(BEST_FILE),
        events,
        seconds: 0.0,
    };
    let fit_start = std::time::Instant::now();
    let fitted = fit_sets(config, data.classes.len(), &sets, &mut observer);
    let step_seconds = fit_start.elapsed().as_secs_f64() - observer.seconds;
    let (outcome, selection) = match fitted {
        Ok(fitted) => fitted,
        Err(e) => {
            let status = match e {
                Error::Cancelled => RunStatus::Interrupted,
                Error::Pruned { .. } => RunStatus::Pruned,
                _ => RunStatus::Failed,
            };
            store.lock().end_run(&run_id, status, &e.to_string())?;
            drop(lock);
            let _ = std::fs::remove_file(&lock_path);
            return Err(e);
        }
    };
    let training_time = clock.lap();
    let judged = save_and_judge(
        &model_dir,
        &mut meta,
        experiment,
        prepared,
        &sets,
        &outcome,
        &|| observer.events.cancelled(),
    );
    let judgement = match judged {
        Ok(judgement) => judgement,
        Err(e) => {
            let status = match e {
                Error::Cancelled => RunStatus::Interrupted,
                _ => RunStatus::Failed,
            };
            store.lock().end_run(&run_id, status, &e.to_string())?;
            return Err(e);
        }
    };
    let test_accuracy = judgement.test_accuracy;
    let step_seconds = step_seconds + judgement.calibration_seconds;
    // A shared store keeps the head, so the run predicts on any machine that reaches it.
    let head = if store.lock().is_shared() {
        Some(model::stored_head(&outcome.params, &meta)?)
    } else {
        None
    };
    store.lock().finish_run(
        &run_id,
        &RunResult {
            best_epoch: outcome.best_epoch,
            selection,
            test_accuracy,
            confusion: judgement.confusion,
            open_set: judgement.open_set,
            head,
        },
    )?;
    drop(lock);
    // The lock file only marks a live run; a finished run's folder does not need it.
    let _ = std::fs::remove_file(&lock_path);
    Ok(RunSummary {
        run_id,
        test_accuracy,
        selection,
        epochs: outcome.epochs,
        best_epoch: outcome.best_epoch,
        stopped_early: outcome.stopped_early,
        model_dir,
        skipped: prepared.skipped.clone(),
        step_seconds,
        phases: PhaseTimes {
            dataset: prepared.dataset_seconds,
            features: prepared.features_seconds,
            training: training_time,
            finishing: clock.lap(),
        },
    })
}

/// Saves the head, calibrates its open-set threshold (saved beside it) and judges it on the
/// test set and the strangers.
fn save_and_judge(
    model_dir: &Path,
    meta: &mut HeadMeta,
    experiment: &Experiment,
    prepared: &PreparedData,
    sets: &TrainingSets,
    outcome: &FitOutcome,
    cancelled: &dyn Fn() -> bool,
) -> Result<judge::Judgement> {
    model::save_params(&model_dir.join(HEAD_FILE), &outcome.params)?;
    let judgement = judge::judge(experiment, prepared, sets.test(), outcome, cancelled)?;
    if let Some(report) = &judgement.open_set {
        meta.open_set = Some(model::OpenSetThreshold {
            threshold: report.threshold,
            far: report.far,
        });
        model::save_meta(model_dir, meta)?;
    }
    Ok(judgement)
}

/// Fits the run's head on its sets: straight on the training images, or after validation on
/// held-out images, or after cross-validation (then a final head on every training image for
/// the chosen number of epochs). Returns the head and the validation figures it is selected by.
fn fit_sets(
    config: &ExperimentConfig,
    classes: usize,
    sets: &TrainingSets,
    observer: &mut StoreObserver,
) -> Result<(FitOutcome, Option<Selection>)> {
    match sets {
        TrainingSets::Plain { train, test } => {
            let val = (!test.is_empty()).then_some(test);
            Ok((train::fit(config, classes, train, val, observer)?, None))
        }
        TrainingSets::HeldOut { train, val, .. } => {
            let outcome = train::fit(config, classes, train, Some(val), observer)?;
            let chosen = trained_epochs(config, &outcome);
            let selection = selection(SelectionKind::Val, &outcome.epochs[chosen - 1]);
            Ok((outcome, Some(selection)))
        }
        TrainingSets::Folds { train, folds, .. } => {
            let cv = cross_validate(config, classes, train, folds, observer)?;
            let selection = selection(SelectionKind::Cv, cv.chosen());
            let mut quiet = Quiet(observer);
            let refit = train::fit(
                &refit_config(config, cv.chosen_epoch),
                classes,
                train,
                None,
                &mut quiet,
            )?;
            let outcome = FitOutcome {
                params: refit.params,
                best_epoch: Some(cv.chosen_epoch),
                stopped_early: cv.stopped_early,
                epochs: cv.epochs,
            };
            Ok((outcome, Some(selection)))
        }
    }
}

/// How many epochs the final head trained for: the best epoch when early stopping restored it
/// (or cross-validation chose it), else all of them. Held-out validation reports that epoch's
/// figures; open-set calibration trains its heads that long.
fn trained_epochs(config: &ExperimentConfig, outcome: &FitOutcome) -> usize {
    let folds = config
        .data
        .validation
        .as_ref()
        .and_then(|v| v.folds)
        .is_some();
    match outcome.best_epoch {
        Some(best) if config.restores_best() || folds => best,
        _ => outcome.epochs.len().max(1),
    }
}

fn selection(kind: SelectionKind, epoch: &EpochMetrics) -> Selection {
    Selection {
        kind,
        loss: epoch.val_loss.unwrap_or(f64::NAN),
        accuracy: epoch.val_accuracy.unwrap_or(f64::NAN),
    }
}

/// Passes only cancellation on: the final head after cross-validation trains without
/// reporting epochs (the run's epochs are the cross-validated ones).
struct Quiet<'a, 'b>(&'a mut StoreObserver<'b>);

impl TrainObserver for Quiet<'_, '_> {
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

impl PhaseTimes {
    /// Each phase with its name, in order.
    pub fn named(&self) -> [(&'static str, f64); 4] {
        [
            ("dataset", self.dataset),
            ("features", self.features),
            ("training", self.training),
            ("finishing", self.finishing),
        ]
    }
}

/// Seconds between successive laps.
struct PhaseClock(std::time::Instant);

impl PhaseClock {
    fn start() -> Self {
        PhaseClock(std::time::Instant::now())
    }

    /// Seconds since the start or the last lap.
    fn lap(&mut self) -> f64 {
        let now = std::time::Instant::now();
        let seconds = (now - self.0).as_secs_f64();
        self.0 = now;
        seconds
    }
}

const NO_VALIDATION: &str = "watches a validation metric but the experiment has no validation images; set data.validation (or data.train/data.test or data.split, whose test images then serve)";

/// Validation metrics need validation images: held out (`data.validation`) or the test set.
fn check_validation_available(experiment: &Experiment) -> Result<()> {
    let data = &experiment.config.data;
    let has_test = data.split.is_some() || data.test.is_some();
    match experiment.config.validation_monitor_key() {
        Some(key) if data.validation.is_none() && !has_test => {
            Err(experiment.error(key, NO_VALIDATION.into()))
        }
        _ => Ok(()),
    }
}

/// A fresh 8-hex-digit run id (random, as Guild's are), unused in the store.
fn new_run_id(store: &RunStore, config_hash: &str) -> Result<String> {
    for attempt in 0u32.. {
        let mut h = blake3::Hasher::new();
        h.update(config_hash.as_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&attempt.to_le_bytes());
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.update(&nanos.to_le_bytes());
        let id = h.finalize().to_hex()[..8].to_string();
        if !store.exists(&id)? {
            return Ok(id);
        }
    }
    unreachable!("the attempt counter is unbounded")
}

/// Records epochs in the store, writes checkpoints, passes events on and asks them whether
/// to prune.
struct StoreObserver<'a> {
    store: &'a SharedStore,
    run_id: &'a str,
    best_path: PathBuf,
    events: &'a mut dyn RunEvents,
    /// Seconds spent here, between epochs (store writes, checkpoints, events).
    seconds: f64,
}

impl TrainObserver for StoreObserver<'_> {
    fn epoch_finished(&mut self, metrics: &EpochMetrics) -> Result<()> {
        let start = std::time::Instant::now();
        self.store.lock().add_epoch(self.run_id, metrics)?;
        self.events.epoch(metrics);
        let prune = self.events.should_prune(metrics);
        self.seconds += start.elapsed().as_secs_f64();
        if prune {
            return Err(Error::Pruned {
                epoch: metrics.epoch,
            });
        }
        Ok(())
    }

    fn checkpoint(&mut self, params: &HeadParams, _epoch: usize) -> Result<()> {
        let start = std::time::Instant::now();
        let saved = model::save_params(&self.best_path, params);
        self.seconds += start.elapsed().as_secs_f64();
        saved
    }

    fn cancelled(&self) -> bool {
        self.events.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::fill_with_runs;

    fn workspace_with_runs(runs: usize) -> (tempfile::TempDir, Workspace, RunStore) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let store = RunStore::open(&ws.store_path()).unwrap();
        fill_with_runs(&store, runs).unwrap();
        (dir, ws, store)
    }

    #[test]
    fn deleting_a_run_removes_its_record_and_its_folder() {
        let (_dir, ws, store) = workspace_with_runs(2);
        let run_dir = ws.run_dir("00000000");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join(HEAD_FILE), b"weights").unwrap();
        delete_run(&store, &ws, "00000000").unwrap();
        assert!(!store.exists("00000000").unwrap());
        assert!(store.exists("00000001").unwrap());
        assert!(!run_dir.exists());
    }

    #[test]
    fn a_run_still_training_is_not_deleted() {
        let (_dir, ws, store) = workspace_with_runs(1);
        let run_dir = ws.run_dir("00000000");
        std::fs::create_dir_all(&run_dir).unwrap();
        let lock = File::create(run_dir.join(LOCK_FILE)).unwrap();
        lock.lock().unwrap();
        let e = delete_run(&store, &ws, "00000000").unwrap_err().to_string();
        assert!(e.contains("still training") && e.contains("cancel"), "{e}");
        assert!(store.exists("00000000").unwrap() && run_dir.exists());
        drop(lock);
        delete_run(&store, &ws, "00000000").unwrap();
    }
}
