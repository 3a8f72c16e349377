//! The store's schema as an ordered list of migrations; `PRAGMA user_version` records how many
//! have run. Append new migrations; never edit a released one.

use rusqlite::{Connection, OptionalExtension};

pub const MIGRATIONS: &[&str] = &[
    // 1: runs, their epochs, per-class figures and confusion cells.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        experiment TEXT NOT NULL,
        config_yaml TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        weights_hash TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        best_epoch INTEGER,
        test_accuracy REAL,
        error TEXT,
        tags TEXT NOT NULL DEFAULT '',
        notes TEXT
    );
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE epochs (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        loss REAL NOT NULL,
        accuracy REAL NOT NULL,
        val_loss REAL,
        val_accuracy REAL,
        seconds REAL NOT NULL,
        PRIMARY KEY (run_id, epoch)
    );
    CREATE TABLE classes (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        label TEXT NOT NULL,
        precision REAL,
        recall REAL,
        support INTEGER NOT NULL,
        PRIMARY KEY (run_id, idx)
    );
    CREATE TABLE confusion (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        actual INTEGER NOT NULL,
        predicted INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (run_id, actual, predicted)
    );",
    // 2: when a run was last known alive (its last epoch), so a run whose process died gets
    // that as its end time rather than the moment the next command noticed.
    "ALTER TABLE runs ADD COLUMN alive_at TEXT;",
    // 3: sweeps and their trials; runs gain the status `pruned` (a CHECK constraint cannot be
    // altered, so the table is rebuilt) and the validation figures they were selected by.
    "CREATE TABLE runs_v3 (
        id TEXT PRIMARY KEY,
        experiment TEXT NOT NULL,
        config_yaml TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        weights_hash TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted', 'pruned')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        best_epoch INTEGER,
        test_accuracy REAL,
        error TEXT,
        tags TEXT NOT NULL DEFAULT '',
        notes TEXT,
        alive_at TEXT,
        selection_kind TEXT CHECK (selection_kind IN ('cv', 'val')),
        selection_loss REAL,
        selection_accuracy REAL
    );
    INSERT INTO runs_v3 (id, experiment, config_yaml, config_hash, dataset_hash, weights_hash, seed,
        status, started_at, ended_at, best_epoch, test_accuracy, error, tags, notes, alive_at)
    SELECT id, experiment, config_yaml, config_hash, dataset_hash, weights_hash, seed,
        status, started_at, ended_at, best_epoch, test_accuracy, error, tags, notes, alive_at FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_v3 RENAME TO runs;
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE sweeps (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        file TEXT NOT NULL,
        spec_yaml TEXT NOT NULL,
        experiment_yaml TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        method TEXT NOT NULL,
        metric TEXT NOT NULL,
        goal TEXT NOT NULL,
        total_trials INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE trials (
        sweep_id TEXT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        params_json TEXT NOT NULL,
        params_hash TEXT NOT NULL,
        run_id TEXT REFERENCES runs (id) ON DELETE SET NULL,
        PRIMARY KEY (sweep_id, number),
        UNIQUE (sweep_id, params_hash)
    );
    CREATE INDEX trials_run ON trials (run_id);",
    // 4: open-set calibration: each run's threshold, its figures, and every score they came
    // from (a JSON report, read whole by `show` and the run screen).
    "CREATE TABLE open_set (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        far REAL NOT NULL,
        threshold REAL NOT NULL,
        dir REAL,
        fpir REAL,
        dir_at_far REAL,
        report_json TEXT NOT NULL
    );",
    // 5: sweeps queued for workers (`sweep --queue-only`, `facelab worker`): each trial's place
    // in the queue (`queued`, `claimed` by a worker that heartbeats it, `done`), with times by
    // the database's clock in seconds since the Unix epoch; and trained heads kept in the
    // store, so a run can be used from any machine that reaches it.
    "ALTER TABLE sweeps ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE trials ADD COLUMN state TEXT NOT NULL DEFAULT 'claimed'
        CHECK (state IN ('queued', 'claimed', 'done'));
    ALTER TABLE trials ADD COLUMN worker TEXT;
    ALTER TABLE trials ADD COLUMN heartbeat_at REAL;
    ALTER TABLE trials ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX trials_state ON trials (sweep_id, state, number);
    CREATE TABLE heads (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        safetensors BLOB NOT NULL,
        meta_json TEXT NOT NULL
    );",
];

/// Brings the database up to the latest schema. Foreign keys are off while migrations run (as
/// SQLite's guide to rebuilding a table asks), so rebuilding `runs` keeps the rows that refer
/// to it; each migration ends with a foreign key check before it commits. Each migration runs
/// under the write lock and only if the version is still below it, so processes that open a
/// fresh file at once migrate it once.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current >= MIGRATIONS.len() {
        return Ok(());
    }
    conn.pragma_update(None, "foreign_keys", false)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        // Take the write lock first and look again: another process opening the same fresh
        // file at the same moment may have run this migration while we waited for it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now: usize = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if now > i {
            tx.commit()?;
            continue;
        }
        tx.execute_batch(sql)?;
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!(
                    "migration {} left rows in {table} that refer to nothing",
                    i + 1
                )),
            ));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    conn.pragma_update(None, "foreign_keys", true)
}
