//! Sweeps across machines: `sweep --queue-only` puts a sweep's trials in the store's queue and
//! returns; `facelab worker` processes, started by hand or by any job launcher (a SLURM job
//! array, a Kubernetes Indexed Job), claim trials one at a time, run them in their own
//! workspace against their own feature cache, and record them in the shared store (see
//! `store::queue` for the claim, heartbeat and takeover rules).
//!
//! A worker refuses a sweep whose dataset differs from the one it was queued with (its
//! content hash, computed here from this machine's files), naming both hashes. While it runs a
//! trial a thread heartbeats the claim every quarter of the grace period; if the claim was
//! taken over meanwhile (this worker was presumed dead), the trial is stopped and its run left
//! to the new claimer. Grid and random trials have their parameters fixed at queue time, so
//! every worker count gives the same trials; TPE trials are drawn at claim time from every
//! finished trial in the store, whoever ran it (so they depend on timing, as Optuna's do).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backbone::Backbones;
use crate::error::{Error, Result};
use crate::progress::{NoProgress, Progress};
use crate::run;
use crate::store::{Claim, QueuedTrial, RunStatus, SharedStore};
use crate::sweep::space::{params_hash, Params};
use crate::sweep::spec::Method;
use crate::sweep::trial::{self, TrialTrainer};
use crate::sweep::{sweep_record, Sweep, SweepEvents, TrialOutcome};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

/// How long a claim's heartbeat may be silent before other workers take the trial over. A
/// minute: a killed trial is retried within about a minute, while a worker on a loaded
/// machine or behind a short network outage (its heartbeat is every 15 s) is not presumed
/// dead and its trial is not run twice.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// A sweep put in the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub sweep_id: String,
    pub total: usize,
    /// Trials added now (zero when the sweep was queued before).
    pub added: usize,
    /// The space ran out of distinct parameters before `total` trials.
    pub exhausted_at: Option<usize>,
}

/// Records `sweep` in the workspace's store and queues its trials for workers. Reads the base
/// experiment's dataset once (computing features this machine lacks), for its content hash.
pub fn enqueue(
    ws: &Workspace,
    sweep: &Sweep,
    backbones: &Backbones,
    memory_limit: u64,
    progress: &dyn Progress,
) -> Result<Enqueued> {
    let base = run::prepare(ws, &sweep.base, backbones, memory_limit, progress)?;
    let sweep_id = sweep.id(&base.dataset_hash);
    let store = run::open_store(ws)?;
    let total = sweep.total_trials();
    let mut taken = std::collections::HashSet::new();
    let mut trials = Vec::new();
    let mut exhausted_at = None;
    for number in 0..total {
        if sweep.spec.method == Method::Tpe {
            trials.push(QueuedTrial {
                number,
                params: None,
            });
            continue;
        }
        let drawn = trial::draw_until_claimed(sweep, number, &[], |_, hash| {
            Ok(taken.insert(hash.to_owned()))
        })?;
        let Some(params) = drawn else {
            exhausted_at = Some(number);
            break;
        };
        let json = serde_json::to_string(&params).expect("JSON values serialise");
        trials.push(QueuedTrial {
            number,
            params: Some((json, params_hash(&params))),
        });
    }
    let added = store.in_transaction(|s| {
        s.create_sweep(&sweep_record(sweep, &sweep_id, &base.dataset_hash))?;
        s.queue_sweep(&sweep_id, &trials)
    })?;
    Ok(Enqueued {
        sweep_id,
        total,
        added,
        exhausted_at,
    })
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Work on this sweep (an id or prefix) only; else on every queued sweep.
    pub sweep: Option<String>,
    /// Stop after this many trials.
    pub max_trials: Option<usize>,
    /// Stop after this long with nothing claimable and no trial running elsewhere (which could
    /// become claimable if its worker died).
    pub idle_exit: Option<Duration>,
    pub grace: Duration,
    /// How often to look for work while there is none.
    pub poll: Duration,
}

/// What a worker reports; called from its thread.
pub trait WorkerEvents: SweepEvents {
    fn refused(&self, _sweep_id: &str, _why: &str) {}
    fn claimed(&self, _claim: &Claim, _params: &Params) {}
    /// A trial ended; `metric` names the sweep's selection metric.
    fn finished(&self, _sweep_id: &str, _metric: &str, _trial: &TrialOutcome) {}
    /// The worker found its claim taken over and stopped the trial.
    fn lost(&self, _claim: &Claim) {}
}

