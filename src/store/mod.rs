//! The run store: every run, its per-epoch metrics and its confusion matrix in `facelab.db`
//! (SQLite in WAL mode, so a second facelab process can read while one trains). The schema is
//! embedded and versioned by `PRAGMA user_version`; each migration runs in a transaction.
//! Writes that belong together (a run's final figures and its confusion matrix) share one
//! transaction, so a run killed at any point leaves the database consistent.

mod columns;
pub mod fixtures;
mod records;
mod schema;
mod sweeps;

pub use columns::{sort_rows, sort_runs, Cell, RunColumn};
pub use records::{
    NewRun, RunRecord, RunResult, RunStatus, Selection, SelectionKind, StoredConfusion, TrialOf,
};
pub use sweeps::{SweepRecord, TrialRecord};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::train::open_set::OpenSetReport;
use crate::train::EpochMetrics;

/// The fewest characters of a run id that select a run.
pub const MIN_PREFIX: usize = 4;

pub struct RunStore {
    conn: Connection,
    path: PathBuf,
}

/// One store connection shared by the threads of a process (a sweep's parallel trials): every
/// write goes through it in turn, so the threads never contend for SQLite's write lock.
pub struct SharedStore(std::sync::Mutex<RunStore>);

impl SharedStore {
    pub fn new(store: RunStore) -> Self {
        SharedStore(std::sync::Mutex::new(store))
    }

