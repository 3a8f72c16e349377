//! One training run end to end: experiment -> dataset -> cached features (augmented copies
//! included) -> head training -> test evaluation -> `models/<run-id>/` and the run store.
//! A run is recorded as `running` before training starts and holds a lock file in its model
//! folder while it lives, so a run whose process died (Ctrl-C, SIGKILL) is found and marked
//! `interrupted` by the next facelab that opens the store.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::backbone::{Backbone, FEATURE_DIM};
use crate::config::Experiment;
use crate::dataset::{ExperimentData, LabeledImage};
use crate::error::{Error, Result};
use crate::features::{self, AugmentCopy, FeatureCache, FeatureRequest};
use crate::model::{self, HeadMeta, BEST_FILE, CONFIG_FILE, HEAD_FILE};
use crate::progress::Progress;
use crate::store::{NewRun, RunRecord, RunResult, RunStatus, RunStore};
use crate::train::head::{HeadParams, HeadRunner};
use crate::train::memory;
use crate::train::{self, EpochMetrics, LabeledFeatures, TrainObserver};
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
}

/// How a finished run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub test_accuracy: Option<f64>,
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
    pub model_dir: PathBuf,
    /// Images that could not be read, with the reason; the run went on without them.
    pub skipped: Vec<(PathBuf, String)>,
    pub phases: PhaseTimes,
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
    let store = RunStore::open(&ws.store_path())?;
    mark_dead_runs(&store, ws)?;
    Ok(store)
}

