//! Running a sweep on this machine: `parallel` worker threads take trial numbers in order,
//! claim each in the store (parameters and their hash, unique in the sweep), train it as a run
//! through one shared store connection, and report to [`SweepEvents`].
//!
//! Reproducibility: grid and random trials depend only on (sweep seed, trial number), so any
//! `parallel` gives the same trials and figures. TPE and the median pruner learn from earlier
//! trials; trial `n` sees exactly the trials numbered `n - parallel` and below (it waits for
//! them), so a sweep gives the same trials again for the same `parallel`. Claims are made in
//! number order, so a redrawn duplicate never depends on timing.
//!
//! Resuming: running the sweep again finds its trials in the store. Finished, failed and
//! pruned trials are kept; a trial whose run was interrupted (or never started) is run again
//! with its claimed parameters, its old run deleted; a trial running in another live process
//! is left to it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use rand::SeedableRng;

use super::space::{params_hash, Params};
use super::spec::{Method, SweepMetric};
use super::tpe::{self, Observation};
use super::{MedianPruner, Sweep};
use crate::backbone::Backbone;
use crate::config::Experiment;
use crate::dataset::ExperimentData;
use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::run::{self, PreparedData, RunEvents, RunPlace};
use crate::store::{RunStatus, SharedStore, SweepRecord, TrialOf, TrialRecord};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

/// Draws of new parameters before a trial number is given up as a duplicate of earlier ones
/// (the space has fewer distinct points than trials).
const MAX_DRAWS: u64 = 100;

/// What the caller hears while a sweep runs; called from the worker threads.
pub trait SweepEvents: Sync {
    fn started(&self, _sweep_id: &str, _total: usize, _done: usize) {}
    fn trial_started(&self, _number: usize, _run_id: &str, _params: &Params) {}
    fn trial_epoch(&self, _number: usize, _metrics: &EpochMetrics) {}
    fn trial_finished(&self, _trial: &TrialOutcome) {}
    /// Polled between training steps; `true` interrupts the running trials (resumable).
    fn cancelled(&self) -> bool {
        false
    }
}

/// How one trial of this session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialOutcome {
    pub number: usize,
    pub run_id: Option<String>,
    pub status: RunStatus,
    pub params: Params,
    /// The sweep's metric (a validation figure), when the trial finished.
    pub metric: Option<f64>,
    /// Reported beside the metric, never used to select.
    pub test_accuracy: Option<f64>,
    pub epochs: usize,
    pub error: Option<String>,
    /// Seconds from taking the trial number to its last store write.
    pub wall_seconds: f64,
    /// Of those, seconds of training steps and validation (see `RunSummary::step_seconds`).
    pub step_seconds: f64,
}

/// How a sweep session ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepOutcome {
    pub sweep_id: String,
    pub total: usize,
    /// Trials this session ran.
    pub ran: Vec<TrialOutcome>,
    /// Trials already done before this session.
    pub already_done: usize,
    /// The space ran out of distinct parameters before `total` trials.
    pub exhausted_at: Option<usize>,
    pub cancelled: bool,
    /// Seconds spent reading the base experiment's dataset and features before any trial.
    pub prepare_seconds: f64,
}

/// Runs (or resumes) `sweep` in workspace `ws` until every trial is done or `events` cancels.
pub fn run_sweep(
    ws: &Workspace,
    sweep: &Sweep,
    backbone: &Backbone,
    memory_limit: u64,
    progress: &dyn Progress,
    events: &dyn SweepEvents,
) -> Result<SweepOutcome> {
    let started = std::time::Instant::now();
    let base = run::prepare(ws, &sweep.base, backbone, memory_limit, progress)?;
    let prepare_seconds = started.elapsed().as_secs_f64();
    let sweep_id = sweep.id(&base.dataset_hash);
    let store = SharedStore::new(run::open_store(ws)?);
    let total = sweep.total_trials();
    store.lock().create_sweep(&SweepRecord {
        id: sweep_id.clone(),
        name: sweep.name(),
        file: sweep.path.display().to_string(),
        method: sweep.spec.method.as_str().into(),
        metric: sweep.spec.metric.name.as_str().into(),
        goal: sweep.spec.metric.goal().as_str().into(),
        total_trials: total,
        created_at: String::new(),
        dataset_hash: base.dataset_hash.clone(),
        spec_yaml: sweep.resolved_yaml(),
        experiment_yaml: sweep.base.resolved_yaml(),
    })?;
    let already_done = store
        .lock()
        .trials(&sweep_id)?
        .iter()
        .filter(|t| t.is_done())
        .count();
    events.started(&sweep_id, total, already_done);
    let session = Session {
        ws,
        sweep,
        sweep_id: sweep_id.clone(),
        backbone,
        memory_limit,
        store: &store,
        events,
        schedule: Schedule::new(total),
        features: Mutex::new(HashMap::from([(features_key(&sweep.base), Arc::new(base))])),
        ran: Mutex::new(Vec::new()),
        failure: Mutex::new(None),
    };
    std::thread::scope(|scope| {
        for _ in 0..sweep.spec.parallel {
            scope.spawn(|| session.work());
        }
    });
    if let Some(e) = session
        .failure
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(e);
    }
    let state = session
        .schedule
        .state
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let mut ran = session.ran.into_inner().unwrap_or_else(|p| p.into_inner());
    ran.sort_by_key(|t| t.number);
    Ok(SweepOutcome {
        sweep_id,
        total,
        ran,
        already_done,
        exhausted_at: (state.end < total).then_some(state.end),
        cancelled: state.cancelled,
        prepare_seconds,
    })
}

