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

use std::sync::{Condvar, Mutex};

use super::space::Params;
use super::spec::Method;
use super::trial::{self, TrialTrainer};
use super::Sweep;
use crate::backbone::Backbones;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::run;
use crate::store::{RunStatus, SharedStore, SweepRecord, TrialRecord};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

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
    /// Of those, seconds spent getting the trial's features: nothing when an earlier trial of
    /// this session had the same data settings, else reading the images and computing the new
    /// ones (augmented copies, another backbone).
    pub feature_seconds: f64,
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
    backbones: &Backbones,
    memory_limit: u64,
    progress: &dyn Progress,
    events: &dyn SweepEvents,
) -> Result<SweepOutcome> {
    let started = std::time::Instant::now();
    let base = run::prepare(ws, &sweep.base, backbones, memory_limit, progress)?;
    let prepare_seconds = started.elapsed().as_secs_f64();
    let sweep_id = sweep.id(&base.dataset_hash);
    let store = SharedStore::new(run::open_store(ws)?);
    let total = sweep.total_trials();
    store
        .lock()
        .create_sweep(&sweep_record(sweep, &sweep_id, &base.dataset_hash))?;
    let already_done = store
        .lock()
        .trials(&sweep_id)?
        .iter()
        .filter(|t| t.is_done())
        .count();
    events.started(&sweep_id, total, already_done);
    let session = Session {
        sweep,
        events,
        schedule: Schedule::new(total),
        trainer: TrialTrainer::new(
            ws,
            sweep,
            sweep_id.clone(),
            backbones,
            memory_limit,
            &store,
            std::sync::Arc::new(base),
        ),
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

/// What the store keeps of a sweep about to run or be queued.
pub(crate) fn sweep_record(sweep: &Sweep, sweep_id: &str, dataset_hash: &str) -> SweepRecord {
    SweepRecord {
        id: sweep_id.to_owned(),
        name: sweep.name(),
        file: sweep.path.display().to_string(),
        method: sweep.spec.method.as_str().into(),
        metric: sweep.spec.metric.name.as_str().into(),
        goal: sweep.spec.metric.goal().as_str().into(),
        total_trials: sweep.total_trials(),
        created_at: String::new(),
        dataset_hash: dataset_hash.to_owned(),
        spec_yaml: sweep.resolved_yaml(),
        experiment_yaml: sweep.base.resolved_yaml(),
    }
}

/// One run of a sweep: what the workers share.
struct Session<'a> {
    sweep: &'a Sweep,
    events: &'a dyn SweepEvents,
    schedule: Schedule,
    trainer: TrialTrainer<'a>,
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
        let store = self.trainer.store;
        let trials = store.lock().trials(&self.trainer.sweep_id)?;
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
                    run::delete_run(&store.lock(), self.trainer.ws, &old.id)?;
                }
                t.params.clone()
            }
            None => match self.claim(number, &visible)? {
                Some(params) => params,
                None => return Ok(Trial::Exhausted),
            },
        };
        self.schedule.claimed(number);
        let curves = trial::finished_curves(self.sweep, &store.lock(), &visible)?;
        self.trainer
            .train(number, params, curves, self.events)
            .map(Trial::Ran)
    }

    /// Draws parameters for a new trial and claims them; `None` if every draw repeated an
    /// earlier trial's.
    fn claim(&self, number: usize, visible: &[&TrialRecord]) -> Result<Option<Params>> {
        let history = match self.sweep.spec.method {
            Method::Tpe => trial::history(self.sweep, visible),
            _ => Vec::new(),
        };
        let store = self.trainer.store;
        trial::draw_until_claimed(self.sweep, number, &history, |json, hash| {
            store
                .lock()
                .claim_trial(&self.trainer.sweep_id, number, json, hash)
        })
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