    /// The store, for one short piece of work.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, RunStore> {
        // A thread that panicked mid-write left its transaction to roll back; the
        // connection itself is still good.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RunStore {
    /// Opens (creating and migrating as needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| store_error(path, e))?;
        Self::setup(conn, path, true)
    }

    /// A private in-memory store (tests).
    pub fn open_in_memory() -> Result<Self> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| store_error(path, e))?;
        Self::setup(conn, path, false)
    }

    fn setup(mut conn: Connection, path: &Path, wal: bool) -> Result<Self> {
        let err = |e| store_error(path, e);
        // A second process (a training run, the TUI) may hold the write lock briefly.
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(err)?;
            // In WAL mode NORMAL syncs at checkpoints, not at every commit: a crash or power
            // cut can lose the last few epochs written but never corrupts the store, and a
            // sweep's per-epoch writes stop costing a disk flush each.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(err)?;
        }
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        schema::migrate(&mut conn).map_err(err)?;
        Ok(RunStore {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |e| store_error(&self.path, e)
    }

    pub fn create_run(&self, run: &NewRun) -> Result<()> {
        self.in_transaction(|s| s.insert_run(run))
    }

    fn insert_run(&self, run: &NewRun) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO runs (id, experiment, config_yaml, config_hash, dataset_hash, weights_hash, seed, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
                params![
                    run.id,
                    run.experiment,
                    run.config_yaml,
                    run.config_hash,
                    run.dataset_hash,
                    run.weights_hash,
                    run.seed as i64,
                    now()
                ],
            )
            .map_err(self.err())?;
        if let Some(trial) = &run.trial {
            self.conn
                .execute(
                    "UPDATE trials SET run_id = ?3 WHERE sweep_id = ?1 AND number = ?2",
                    params![trial.sweep_id, trial.number as i64, run.id],
                )
                .map_err(self.err())?;
        }
        Ok(())
    }

    pub fn add_epoch(&self, run_id: &str, m: &EpochMetrics) -> Result<()> {
        self.in_transaction(|s| s.insert_epoch(run_id, m))
    }

    fn insert_epoch(&self, run_id: &str, m: &EpochMetrics) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO epochs (run_id, epoch, loss, accuracy, val_loss, val_accuracy, seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![run_id, m.epoch as i64, m.loss, m.accuracy, m.val_loss, m.val_accuracy, m.seconds],
            )
            .map_err(self.err())?;
        self.conn
            .execute(
                "UPDATE runs SET alive_at = ?2 WHERE id = ?1",
                params![run_id, now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks a run finished with its closing figures and confusion matrix, in one transaction.
    pub fn finish_run(&self, run_id: &str, result: &RunResult) -> Result<()> {
        self.in_transaction(|s| {
            let err = s.err();
            s.conn
                .execute(
                    "UPDATE runs SET status = 'finished', ended_at = ?2, best_epoch = ?3, test_accuracy = ?4,
                     selection_kind = ?5, selection_loss = ?6, selection_accuracy = ?7 WHERE id = ?1",
                    params![
                        run_id,
                        now(),
                        result.best_epoch.map(|e| e as i64),
                        result.test_accuracy,
                        result.selection.map(|s| s.kind.as_str()),
                        result.selection.map(|s| s.loss),
                        result.selection.map(|s| s.accuracy)
                    ],
                )
                .map_err(&err)?;
            if let Some(report) = &result.open_set {
                let figures = report.figures();
                let json = serde_json::to_string(report).expect("a report serialises");
                s.conn
                    .execute(
                        "INSERT INTO open_set (run_id, far, threshold, dir, fpir, dir_at_far, report_json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![run_id, report.far, report.threshold, figures.dir, figures.fpir, figures.dir_at_far, json],
                    )
                    .map_err(&err)?;
            }
            let Some((matrix, classes, labels)) = &result.confusion else {
                return Ok(());
            };
            let per_class = matrix.per_class();
            for (i, (name, label)) in classes.iter().zip(labels).enumerate() {
                s.conn
                    .execute(
                        "INSERT INTO classes (run_id, idx, name, label, precision, recall, support) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![run_id, i as i64, name, label, per_class[i].precision, per_class[i].recall, per_class[i].support],
                    )
                    .map_err(&err)?;
                for (j, &count) in matrix.counts[i].iter().enumerate() {
                    s.conn
                        .execute(
                            "INSERT INTO confusion (run_id, actual, predicted, count) VALUES (?1, ?2, ?3, ?4)",
                            params![run_id, i as i64, j as i64, count],
                        )
                        .map_err(&err)?;
                }
            }
            Ok(())
        })
    }

    /// A run's open-set report, when it calibrated a threshold.
    pub fn open_set(&self, run_id: &str) -> Result<Option<OpenSetReport>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT report_json FROM open_set WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        json.map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                Error::InvalidArgument(format!(
                    "the open-set report of run {run_id} in the store does not read ({e}); train the run again"
                ))
            })
        })
        .transpose()
    }

    /// Ends a run that did not finish (`Failed` or `Interrupted`), keeping why.
    pub fn end_run(&self, run_id: &str, status: RunStatus, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, ended_at = ?3, error = ?4 WHERE id = ?1",
                params![run_id, status.as_str(), now(), error],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks `running` runs whose process is gone (`is_alive` says no) as interrupted.
    pub fn mark_interrupted(&self, is_alive: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let running: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("SELECT id FROM runs WHERE status = 'running'")
                .map_err(self.err())?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
            rows.collect::<rusqlite::Result<_>>().map_err(self.err())?
        };
        let dead: Vec<String> = running.into_iter().filter(|id| !is_alive(id)).collect();
        for id in &dead {
            self.conn
                .execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, alive_at, started_at),
                     error = COALESCE(error, 'the process ended before the run finished') WHERE id = ?1 AND status = 'running'",
                    params![id],
                )
                .map_err(self.err())?;
        }
        Ok(dead)
    }

    /// All runs, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.query_runs("ORDER BY r.started_at DESC, r.id", params![])
    }

    /// The run whose id is `id_or_prefix`, or the only one starting with it. A prefix must
    /// be at least [`MIN_PREFIX`] hex digits and is matched literally, so an empty argument
    /// (an unset shell variable) or a wildcard never selects a run.
    pub fn run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let prefix = id_prefix("run", id_or_prefix)?;
        let mut found = self.query_runs(
            "WHERE substr(r.id, 1, length(?1)) = ?1 ORDER BY r.id",
            params![prefix],
        )?;
        if let Some(exact) = found.iter().position(|r| r.id == prefix) {
            return Ok(found.swap_remove(exact));
        }
        match found.len() {
            0 => Err(Error::RunNotFound(id_or_prefix.to_owned())),
            1 => Ok(found.remove(0)),
            _ => Err(Error::RunAmbiguous {
                prefix: id_or_prefix.to_owned(),
                matches: found
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn query_runs(&self, tail: &str, args: impl rusqlite::Params) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT r.id, r.experiment, r.status, r.started_at, r.ended_at, r.seed, r.config_hash, r.dataset_hash,
                    r.weights_hash, r.best_epoch, r.test_accuracy, r.error, r.tags, r.notes, r.config_yaml,
                    (SELECT COUNT(*) FROM epochs e WHERE e.run_id = r.id),
                    (SELECT loss FROM epochs e WHERE e.run_id = r.id ORDER BY epoch DESC LIMIT 1),
                    (SELECT accuracy FROM epochs e WHERE e.run_id = r.id ORDER BY epoch DESC LIMIT 1),
                    (SELECT val_loss FROM epochs e WHERE e.run_id = r.id ORDER BY epoch DESC LIMIT 1),
                    (SELECT val_accuracy FROM epochs e WHERE e.run_id = r.id ORDER BY epoch DESC LIMIT 1),
                    (SELECT MIN(val_loss) FROM epochs e WHERE e.run_id = r.id),
                    (SELECT MAX(val_accuracy) FROM epochs e WHERE e.run_id = r.id),
                    r.selection_kind, r.selection_loss, r.selection_accuracy, t.sweep_id, t.number
             FROM runs r LEFT JOIN trials t ON t.run_id = r.id {tail}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err())?;
        let rows = stmt
            .query_map(args, |r| {
                let tags: String = r.get(12)?;
                Ok(RunRecord {
                    id: r.get(0)?,
                    experiment: r.get(1)?,
                    status: RunStatus::parse(&r.get::<_, String>(2)?),
                    started_at: r.get(3)?,
                    ended_at: r.get(4)?,
                    seed: r.get::<_, i64>(5)? as u64,
                    config_hash: r.get(6)?,
                    dataset_hash: r.get(7)?,
                    weights_hash: r.get(8)?,
                    best_epoch: r.get::<_, Option<i64>>(9)?.map(|e| e as usize),
                    test_accuracy: r.get(10)?,
                    error: r.get(11)?,
                    tags: tags
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    notes: r.get(13)?,
                    config_yaml: r.get(14)?,
                    epochs: r.get::<_, i64>(15)? as usize,
                    loss: r.get(16)?,
                    accuracy: r.get(17)?,
                    val_loss: r.get(18)?,
                    val_accuracy: r.get(19)?,
                    best_val_loss: r.get(20)?,
                    best_val_accuracy: r.get(21)?,
                    selection: match (
                        r.get::<_, Option<String>>(22)?
                            .as_deref()
                            .and_then(SelectionKind::parse),
                        r.get::<_, Option<f64>>(23)?,
                        r.get::<_, Option<f64>>(24)?,
                    ) {
                        (Some(kind), Some(loss), Some(accuracy)) => Some(Selection {
                            kind,
                            loss,
                            accuracy,
                        }),
                        _ => None,
                    },
                    sweep: match (
                        r.get::<_, Option<String>>(25)?,
                        r.get::<_, Option<i64>>(26)?,
                    ) {
                        (Some(sweep_id), Some(number)) => Some(TrialOf {
                            sweep_id,
                            number: number as usize,
                        }),
                        _ => None,
                    },
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn epochs(&self, run_id: &str) -> Result<Vec<EpochMetrics>> {
        let mut stmt = self
            .conn
            .prepare("SELECT epoch, loss, accuracy, val_loss, val_accuracy, seconds FROM epochs WHERE run_id = ?1 ORDER BY epoch")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(EpochMetrics {
                    epoch: r.get::<_, i64>(0)? as usize,
                    loss: r.get(1)?,
                    accuracy: r.get(2)?,
                    val_loss: r.get(3)?,
                    val_accuracy: r.get(4)?,
                    seconds: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    pub fn confusion(&self, run_id: &str) -> Result<Option<StoredConfusion>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, label, precision, recall FROM classes WHERE run_id = ?1 ORDER BY idx",
            )
            .map_err(self.err())?;
        let classes: Vec<(String, String, Option<f64>, Option<f64>)> = stmt
            .query_map([run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.err())?
            .collect::<rusqlite::Result<_>>()
            .map_err(self.err())?;
        if classes.is_empty() {
            return Ok(None);
        }
        let n = classes.len();
        let mut counts = vec![vec![0u32; n]; n];
        let mut stmt = self
            .conn
            .prepare("SELECT actual, predicted, count FROM confusion WHERE run_id = ?1")
            .map_err(self.err())?;
        let cells = stmt
            .query_map([run_id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get::<_, i64>(1)? as usize,
                    r.get::<_, u32>(2)?,
                ))
            })
            .map_err(self.err())?;
        for cell in cells {
            let (a, p, c) = cell.map_err(self.err())?;
            if a < n && p < n {
                counts[a][p] = c;
            }
        }
        Ok(Some(StoredConfusion {
            classes: classes.iter().map(|c| c.0.clone()).collect(),
            labels: classes.iter().map(|c| c.1.clone()).collect(),
            precision: classes.iter().map(|c| c.2).collect(),
            recall: classes.iter().map(|c| c.3).collect(),
            counts,
        }))
    }

    /// Deletes a run and everything recorded for it.
    pub fn delete_run(&self, run_id: &str) -> Result<()> {
        let deleted = self
            .conn
            .execute("DELETE FROM runs WHERE id = ?1", [run_id])
            .map_err(self.err())?;
        if deleted == 0 {
            return Err(Error::RunNotFound(run_id.to_owned()));
        }
        Ok(())
    }

    pub fn set_tags(&self, run_id: &str, tags: &[String]) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET tags = ?2 WHERE id = ?1",
                params![run_id, tags.join(",")],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn set_notes(&self, run_id: &str, notes: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET notes = ?2 WHERE id = ?1",
                params![run_id, notes],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Runs `f` in one transaction: all of its writes land, or none. A savepoint, so these
    /// nest (a bulk import can wrap calls that are transactions of their own).
    pub fn in_transaction<T>(&self, f: impl FnOnce(&RunStore) -> Result<T>) -> Result<T> {
        self.conn
            .execute_batch("SAVEPOINT facelab")
            .map_err(self.err())?;
        match f(self) {
            Ok(value) => {
                self.conn
                    .execute_batch("RELEASE facelab")
                    .map_err(self.err())?;
                Ok(value)
            }
            Err(e) => {
                let _ = self
                    .conn
                    .execute_batch("ROLLBACK TO facelab; RELEASE facelab");
                Err(e)
            }
        }
    }

    /// Whether a run id is taken (ids are random; collisions are retried).
    pub fn exists(&self, run_id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [run_id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err())
    }
}

/// `id_or_prefix` lower-cased, if it can select a `what` (run or sweep): at least
/// [`MIN_PREFIX`] hex digits, so an empty argument or a wildcard never selects anything.
fn id_prefix(what: &str, id_or_prefix: &str) -> Result<String> {
    let is_hex = id_or_prefix.chars().all(|c| c.is_ascii_hexdigit());
    if id_or_prefix.len() < MIN_PREFIX || !is_hex {
        return Err(Error::InvalidArgument(format!(
            "{what} {id_or_prefix:?}: give at least {MIN_PREFIX} hex digits of a {what} id (`facelab {what}s` lists them)"
        )));
    }
    Ok(id_or_prefix.to_ascii_lowercase())
}

fn store_error(path: &Path, source: rusqlite::Error) -> Error {
    Error::Store {
        path: path.to_owned(),
        cause: source,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