/// The parts of an experiment its features depend on; trials that agree share features.
fn features_key(experiment: &Experiment) -> String {
    let c = &experiment.config;
    serde_json::to_string(&(&c.data, &c.augment, c.augment_seed())).expect("configs serialise")
}

/// One run of a sweep: what the workers share.
struct Session<'a> {
    ws: &'a Workspace,
    sweep: &'a Sweep,
    sweep_id: String,
    backbone: &'a Backbone,
    memory_limit: u64,
    store: &'a SharedStore,
    events: &'a dyn SweepEvents,
    schedule: Schedule,
    features: Mutex<HashMap<String, Arc<PreparedData>>>,
    ran: Mutex<Vec<TrialOutcome>>,
    failure: Mutex<Option<Error>>,
}

/// What became of a trial number in this session.
enum Trial {
    Ran(TrialOutcome),
    /// Done before, or running in another process.
    Skipped,
    /// No distinct parameters were left to draw.
    Exhausted,
}

impl Session<'_> {
    fn work(&self) {
        while let Some(number) = self.schedule.next() {
            let start = std::time::Instant::now();
            let result = self.trial(number);
            match result {
                Ok(Trial::Ran(mut outcome)) => {
                    outcome.wall_seconds = start.elapsed().as_secs_f64();
                    if outcome.status == RunStatus::Interrupted {
                        self.schedule.cancel();
                    }
                    self.events.trial_finished(&outcome);
                    self.lock_ran().push(outcome);
                }
                Ok(Trial::Skipped) => {}
                Ok(Trial::Exhausted) => self.schedule.end_at(number),
                Err(e) => {
                    let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
                    failure.get_or_insert(e);
                    self.schedule.cancel();
                }
            }
            self.schedule.claimed(number);
            self.schedule.done(number);
        }
    }

    fn lock_ran(&self) -> std::sync::MutexGuard<'_, Vec<TrialOutcome>> {
        self.ran.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims trial `number` (or finds its claim) and runs it.
    fn trial(&self, number: usize) -> Result<Trial> {
        let parallel = self.sweep.spec.parallel;
        let learns =
            self.sweep.spec.method == Method::Tpe || self.sweep.spec.early_terminate.is_some();
        if learns
            && number >= parallel
            && !self.schedule.wait_done_through(number, number - parallel)
        {
            return Ok(Trial::Skipped);
        }
        if !self.schedule.wait_claimed_before(number) {
            return Ok(Trial::Skipped);
        }
        let trials = self.store.lock().trials(&self.sweep_id)?;
        let visible: Vec<&TrialRecord> = trials
            .iter()
            .filter(|t| t.number + parallel <= number)
            .collect();
        let params = match trials.iter().find(|t| t.number == number) {
            Some(t) if t.is_done() => return Ok(Trial::Skipped),
            Some(t)
                if t.run
                    .as_ref()
                    .is_some_and(|r| r.status == RunStatus::Running) =>
            {
                return Ok(Trial::Skipped)
            }
            Some(t) => {
                if let Some(old) = &t.run {
                    run::delete_run(&self.store.lock(), self.ws, &old.id)?;
                }
                t.params.clone()
            }
            None => match self.claim(number, &visible)? {
                Some(params) => params,
                None => return Ok(Trial::Exhausted),
            },
        };
        self.schedule.claimed(number);
        let curves = self.finished_curves(&visible)?;
        self.train(number, params, curves).map(Trial::Ran)
    }

    /// Draws parameters for a new trial and claims them; `None` if every draw repeated an
    /// earlier trial's.
    fn claim(&self, number: usize, visible: &[&TrialRecord]) -> Result<Option<Params>> {
        let spec = &self.sweep.spec;
        for draw in 0..MAX_DRAWS {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(super::trial_seed(
                spec.seed ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                number,
            ));
            let params = match spec.method {
                Method::Grid => self.sweep.space.grid_point(number),
                Method::Random => self.sweep.space.sample(&mut rng),
                Method::Tpe => {
                    let history = self.history(visible);
                    tpe::suggest(&self.sweep.space, &history, spec.metric.goal(), &mut rng)
                }
            };
            let json = serde_json::to_string(&params).expect("JSON values serialise");
            if self.store.lock().claim_trial(
                &self.sweep_id,
                number,
                &json,
                &params_hash(&params),
            )? {
                return Ok(Some(params));
            }
        }
        Ok(None)
    }

    /// What TPE learns from: done trials with their metric (pruned ones without).
    fn history(&self, visible: &[&TrialRecord]) -> Vec<Observation> {
        let metric = self.sweep.spec.metric.name;
        visible
            .iter()
            .filter_map(|t| {
                let run = t.run.as_ref()?;
                let value = match run.status {
                    RunStatus::Finished => Some(metric.of_run(run)?),
                    RunStatus::Pruned => None,
                    _ => return None,
                };
                Some(Observation {
                    params: t.params.clone(),
                    value,
                })
            })
            .collect()
    }

    /// The per-epoch metric of earlier finished trials, for the pruner.
    fn finished_curves(&self, visible: &[&TrialRecord]) -> Result<Vec<Vec<f64>>> {
        if self.sweep.spec.early_terminate.is_none() {
            return Ok(Vec::new());
        }
        let metric = self.sweep.spec.metric.name;
        let store = self.store.lock();
        visible
            .iter()
            .filter_map(|t| t.run.as_ref().filter(|r| r.status == RunStatus::Finished))
            .map(|run| {
                Ok(store
                    .epochs(&run.id)?
                    .iter()
                    .map(|e| metric.of_epoch(e).unwrap_or(f64::NAN))
                    .collect())
            })
            .collect()
    }

    fn features_for(&self, experiment: &Experiment) -> Result<Arc<PreparedData>> {
        let mut features = self.features.lock().unwrap_or_else(|p| p.into_inner());
        let key = features_key(experiment);
        if let Some(prepared) = features.get(&key) {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(run::prepare(
            self.ws,
            experiment,
            self.backbone,
            self.memory_limit,
            &NoProgress,
        )?);
        features.insert(key, prepared.clone());
        Ok(prepared)
    }

    fn train(&self, number: usize, params: Params, earlier: Vec<Vec<f64>>) -> Result<TrialOutcome> {
        let spec = &self.sweep.spec;
        let failed = |error: Error| TrialOutcome {
            number,
            run_id: None,
            status: RunStatus::Failed,
            params: params.clone(),
            metric: None,
            test_accuracy: None,
            epochs: 0,
            error: Some(error.to_string()),
            wall_seconds: 0.0,
            step_seconds: 0.0,
        };
        let experiment = match self.sweep.trial_experiment(&params, number) {
            Ok(experiment) => experiment,
            Err(e) => return Ok(failed(e)),
        };
        let prepared = self.features_for(&experiment)?;
        let place = RunPlace {
            ws: self.ws,
            store: self.store,
            weights_sha256: self.backbone.weights_sha256(),
            trial: Some(TrialOf {
                sweep_id: self.sweep_id.clone(),
                number,
            }),
        };
        let mut events = TrialEvents {
            number,
            params: &params,
            sweep: self.events,
            metric: spec.metric.name,
            pruner: spec.early_terminate.as_ref().map(|e| MedianPruner {
                min_epochs: e.min_epochs,
                startup_trials: e.startup_trials,
                goal: spec.metric.goal(),
            }),
            earlier,
            own: Vec::new(),
            run_id: None,
        };
        let result = run::train_prepared(&place, &experiment, &prepared, &mut events);
        let run_id = events.run_id.clone();
        let epochs = events.own.len();
        let step_seconds = result.as_ref().map_or(0.0, |s| s.step_seconds);
        let outcome = |status, metric, test_accuracy, error| TrialOutcome {
            number,
            run_id: run_id.clone(),
            status,
            params: params.clone(),
            metric,
            test_accuracy,
            epochs,
            error,
            wall_seconds: 0.0,
            step_seconds,
        };
        Ok(match result {
            Ok(summary) => outcome(
                RunStatus::Finished,
                summary.selection.map(|s| spec.metric.name.of_selection(&s)),
                summary.test_accuracy,
                None,
            ),
            Err(e @ Error::Pruned { .. }) => {
                outcome(RunStatus::Pruned, None, None, Some(e.to_string()))
            }
            Err(Error::Cancelled) => outcome(RunStatus::Interrupted, None, None, None),
            Err(e @ Error::Store { .. }) => return Err(e),
            Err(e) if run_id.is_none() => failed(e),
            Err(e) => outcome(RunStatus::Failed, None, None, Some(e.to_string())),
        })
    }
}

