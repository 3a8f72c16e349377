//! Moving a history between stores (`facelab store copy --from A --to B`, SQLite file or
//! PostgreSQL either way): every table in the order its references need, each row inserted
//! unless a row with its key is already there. So copying again, or into a store that already
//! holds some of the runs, neither loses nor duplicates a run: rows present are left as they are.

use super::db::Value;
use super::RunStore;
use crate::error::Result;

/// Each table with its key and the columns both schemas share, parents before children.
const TABLES: &[(&str, &str, &[&str])] = &[
    (
        "sweeps",
        "id",
        &[
            "id",
            "name",
            "file",
            "spec_yaml",
            "experiment_yaml",
            "dataset_hash",
            "method",
            "metric",
            "goal",
            "total_trials",
            "created_at",
            "queued",
        ],
    ),
    (
        "runs",
        "id",
        &[
            "id",
            "experiment",
            "config_yaml",
            "config_hash",
            "dataset_hash",
            "weights_hash",
            "seed",
            "status",
            "started_at",
            "ended_at",
            "best_epoch",
            "test_accuracy",
            "error",
            "tags",
            "notes",
            "alive_at",
            "selection_kind",
            "selection_loss",
            "selection_accuracy",
        ],
    ),
    (
        "trials",
        "sweep_id, number",
        &[
            "sweep_id",
            "number",
            "params_json",
            "params_hash",
            "run_id",
            "state",
            "worker",
            "heartbeat_at",
            "attempts",
        ],
    ),
    (
        "epochs",
        "run_id, epoch",
        &[
            "run_id",
            "epoch",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
        ],
    ),
    (
        "classes",
        "run_id, idx",
        &[
            "run_id",
            "idx",
            "name",
            "label",
            "precision",
            "recall",
            "support",
        ],
    ),
    (
        "confusion",
        "run_id, actual, predicted",
        &["run_id", "actual", "predicted", "count"],
    ),
    (
        "open_set",
        "run_id",
        &[
            "run_id",
            "far",
            "threshold",
            "dir",
            "fpir",
            "dir_at_far",
            "report_json",
        ],
    ),
    ("heads", "run_id", &["run_id", "safetensors", "meta_json"]),
];

/// What a copy did: per table, rows read and rows added.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, usize, usize)>,
}

impl CopyReport {
    /// Runs added (those already there were left as they were).
    pub fn runs_added(&self) -> usize {
        self.tables
            .iter()
            .find(|(t, _, _)| *t == "runs")
            .map_or(0, |(_, _, added)| *added)
    }
}

/// Copies every row of `from` that `to` lacks, in one transaction on `to`.
pub fn copy_store(from: &RunStore, to: &RunStore) -> Result<CopyReport> {
    to.in_transaction(|to| {
        let mut report = CopyReport::default();
        for &(table, key, columns) in TABLES {
            let list = columns.join(", ");
            let rows = from.rows(&format!("SELECT {list} FROM {table}"), &[])?;
            let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
            let insert = format!(
                "INSERT INTO {table} ({list}) VALUES ({}) ON CONFLICT ({key}) DO NOTHING",
                placeholders.join(", ")
            );
            let mut added = 0;
            for row in &rows {
                let values: Vec<Value> = (0..columns.len()).map(|i| row.value(i)).collect();
                added += to.exec(&insert, &values)?;
            }
            report.tables.push((table, rows.len(), added));
        }
        Ok(report)
    })
}