/// How a worker's session ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerOutcome {
    pub worker: String,
    pub ran: usize,
    pub refused: Vec<String>,
    pub cancelled: bool,
}

/// This process's name in claims: host and process id.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}", std::process::id())
}

/// Claims and runs trials until `options` says stop or `events` cancels.
pub fn run_worker(
    ws: &Workspace,
    backbones: &Backbones,
    memory_limit: u64,
    options: &WorkerOptions,
    events: &dyn WorkerEvents,
) -> Result<WorkerOutcome> {
    let store = SharedStore::new(run::open_store(ws)?);
    let pinned = match &options.sweep {
        Some(id) => Some(store.lock().sweep(id)?.id),
        None => None,
    };
    let mut outcome = WorkerOutcome {
        worker: worker_name(),
        ..WorkerOutcome::default()
    };
    // Sweeps read and checked, each with its data prepared once (held for the session).
    let mut sweeps: HashMap<String, Option<(Sweep, Arc<run::PreparedData>)>> = HashMap::new();
    let mut idle_since: Option<Instant> = None;
    loop {
        if events.cancelled() {
            outcome.cancelled = true;
            return Ok(outcome);
        }
        if options.max_trials.is_some_and(|max| outcome.ran >= max) {
            return Ok(outcome);
        }
        let open = match &pinned {
            Some(id) => vec![id.clone()],
            None => store.lock().open_queued_sweeps()?,
        };
        for id in &open {
            if sweeps.contains_key(id) {
                continue;
            }
            let accepted = accept(ws, &store, backbones, memory_limit, id)?;
            if let Err(why) = &accepted {
                events.refused(id, why);
                outcome.refused.push(id.clone());
                if pinned.is_some() {
                    return Err(Error::InvalidArgument(format!("sweep {id}: {why}")));
                }
            }
            sweeps.insert(id.clone(), accepted.ok());
        }
        let accepted: Vec<String> = open
            .into_iter()
            .filter(|id| sweeps.get(id).is_some_and(Option::is_some))
            .collect();
        let grace = options.grace.as_secs_f64();
        let claim = store
            .lock()
            .claim_next_trial(&accepted, &outcome.worker, grace)?;
        let Some(claim) = claim else {
            let counts = store.lock().queue_counts(&accepted, grace)?;
            let idle = idle_since.get_or_insert_with(Instant::now);
            if counts.running > 0 {
                *idle = Instant::now();
            }
            if options
                .idle_exit
                .is_some_and(|limit| idle.elapsed() >= limit)
            {
                return Ok(outcome);
            }
            std::thread::sleep(options.poll);
            continue;
        };
        idle_since = None;
        let Some((sweep, base)) = sweeps.get(&claim.sweep_id).and_then(Option::as_ref) else {
            continue;
        };
        let trainer = TrialTrainer::new(
            ws,
            sweep,
            claim.sweep_id.clone(),
            backbones,
            memory_limit,
            &store,
            base.clone(),
        );
        if run_claim(&trainer, &claim, &outcome.worker, options.grace, events)? {
            outcome.ran += 1;
        }
    }
}

/// Reads a queued sweep from the store and prepares its base experiment's data here; `Err`
/// with the reason when this machine's dataset is not the one the sweep was queued with.
fn accept(
    ws: &Workspace,
    store: &SharedStore,
    backbones: &Backbones,
    memory_limit: u64,
    sweep_id: &str,
) -> Result<std::result::Result<(Sweep, Arc<run::PreparedData>), String>> {
    let record = store.lock().sweep(sweep_id)?;
    let sweep = Sweep::from_record(&record)?;
    let prepared = match run::prepare(ws, &sweep.base, backbones, memory_limit, &NoProgress) {
        Ok(prepared) => prepared,
        Err(e) => return Ok(Err(format!("its dataset does not load here: {e}"))),
    };
    if prepared.dataset_hash != record.dataset_hash {
        return Ok(Err(format!(
            "this machine's dataset (content hash {}) is not the one the sweep was queued with ({}); sync {} to match, or run workers where it does",
            &prepared.dataset_hash[..12.min(prepared.dataset_hash.len())],
            &record.dataset_hash[..12.min(record.dataset_hash.len())],
            ws.root().join(&sweep.base.config.data.dir).display()
        )));
    }
    Ok(Ok((sweep, Arc::new(prepared))))
}