/// One trial's run events: passes them on, keeps the metric curve, asks the pruner.
struct TrialEvents<'a> {
    number: usize,
    params: &'a Params,
    sweep: &'a dyn SweepEvents,
    metric: SweepMetric,
    pruner: Option<MedianPruner>,
    earlier: Vec<Vec<f64>>,
    own: Vec<f64>,
    run_id: Option<String>,
}

impl RunEvents for TrialEvents<'_> {
    fn started(
        &mut self,
        run_id: &str,
        _data: &ExperimentData,
        _skipped: &[(std::path::PathBuf, String)],
    ) {
        self.run_id = Some(run_id.to_owned());
        self.sweep.trial_started(self.number, run_id, self.params);
    }

    fn epoch(&mut self, metrics: &EpochMetrics) {
        self.own
            .push(self.metric.of_epoch(metrics).unwrap_or(f64::NAN));
        self.sweep.trial_epoch(self.number, metrics);
    }

    fn cancelled(&self) -> bool {
        self.sweep.cancelled()
    }

    fn should_prune(&mut self, metrics: &EpochMetrics) -> bool {
        self.pruner
            .as_ref()
            .is_some_and(|p| p.should_prune(metrics.epoch, &self.own, &self.earlier))
    }
}

/// Which trial numbers are handed out, claimed and done; workers wait on it.
struct Schedule {
    state: Mutex<ScheduleState>,
    changed: Condvar,
}

