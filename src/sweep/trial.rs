//! One trial of a sweep, wherever it runs (this machine's scheduler in `runner`, or a worker
//! claiming from a shared store in `crate::worker`): drawing its parameters, training it as a
//! run with the sweep's pruner listening, and what TPE and the pruner learn from earlier
//! trials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::SeedableRng;

use super::space::{params_hash, Params};
use super::spec::{Method, SweepMetric};
use super::tpe::{self, Observation};
use super::{MedianPruner, Sweep, SweepEvents, TrialOutcome};
use crate::backbone::Backbones;
use crate::config::Experiment;
use crate::dataset::ExperimentData;
use crate::error::{Error, Result};
use crate::progress::NoProgress;
use crate::run::{self, PreparedData, RunEvents, RunPlace};
use crate::store::{RunStatus, RunStore, SharedStore, TrialOf, TrialRecord};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

/// Draws of new parameters before a trial number is given up as a duplicate of earlier ones
/// (the space has fewer distinct points than trials).
pub const MAX_DRAWS: u64 = 100;

/// Trial `number`'s parameters at its `draw`-th attempt: the grid point, a random draw
/// seeded by (sweep seed, number, draw), or TPE's suggestion from `history`.
pub fn draw_params(sweep: &Sweep, number: usize, draw: u64, history: &[Observation]) -> Params {
    let spec = &sweep.spec;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(super::trial_seed(
        spec.seed ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        number,
    ));
    match spec.method {
        Method::Grid => sweep.space.grid_point(number),
        Method::Random => sweep.space.sample(&mut rng),
        Method::Tpe => tpe::suggest(&sweep.space, history, spec.metric.goal(), &mut rng),
    }
}

/// Draws parameters for trial `number` until `claim` accepts them (no earlier trial has
/// them); `None` if every draw repeated an earlier trial's.
pub fn draw_until_claimed(
    sweep: &Sweep,
    number: usize,
    history: &[Observation],
    mut claim: impl FnMut(&str, &str) -> Result<bool>,
) -> Result<Option<Params>> {
    for draw in 0..MAX_DRAWS {
        let params = draw_params(sweep, number, draw, history);
        let json = serde_json::to_string(&params).expect("JSON values serialise");
        if claim(&json, &params_hash(&params))? {
            return Ok(Some(params));
        }
    }
    Ok(None)
}

/// What TPE learns from: done trials with their metric (pruned ones without).
pub fn history(sweep: &Sweep, trials: &[&TrialRecord]) -> Vec<Observation> {
    let metric = sweep.spec.metric.name;
    trials
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

/// The per-epoch metric of earlier finished trials, for the pruner (none without one).
pub fn finished_curves(
    sweep: &Sweep,
    store: &RunStore,
    trials: &[&TrialRecord],
) -> Result<Vec<Vec<f64>>> {
    if sweep.spec.early_terminate.is_none() {
        return Ok(Vec::new());
    }
    let metric = sweep.spec.metric.name;
    trials
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

/// The parts of an experiment its features depend on; trials that agree share features.
fn features_key(experiment: &Experiment) -> String {
    let c = &experiment.config;
    serde_json::to_string(&(c.backbone, &c.data, &c.augment, c.augment_seed()))
        .expect("configs serialise")
}

/// Trains a sweep's trials in one workspace, sharing prepared features between trials whose
/// data and augmentation agree.
pub struct TrialTrainer<'a> {
    pub ws: &'a Workspace,
    pub sweep: &'a Sweep,
    pub sweep_id: String,
    pub backbones: &'a Backbones,
    pub memory_limit: u64,
    pub store: &'a SharedStore,
    features: Mutex<HashMap<String, Arc<PreparedData>>>,
}

impl<'a> TrialTrainer<'a> {
    /// `base` is the base experiment's prepared data (whose hash identifies the sweep).
    pub fn new(
        ws: &'a Workspace,
        sweep: &'a Sweep,
        sweep_id: String,
        backbones: &'a Backbones,
        memory_limit: u64,
        store: &'a SharedStore,
        base: Arc<PreparedData>,
    ) -> Self {
        TrialTrainer {
            ws,
            sweep,
            sweep_id,
            backbones,
            memory_limit,
            store,
            features: Mutex::new(HashMap::from([(features_key(&sweep.base), base)])),
        }
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
            self.backbones,
            self.memory_limit,
            &NoProgress,
        )?);
        features.insert(key, prepared.clone());
        Ok(prepared)
    }

    /// Trains trial `number` with `params`; `earlier` are finished trials' metric curves for
    /// the pruner. A trial that fails is an outcome; only a store error is an `Err`.
    pub fn train(
        &self,
        number: usize,
        params: Params,
        earlier: Vec<Vec<f64>>,
        events: &dyn SweepEvents,
    ) -> Result<TrialOutcome> {
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
            feature_seconds: 0.0,
        };
        let experiment = match self.sweep.trial_experiment(&params, number) {
            Ok(experiment) => experiment,
            Err(e) => return Ok(failed(e)),
        };
        let features_start = std::time::Instant::now();
        let prepared = self.features_for(&experiment)?;
        let feature_seconds = features_start.elapsed().as_secs_f64();
        let place = RunPlace {
            ws: self.ws,
            store: self.store,
            trial: Some(TrialOf {
                sweep_id: self.sweep_id.clone(),
                number,
            }),
        };
        let mut trial_events = TrialEvents {
            number,
            params: &params,
            sweep: events,
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
        let result = run::train_prepared(&place, &experiment, &prepared, &mut trial_events);
        let run_id = trial_events.run_id.clone();
        let epochs = trial_events.own.len();
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
            feature_seconds,
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
            Err(e @ (Error::Store { .. } | Error::StoreServer { .. })) => return Err(e),
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
