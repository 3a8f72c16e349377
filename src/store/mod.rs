//! The run store: every run, its per-epoch metrics and its confusion matrix in `facelab.db`
//! (SQLite in WAL mode, so a second facelab process can read while one trains). The schema is
//! embedded and versioned by `PRAGMA user_version`; each migration runs in a transaction.
//! Writes that belong together (a run's final figures and its confusion matrix) share one
//! transaction, so a run killed at any point leaves the database consistent.

mod columns;
mod copy;
pub(crate) mod db;
pub mod fixtures;
mod heads;
mod pg_schema;
mod queue;
mod records;
mod schema;
mod sweeps;

pub use columns::{sort_rows, sort_runs, Cell, RunColumn};
pub use copy::{copy_store, CopyReport};
pub use heads::StoredHead;
pub use queue::{Claim, QueueCounts, QueuedTrial};
pub use records::{
    NewRun, RunRecord, RunResult, RunStatus, Selection, SelectionKind, StoredConfusion, TrialOf,
};
pub use sweeps::{SweepRecord, TrialRecord};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

use db::{args, Db, DbError, Row, Value};

use crate::error::{Error, Result};
use crate::train::open_set::OpenSetReport;
use crate::train::EpochMetrics;

/// The fewest characters of a run id that select a run.
pub const MIN_PREFIX: usize = 4;

pub struct RunStore {
    db: Db,
    /// The SQLite file, or the server's URL without its password, for messages.
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

    /// Opens the store at `location`: a PostgreSQL URL (`postgres://user@host/db`), else a
    /// SQLite file.
    pub fn open_location(location: &str) -> Result<Self> {
        if is_server_url(location) {
            Self::open_postgres(location, None)
        } else {
            Self::open(Path::new(location))
        }
    }