struct ScheduleState {
    next: usize,
    /// Numbers below this are claimed (or given up).
    claimed_below: usize,
    done: Vec<bool>,
    /// No number from here on runs (the total, or where the space ran out).
    end: usize,
    cancelled: bool,
}

impl Schedule {
    fn new(total: usize) -> Self {
        Schedule {
            state: Mutex::new(ScheduleState {
                next: 0,
                claimed_below: 0,
                done: vec![false; total],
                end: total,
                cancelled: false,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ScheduleState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> Option<usize> {
        let mut s = self.lock();
        if s.cancelled || s.next >= s.end {
            return None;
        }
        s.next += 1;
        Some(s.next - 1)
    }

    /// Waits until `ready` holds; `false` if the sweep was cancelled or ended before `number`.
    fn wait(&self, number: usize, ready: impl Fn(&ScheduleState) -> bool) -> bool {
        let mut s = self.lock();
        loop {
            if s.cancelled || number >= s.end {
                return false;
            }
            if ready(&s) {
                return true;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn wait_claimed_before(&self, number: usize) -> bool {
        self.wait(number, |s| s.claimed_below >= number)
    }

    /// Waits (for trial `number`) until every trial up to `last` is done.
    fn wait_done_through(&self, number: usize, last: usize) -> bool {
        self.wait(number, |s| s.done[..=last].iter().all(|&d| d))
    }

    fn claimed(&self, number: usize) {
        let mut s = self.lock();
        s.claimed_below = s.claimed_below.max(number + 1);
        self.changed.notify_all();
    }

    fn done(&self, number: usize) {
        let mut s = self.lock();
        if let Some(d) = s.done.get_mut(number) {
            *d = true;
        }
        self.changed.notify_all();
    }

    fn end_at(&self, number: usize) {
        let mut s = self.lock();
        s.end = s.end.min(number);
        self.changed.notify_all();
    }

    fn cancel(&self) {
        self.lock().cancelled = true;
        self.changed.notify_all();
    }
}