/// Runs one claimed trial with its heartbeat, then completes or releases the claim; `true` when
/// this worker completed it.
fn run_claim(
    trainer: &TrialTrainer,
    claim: &Claim,
    worker: &str,
    grace: Duration,
    events: &dyn WorkerEvents,
) -> Result<bool> {
    let store = trainer.store;
    if let Some(old) = &claim.reclaimed_run {
        // The earlier claimer's folder, if it ran on this machine.
        let _ = std::fs::remove_dir_all(trainer.ws.run_dir(old));
    }
    // The sweep's done trials, read once: what TPE draws from and what the pruner compares with.
    let trials = store.lock().trials(&claim.sweep_id)?;
    let done: Vec<_> = trials.iter().filter(|t| t.is_done()).collect();
    let Some(params) = claimed_params(trainer, claim, &done)? else {
        // Every draw repeated an earlier trial's: nothing left to try for this number.
        store.lock().complete_trial(claim, worker)?;
        return Ok(false);
    };
    events.claimed(claim, &params);
    let lost = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| heartbeat(store, claim, worker, grace / 4, &lost, &finished));
        let claim_events = ClaimEvents {
            events,
            lost: &lost,
        };
        // The store's lock is released before training, which writes through it.
        let curves = trial::finished_curves(trainer.sweep, &store.lock(), &done);
        let result = curves.and_then(|c| trainer.train(claim.number, params, c, &claim_events));
        // Whatever happened, the heartbeat stops with the trial.
        finished.store(true, Ordering::Relaxed);
        result
    });
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            let _ = store.lock().release_trial(claim, worker);
            return Err(e);
        }
    };
    if lost.load(Ordering::Relaxed) {
        events.lost(claim);
        return Ok(false);
    }
    if outcome.status == RunStatus::Interrupted {
        // Stopped (a signal): back to the queue now; the next claimer deletes the run.
        store.lock().release_trial(claim, worker)?;
        return Ok(false);
    }
    if !store.lock().complete_trial(claim, worker)? {
        // Taken over between the last heartbeat and now: the new claimer's run counts.
        events.lost(claim);
        if let Some(run_id) = &outcome.run_id {
            let _ = run::delete_run(&store.lock(), trainer.ws, run_id);
        }
        return Ok(false);
    }
    let metric = trainer.sweep.spec.metric.name.as_str();
    events.finished(&claim.sweep_id, metric, &outcome);
    Ok(true)
}

/// The claim's parameters: fixed at queue time, or drawn now (TPE, from every finished trial
/// of the sweep).
fn claimed_params(
    trainer: &TrialTrainer,
    claim: &Claim,
    done: &[&crate::store::TrialRecord],
) -> Result<Option<Params>> {
    if let Some(json) = &claim.params_json {
        return serde_json::from_str(json).map(Some).map_err(|e| {
            Error::InvalidArgument(format!(
                "trial {} of sweep {} has unreadable parameters in the store ({e})",
                claim.number, claim.sweep_id
            ))
        });
    }
    let store = trainer.store;
    let history = trial::history(trainer.sweep, done);
    trial::draw_until_claimed(trainer.sweep, claim.number, &history, |json, hash| {
        store.lock().set_claimed_params(claim, json, hash)
    })
}

/// Heartbeats `claim` every `every` until `finished`; sets `lost` if the claim was taken over.
fn heartbeat(
    store: &SharedStore,
    claim: &Claim,
    worker: &str,
    every: Duration,
    lost: &AtomicBool,
    finished: &AtomicBool,
) {
    let tick = Duration::from_millis(50).min(every);
    let mut last = Instant::now();
    while !finished.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        // A failed heartbeat (the server briefly away) is tried again at the next beat; the
        // grace period covers several.
        if let Ok(false) = store.lock().heartbeat(claim, worker) {
            lost.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// A claimed trial's events: the worker's, and stop when the claim is lost.
struct ClaimEvents<'a> {
    events: &'a dyn WorkerEvents,
    lost: &'a AtomicBool,
}

impl SweepEvents for ClaimEvents<'_> {
    fn trial_started(&self, number: usize, run_id: &str, params: &Params) {
        self.events.trial_started(number, run_id, params);
    }

    fn trial_epoch(&self, number: usize, metrics: &EpochMetrics) {
        self.events.trial_epoch(number, metrics);
    }

    fn cancelled(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || self.events.cancelled()
    }
}