    /// Opens (creating and migrating as needed) the store on a PostgreSQL server, in `schema`
    /// (created if absent) or the connection's default search path.
    pub fn open_postgres(url: &str, schema: Option<&str>) -> Result<Self> {
        let shown = PathBuf::from(redacted_url(url));
        let err = |e: postgres::Error| db_error(&shown, DbError::Postgres(e));
        let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(err)?;
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Error::InvalidArgument(format!(
                    "store schema '{schema}': use letters, digits and underscores"
                )));
            }
        }
        pg_schema::migrate(&mut client, schema).map_err(err)?;
        Ok(RunStore {
            db: Db::postgres(client),
            path: shown,
        })
    }

    /// Whether the store is a server that other machines share: liveness of its runs cannot be
    /// judged by this machine's lock files.
    pub fn is_shared(&self) -> bool {
        matches!(self.db, Db::Postgres { .. })
    }

    /// Drops the schema this store's tables live in, with everything in it (a throwaway
    /// schema of a benchmark); refuses the default `public` schema; nothing on SQLite.
    pub fn drop_own_schema(&self) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let schema = self.rows("SELECT current_schema()", &[])?[0].text(0);
        if schema == "public" || schema.is_empty() {
            return Err(Error::InvalidArgument(
                "refusing to drop the public schema".into(),
            ));
        }
        self.db
            .batch(&format!("DROP SCHEMA {schema} CASCADE"))
            .map_err(self.err())
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
            enter_wal_mode(&conn).map_err(err)?;
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
            db: Db::Sqlite(conn),
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl Fn(DbError) -> Error + '_ {
        move |e| db_error(&self.path, e)
    }

    /// Every row of a query, or the store's error.
    fn rows(&self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        self.db.query(sql, args).map_err(self.err())
    }

    fn exec(&self, sql: &str, args: &[Value]) -> Result<usize> {
        self.db.execute(sql, args).map_err(self.err())
    }

    pub fn create_run(&self, run: &NewRun) -> Result<()> {
        self.in_transaction(|s| s.insert_run(run))
    }

    fn insert_run(&self, run: &NewRun) -> Result<()> {
        self.exec(
            "INSERT INTO runs (id, experiment, config_yaml, config_hash, dataset_hash, weights_hash, seed, status, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8)",
            args![
                &run.id,
                &run.experiment,
                &run.config_yaml,
                &run.config_hash,
                &run.dataset_hash,
                &run.weights_hash,
                run.seed as i64,
                now()
            ],
        )?;
        if let Some(trial) = &run.trial {
            self.exec(
                "UPDATE trials SET run_id = ?3 WHERE sweep_id = ?1 AND number = ?2",
                args![&trial.sweep_id, trial.number, &run.id],
            )?;
        }
        Ok(())
    }

    /// Records one epoch (replacing a row for the same epoch) and when the run was last seen
    /// alive, in one transaction.
    pub fn add_epoch(&self, run_id: &str, m: &EpochMetrics) -> Result<()> {
        self.in_transaction(|s| s.insert_epoch(run_id, m))
    }

    fn insert_epoch(&self, run_id: &str, m: &EpochMetrics) -> Result<()> {
        self.exec(
            "INSERT INTO epochs (run_id, epoch, loss, accuracy, val_loss, val_accuracy, seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (run_id, epoch) DO UPDATE SET loss = excluded.loss, accuracy = excluded.accuracy,
             val_loss = excluded.val_loss, val_accuracy = excluded.val_accuracy, seconds = excluded.seconds",
            args![run_id, m.epoch, m.loss, m.accuracy, m.val_loss, m.val_accuracy, m.seconds],
        )?;
        self.exec(
            "UPDATE runs SET alive_at = ?2 WHERE id = ?1",
            args![run_id, now()],
        )?;
        Ok(())
    }

    /// Marks a run finished with its closing figures, confusion matrix and open-set report, in
    /// one transaction.
    pub fn finish_run(&self, run_id: &str, result: &RunResult) -> Result<()> {
        self.in_transaction(|s| {
            s.exec(
                "UPDATE runs SET status = 'finished', ended_at = ?2, best_epoch = ?3, test_accuracy = ?4,
                 selection_kind = ?5, selection_loss = ?6, selection_accuracy = ?7 WHERE id = ?1",
                args![
                    run_id,
                    now(),
                    result.best_epoch,
                    result.test_accuracy,
                    result.selection.map(|s| s.kind.as_str()),
                    result.selection.map(|s| s.loss),
                    result.selection.map(|s| s.accuracy)
                ],
            )?;
            if let Some(head) = &result.head {
                s.put_head(run_id, head)?;
            }
            if let Some(report) = &result.open_set {
                let figures = report.figures();
                let json = serde_json::to_string(report).expect("a report serialises");
                s.exec(
                    "INSERT INTO open_set (run_id, far, threshold, dir, fpir, dir_at_far, report_json)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    args![run_id, report.far, report.threshold, figures.dir, figures.fpir, figures.dir_at_far, json],
                )?;
            }
            let Some((matrix, classes, labels)) = &result.confusion else {
                return Ok(());
            };
            let per_class = matrix.per_class();
            for (i, (name, label)) in classes.iter().zip(labels).enumerate() {
                s.exec(
                    "INSERT INTO classes (run_id, idx, name, label, precision, recall, support) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    args![run_id, i, name, label, per_class[i].precision, per_class[i].recall, per_class[i].support],
                )?;
                for (j, &count) in matrix.counts[i].iter().enumerate() {
                    s.exec(
                        "INSERT INTO confusion (run_id, actual, predicted, count) VALUES (?1, ?2, ?3, ?4)",
                        args![run_id, i, j, count],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// A run's open-set report, when it calibrated a threshold.
    pub fn open_set(&self, run_id: &str) -> Result<Option<OpenSetReport>> {
        let rows = self.rows(
            "SELECT report_json FROM open_set WHERE run_id = ?1",
            args![run_id],
        )?;
        rows.first()
            .map(|row| {
                serde_json::from_str(&row.text(0)).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "the open-set report of run {run_id} in the store does not read ({e}); train the run again"
                    ))
                })
            })
            .transpose()
    }

    /// Ends a run that did not finish (`Failed` or `Interrupted`), keeping why.
    pub fn end_run(&self, run_id: &str, status: RunStatus, error: &str) -> Result<()> {
        self.exec(
            "UPDATE runs SET status = ?2, ended_at = ?3, error = ?4 WHERE id = ?1",
            args![run_id, status.as_str(), now(), error],
        )?;
        Ok(())
    }

    /// Marks `running` runs whose process is gone (`is_alive` says no) as interrupted.
    pub fn mark_interrupted(&self, is_alive: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        let running: Vec<String> = self
            .rows("SELECT id FROM runs WHERE status = 'running'", &[])?
            .iter()
            .map(|r| r.text(0))
            .collect();
        let dead: Vec<String> = running.into_iter().filter(|id| !is_alive(id)).collect();
        for id in &dead {
            // The run ended when it was last seen alive, not when this command noticed.
            self.exec(
                "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, alive_at, started_at),
                 error = COALESCE(error, 'the process ended before the run finished') WHERE id = ?1 AND status = 'running'",
                args![id],
            )?;
        }
        Ok(dead)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.query_runs("ORDER BY r.started_at DESC, r.id", &[])
    }

    /// The run with this id, or the only run whose id starts with it.
    pub fn run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let prefix = id_prefix("run", id_or_prefix)?;
        let mut found = self.query_runs(
            "WHERE substr(r.id, 1, length(CAST(?1 AS TEXT))) = CAST(?1 AS TEXT) ORDER BY r.id",
            args![&prefix],
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

    /// Runs with their latest and best epoch figures and their trial, if any.
    fn query_runs(&self, tail: &str, args: &[Value]) -> Result<Vec<RunRecord>> {
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
        Ok(self.rows(&sql, args)?.iter().map(run_record).collect())
    }

    /// Every epoch of a run, in order.
    pub fn epochs(&self, run_id: &str) -> Result<Vec<EpochMetrics>> {
        let rows = self.rows(
            "SELECT epoch, loss, accuracy, val_loss, val_accuracy, seconds FROM epochs WHERE run_id = ?1 ORDER BY epoch",
            args![run_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| EpochMetrics {
                epoch: r.int(0) as usize,
                loss: r.real(1),
                accuracy: r.real(2),
                val_loss: r.opt_real(3),
                val_accuracy: r.opt_real(4),
                seconds: r.real(5),
            })
            .collect())
    }

    /// A run's test confusion matrix with its per-class figures, if it has one.
    pub fn confusion(&self, run_id: &str) -> Result<Option<StoredConfusion>> {
        let classes = self.rows(
            "SELECT name, label, precision, recall FROM classes WHERE run_id = ?1 ORDER BY idx",
            args![run_id],
        )?;
        if classes.is_empty() {
            return Ok(None);
        }
        let n = classes.len();
        let mut counts = vec![vec![0u32; n]; n];
        let cells = self.rows(
            "SELECT actual, predicted, count FROM confusion WHERE run_id = ?1",
            args![run_id],
        )?;
        for cell in cells {
            let (a, p) = (cell.int(0) as usize, cell.int(1) as usize);
            if a < n && p < n {
                counts[a][p] = u32::try_from(cell.int(2)).unwrap_or(u32::MAX);
            }
        }
        Ok(Some(StoredConfusion {
            classes: classes.iter().map(|c| c.text(0)).collect(),
            labels: classes.iter().map(|c| c.text(1)).collect(),
            precision: classes.iter().map(|c| c.opt_real(2)).collect(),
            recall: classes.iter().map(|c| c.opt_real(3)).collect(),
            counts,
        }))
    }

    /// Deletes a run with its epochs, classes, confusion cells, tags and notes.
    pub fn delete_run(&self, run_id: &str) -> Result<()> {
        if self.exec("DELETE FROM runs WHERE id = ?1", args![run_id])? == 0 {
            return Err(Error::RunNotFound(run_id.to_owned()));
        }
        Ok(())
    }

    pub fn set_tags(&self, run_id: &str, tags: &[String]) -> Result<()> {
        self.exec(
            "UPDATE runs SET tags = ?2 WHERE id = ?1",
            args![run_id, tags.join(",")],
        )?;
        Ok(())
    }

    pub fn set_notes(&self, run_id: &str, notes: &str) -> Result<()> {
        self.exec(
            "UPDATE runs SET notes = ?2 WHERE id = ?1",
            args![run_id, notes],
        )?;
        Ok(())
    }

    /// Runs `f` in one transaction: all of its writes land, or none. Nested calls are
    /// savepoints (a bulk import can wrap calls that are transactions of their own).
    pub fn in_transaction<T>(&self, f: impl FnOnce(&RunStore) -> Result<T>) -> Result<T> {
        self.bracketed((Db::begin, Db::commit, Db::rollback), f)
    }

    /// Runs `f` between `begin` and `commit`, or `rollback` when it fails.
    fn bracketed<T>(
        &self,
        (begin, commit, rollback): (DbStep, DbStep, DbStep),
        f: impl FnOnce(&RunStore) -> Result<T>,
    ) -> Result<T> {
        begin(&self.db).map_err(self.err())?;
        match f(self) {
            Ok(value) => {
                commit(&self.db).map_err(self.err())?;
                Ok(value)
            }
            Err(e) => {
                let _ = rollback(&self.db);
                Err(e)
            }
        }
    }

    /// Whether a run id is taken (ids are random; collisions are retried).
    pub fn exists(&self, run_id: &str) -> Result<bool> {
        Ok(!self
            .rows("SELECT 1 FROM runs WHERE id = ?1", args![run_id])?
            .is_empty())
    }
}

/// Switches a file to WAL mode (it stays so). The switch needs the file to itself, and SQLite
/// answers "busy" at once rather than waiting when another connection is opening the same
/// fresh file, so it is tried again for up to the busy timeout.
fn enter_wal_mode(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// One step of a transaction's life on a connection (begin, commit or rollback).
type DbStep = fn(&Db) -> std::result::Result<(), DbError>;

/// A run's row as [`RunStore::query_runs`] selects it.
fn run_record(r: &Row) -> RunRecord {
    let tags = r.text(12);
    RunRecord {
        id: r.text(0),
        experiment: r.text(1),
        status: RunStatus::parse(&r.text(2)),
        started_at: r.text(3),
        ended_at: r.opt_text(4),
        seed: r.int(5) as u64,
        config_hash: r.text(6),
        dataset_hash: r.text(7),
        weights_hash: r.text(8),
        best_epoch: r.opt_int(9).map(|e| e as usize),
        test_accuracy: r.opt_real(10),
        error: r.opt_text(11),
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        notes: r.opt_text(13),
        config_yaml: r.text(14),
        epochs: r.int(15) as usize,
        loss: r.opt_real(16),
        accuracy: r.opt_real(17),
        val_loss: r.opt_real(18),
        val_accuracy: r.opt_real(19),
        best_val_loss: r.opt_real(20),
        best_val_accuracy: r.opt_real(21),
        selection: match (
            r.opt_text(22).as_deref().and_then(SelectionKind::parse),
            r.opt_real(23),
            r.opt_real(24),
        ) {
            (Some(kind), Some(loss), Some(accuracy)) => Some(Selection {
                kind,
                loss,
                accuracy,
            }),
            _ => None,
        },
        sweep: match (r.opt_text(25), r.opt_int(26)) {
            (Some(sweep_id), Some(number)) => Some(TrialOf {
                sweep_id,
                number: number as usize,
            }),
            _ => None,
        },
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

/// Whether a store location names a PostgreSQL server rather than a SQLite file.
pub fn is_server_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The URL with any password replaced by `***`, for messages.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn db_error(path: &Path, source: DbError) -> Error {
    match source {
        DbError::Sqlite(e) => store_error(path, e),
        DbError::Postgres(e) => Error::StoreServer {
            url: path.display().to_string(),
            // The server's own words when it sent some ("db error" alone says nothing).
            message: match e.as_db_error() {
                Some(db) => format!("{}: {}", db.severity(), db.message()),
                None => e.to_string(),
            },
        },
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_queue;