/// Marks `running` runs whose process no longer holds their lock as interrupted.
pub fn mark_dead_runs(store: &RunStore, ws: &Workspace) -> Result<Vec<String>> {
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
    backbone: &Backbone,
    memory_limit: u64,
    progress: &dyn Progress,
    events: &mut dyn RunEvents,
) -> Result<RunSummary> {
    let config = &experiment.config;
    let mut clock = PhaseClock::start();
    let data = ExperimentData::load(ws.root(), experiment)?;
    check_validation_available(experiment, &data)?;
    memory::check(experiment, data.train.len(), data.test.len(), memory_limit)?;
    let dataset_time = clock.lap();
    let cache = FeatureCache::new(ws.feature_cache_dir());
    let (train_set, test_set, dataset_hash, skipped) =
        features_for(experiment, &data, backbone, &cache, progress)?;
    let features_time = clock.lap();
    if train_set.is_empty() {
        return Err(experiment.error("data.dir", "no readable training images".into()));
    }

    let store = open_store(ws)?;
    let run_id = new_run_id(&store, &experiment.config_hash())?;
    let model_dir = ws.run_dir(&run_id);
    std::fs::create_dir_all(&model_dir).map_err(|e| Error::io(&model_dir, e))?;
    let lock_path = model_dir.join(LOCK_FILE);
    let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    crate::fsutil::write_atomically(
        &model_dir.join(CONFIG_FILE),
        experiment.resolved_yaml().as_bytes(),
    )?;
    let meta = HeadMeta {
        classes: data.classes.clone(),
        labels: data.labels.clone(),
        resize: config.data.resize,
        l2_normalize: config.head.l2_normalize,
        weights_sha256: backbone.weights_sha256().to_owned(),
    };
    model::save_meta(&model_dir, &meta)?;
    store.create_run(&NewRun {
        id: run_id.clone(),
        experiment: experiment.name().to_owned(),
        config_yaml: experiment.resolved_yaml(),
        config_hash: experiment.config_hash(),
        dataset_hash,
        weights_hash: backbone.weights_sha256().to_owned(),
        seed: config.train.seed,
    })?;
    events.started(&run_id, &data, &skipped);

    let val = (!test_set.is_empty()).then_some(&test_set);
    let mut observer = StoreObserver {
        store: &store,
        run_id: &run_id,
        best_path: model_dir.join(BEST_FILE),
        events,
    };
    let fitted = train::fit(config, data.classes.len(), &train_set, val, &mut observer);
    let outcome = match fitted {
        Ok(outcome) => outcome,
        Err(e) => {
            let status = if matches!(e, Error::Cancelled) {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            store.end_run(&run_id, status, &e.to_string())?;
            return Err(e);
        }
    };
    let training_time = clock.lap();
    if let Err(e) = model::save_params(&model_dir.join(HEAD_FILE), &outcome.params) {
        store.end_run(&run_id, RunStatus::Failed, &e.to_string())?;
        return Err(e);
    }
    let (test_accuracy, confusion) = if test_set.is_empty() {
        (None, None)
    } else {
        let evaluation = train::evaluate(&HeadRunner::new(0, 0.0), &outcome.params, &test_set);
        let matrix = evaluation.confusion(data.classes.len(), &test_set.y);
        (
            Some(evaluation.accuracy),
            Some((matrix, data.classes.clone(), data.labels.clone())),
        )
    };
    store.finish_run(
        &run_id,
        &RunResult {
            best_epoch: outcome.best_epoch,
            test_accuracy,
            confusion,
        },
    )?;
    drop(lock);
    // The lock file only marks a live run; a finished run's folder does not need it.
    let _ = std::fs::remove_file(&lock_path);
    Ok(RunSummary {
        run_id,
        test_accuracy,
        epochs: outcome.epochs,
        best_epoch: outcome.best_epoch,
        stopped_early: outcome.stopped_early,
        model_dir,
        skipped,
        phases: PhaseTimes {
            dataset: dataset_time,
            features: features_time,
            training: training_time,
            finishing: clock.lap(),
        },
    })
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

/// Validation metrics need a test set; say so against the key that asks for them.
fn check_validation_available(experiment: &Experiment, data: &ExperimentData) -> Result<()> {
    match experiment.config.validation_monitor_key() {
        Some(key) if data.test.is_empty() => Err(experiment.error(
            key,
            "watches a validation metric but the dataset has no test images; set data.train/data.test or data.split".into(),
        )),
        _ => Ok(()),
    }
}

/// Feature rows for the train set (with augmented copies) and the test set, the dataset's
/// content hash, and the files that had to be skipped.
type RunFeatures = (
    LabeledFeatures,
    LabeledFeatures,
    String,
    Vec<(PathBuf, String)>,
);

fn features_for(
    experiment: &Experiment,
    data: &ExperimentData,
    backbone: &Backbone,
    cache: &FeatureCache,
    progress: &dyn Progress,
) -> Result<RunFeatures> {
    let c = &experiment.config;
    let plain = |img: &LabeledImage| FeatureRequest {
        path: img.path.clone(),
        augment: None,
    };
    let mut requests: Vec<(FeatureRequest, usize, bool)> = Vec::new();
    for img in &data.train {
        requests.push((plain(img), img.class, true));
        for copy in 0..c.augment.copies {
            let augment = Some(AugmentCopy {
                spec: &c.augment,
                seed: c.train.seed,
                copy,
            });
            requests.push((
                FeatureRequest {
                    path: img.path.clone(),
                    augment,
                },
                img.class,
                true,
            ));
        }
    }
    for img in &data.test {
        requests.push((plain(img), img.class, false));
    }
    let only_requests: Vec<FeatureRequest> = requests.iter().map(|(r, _, _)| r.clone()).collect();
    let extraction =
        features::extract_requests(backbone, cache, &only_requests, c.data.resize, progress)?;

    let mut hasher = blake3::Hasher::new();
    for name in &data.classes {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
    }
    let (mut train_set, mut test_set) = (
        LabeledFeatures::new(FEATURE_DIM),
        LabeledFeatures::new(FEATURE_DIM),
    );
    for ((request, class, is_train), (features, content)) in requests
        .iter()
        .zip(extraction.features.iter().zip(&extraction.content))
    {
        if request.augment.is_none() {
            if let Some(content) = content {
                hasher.update(&[u8::from(*is_train)]);
                hasher.update(&(*class as u64).to_le_bytes());
                hasher.update(content.as_bytes());
            }
        }
        if let Some(f) = features {
            let set = if *is_train {
                &mut train_set
            } else {
                &mut test_set
            };
            set.push(f, *class);
        }
    }
    if c.head.l2_normalize {
        train_set.l2_normalize();
        test_set.l2_normalize();
    }
    Ok((
        train_set,
        test_set,
        hasher.finalize().to_hex().to_string(),
        extraction.skipped,
    ))
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

/// Records epochs in the store, writes checkpoints, and passes events on.
struct StoreObserver<'a> {
    store: &'a RunStore,
    run_id: &'a str,
    best_path: PathBuf,
    events: &'a mut dyn RunEvents,
}

impl TrainObserver for StoreObserver<'_> {
    fn epoch_finished(&mut self, metrics: &EpochMetrics) -> Result<()> {
        self.store.add_epoch(self.run_id, metrics)?;
        self.events.epoch(metrics);
        Ok(())
    }

    fn checkpoint(&mut self, params: &HeadParams, _epoch: usize) -> Result<()> {
        model::save_params(&self.best_path, params)
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
