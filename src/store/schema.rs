//! The store's schema as an ordered list of migrations; `PRAGMA user_version` records how many
//! have run. Append new migrations; never edit a released one.

use rusqlite::Connection;

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
];

/// Brings the database up to the latest schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
