//! Made-up runs for tests and for `facelab bench tui`, which needs a store of 10,000 runs to
//! measure against. Nothing here touches a real workspace unless the caller passes its store.

use super::{NewRun, RunRecord, RunResult, RunStatus, RunStore};
use crate::error::Result;
use crate::train::EpochMetrics;

/// A finished run record with the given figures (validation accuracy `val_acc`, loss
/// `1 - val_acc`), tagged `baseline`.
pub fn finished_run(id: &str, experiment: &str, val_acc: f64, started: &str) -> RunRecord {
    RunRecord {
        id: id.into(),
        experiment: experiment.into(),
        status: RunStatus::Finished,
        started_at: started.into(),
        ended_at: Some(started.into()),
        seed: 42,
        config_hash: "c".into(),
        dataset_hash: "d".into(),
        weights_hash: "w".into(),
        epochs: 3,
        best_epoch: Some(2),
        loss: Some(0.1),
        accuracy: Some(0.9),
        val_loss: Some(1.0 - val_acc),
        val_accuracy: Some(val_acc),
        best_val_loss: Some(1.0 - val_acc),
        best_val_accuracy: Some(val_acc),
        test_accuracy: Some(val_acc),
        error: None,
        tags: vec!["baseline".into()],
        notes: None,
        selection: None,
        sweep: None,
        config_yaml: format!("name: {experiment}\n"),
    }
}

/// Writes `runs` finished runs of three epochs each into `store`, in one transaction.
pub fn fill_with_runs(store: &RunStore, runs: usize) -> Result<()> {
    store.in_transaction(|s| {
        for i in 0..runs {
            let id = format!("{i:08x}");
            s.create_run(&NewRun {
                id: id.clone(),
                experiment: format!("experiment-{}", i % 17),
                config_yaml: format!("name: e{i}\ntrain:\n  epochs: 3\n"),
                config_hash: "c".into(),
                dataset_hash: "d".into(),
                weights_hash: "w".into(),
                seed: i as u64,
                trial: None,
            })?;
            for epoch in 1..=3 {
                let f = (i % 100) as f64 / 100.0;
                s.add_epoch(
                    &id,
                    &EpochMetrics {
                        epoch,
                        loss: 1.0 - f,
                        accuracy: f,
                        val_loss: Some(1.1 - f),
                        val_accuracy: Some(f),
                        seconds: 0.2,
                    },
                )?;
            }
            s.finish_run(
                &id,
                &RunResult {
                    best_epoch: Some(3),
                    selection: None,
                    test_accuracy: Some(0.9),
                    confusion: None,
                    open_set: None,
                    head: None,
                },
            )?;
        }
        Ok(())
    })
}
