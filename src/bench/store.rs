//! `facelab bench store`: how many trials per second workers can claim and record through the
//! store, with no training in between, so the queue itself is what is timed. Each worker is a
//! thread with its own connection (as separate processes would have) doing what a worker does
//! per trial: claim, create the run, record its epochs, heartbeat, finish it (confusion matrix
//! and head included), complete the claim. It runs in a throwaway schema on a PostgreSQL server,
//! or in a temporary SQLite file, never in the user's store.

use std::time::Instant;

use crate::error::Result;
use crate::store::{NewRun, QueuedTrial, RunResult, RunStore, StoredHead, SweepRecord, TrialOf};
use crate::train::metrics::ConfusionMatrix;
use crate::train::EpochMetrics;

/// What one measurement did.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreBench {
    pub workers: usize,
    pub trials: usize,
    pub seconds: f64,
}

impl StoreBench {
    pub fn trials_per_second(&self) -> f64 {
        self.trials as f64 / self.seconds
    }
}

/// What each benchmark trial records.
#[derive(Debug, Clone, Copy)]
pub struct TrialShape {
    pub epochs: usize,
    pub classes: usize,
    pub head_bytes: usize,
}

const SWEEP_ID: &str = "be0c0001";

/// Times `workers` claimers draining a queue of `trials` trials on a fresh store: a schema of
/// its own on the PostgreSQL server at `url` (dropped afterwards), else a temporary SQLite file.
pub fn store_throughput(
    url: Option<&str>,
    workers: usize,
    trials: usize,
    shape: TrialShape,
) -> Result<StoreBench> {
    let dir = tempfile::tempdir().map_err(|e| crate::Error::io(std::env::temp_dir(), e))?;
    let schema = format!("facelab_bench_{}_{workers}", std::process::id());
    let file = dir.path().join("facelab.db");
    let open = || match url {
        Some(url) => RunStore::open_postgres(url, Some(&schema)),
        None => RunStore::open(&file),
    };
    let store = open()?;
    enqueue(&store, trials)?;
    let started = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1))
            .map(|w| {
                let open = &open;
                scope.spawn(move || drain(&open()?, &format!("bench:{w}"), shape))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench workers do not panic"))
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    if url.is_some() {
        store.drop_own_schema()?;
    }
    results.into_iter().collect::<Result<()>>()?;
    Ok(StoreBench {
        workers,
        trials,
        seconds,
    })
}

fn enqueue(store: &RunStore, trials: usize) -> Result<()> {
    store.create_sweep(&SweepRecord {
        id: SWEEP_ID.into(),
        name: "bench".into(),
        file: "bench.yaml".into(),
        method: "random".into(),
        metric: "cv_accuracy".into(),
        goal: "maximize".into(),
        total_trials: trials,
        created_at: String::new(),
        dataset_hash: String::new(),
        spec_yaml: String::new(),
        experiment_yaml: String::new(),
    })?;
    let queued: Vec<QueuedTrial> = (0..trials)
        .map(|number| QueuedTrial {
            number,
            params: Some((format!("{{\"lr\":{number}}}"), format!("p{number}"))),
        })
        .collect();
    store.queue_sweep(SWEEP_ID, &queued)?;
    Ok(())
}

/// Claims and records trials until none is left.
fn drain(store: &RunStore, worker: &str, shape: TrialShape) -> Result<()> {
    let ids = [SWEEP_ID.to_owned()];
    let classes: Vec<String> = (0..shape.classes).map(|c| format!("s{c:02}")).collect();
    while let Some(claim) = store.claim_next_trial(&ids, worker, 60.0)? {
        let run_id = format!("{:08x}", 0xbe00_0000u32 + claim.number as u32);
        store.create_run(&NewRun {
            id: run_id.clone(),
            experiment: "bench".into(),
            config_yaml: "name: bench\n".into(),
            config_hash: String::new(),
            dataset_hash: String::new(),
            weights_hash: String::new(),
            seed: 0,
            trial: Some(TrialOf {
                sweep_id: SWEEP_ID.into(),
                number: claim.number,
            }),
        })?;
        for epoch in 1..=shape.epochs {
            store.add_epoch(&run_id, &epoch_metrics(epoch))?;
        }
        store.heartbeat(&claim, worker)?;
        let labels: Vec<usize> = (0..shape.classes).collect();
        store.finish_run(
            &run_id,
            &RunResult {
                best_epoch: Some(shape.epochs),
                selection: None,
                test_accuracy: Some(1.0),
                confusion: Some((
                    ConfusionMatrix::new(shape.classes, &labels, &labels),
                    classes.clone(),
                    classes.clone(),
                )),
                open_set: None,
                head: Some(StoredHead {
                    safetensors: vec![7; shape.head_bytes],
                    meta_json: "{}".into(),
                }),
            },
        )?;
        store.complete_trial(&claim, worker)?;
    }
    Ok(())
}

fn epoch_metrics(epoch: usize) -> EpochMetrics {
    EpochMetrics {
        epoch,
        loss: 1.0 / epoch as f64,
        accuracy: 0.9,
        val_loss: Some(0.5),
        val_accuracy: Some(0.9),
        seconds: 0.01,
    }
}
