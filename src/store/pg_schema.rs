//! The store's schema on PostgreSQL: the same tables as SQLite's latest version (see `schema`),
//! in PostgreSQL's types, as its own list of migrations recorded in `facelab_schema`. Opening
//! takes a transaction-scoped advisory lock first, so two processes opening a fresh database
//! at once migrate it once, one after the other.

/// Serialises facelab's migrations on one PostgreSQL database ("facelab" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6163_656c_6162;

pub const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's versions 1-4 hold.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        experiment TEXT NOT NULL,
        config_yaml TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        dataset_hash TEXT NOT NULL,
        weights_hash TEXT NOT NULL,
        seed BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'interrupted', 'pruned')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        best_epoch BIGINT,
        test_accuracy DOUBLE PRECISION,
        error TEXT,
        tags TEXT NOT NULL DEFAULT '',
        notes TEXT,
        alive_at TEXT,
        selection_kind TEXT CHECK (selection_kind IN ('cv', 'val')),
        selection_loss DOUBLE PRECISION,
        selection_accuracy DOUBLE PRECISION
    );
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE epochs (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        epoch BIGINT NOT NULL,
        loss DOUBLE PRECISION NOT NULL,
        accuracy DOUBLE PRECISION NOT NULL,
        val_loss DOUBLE PRECISION,
        val_accuracy DOUBLE PRECISION,
        seconds DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (run_id, epoch)
    );
    CREATE TABLE classes (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        idx BIGINT NOT NULL,
        name TEXT NOT NULL,
        label TEXT NOT NULL,
        precision DOUBLE PRECISION,
        recall DOUBLE PRECISION,
        support BIGINT NOT NULL,
        PRIMARY KEY (run_id, idx)
    );
    CREATE TABLE confusion (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        actual BIGINT NOT NULL,
        predicted BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (run_id, actual, predicted)
    );
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
        total_trials BIGINT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE trials (
        sweep_id TEXT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
        number BIGINT NOT NULL,
        params_json TEXT NOT NULL,
        params_hash TEXT NOT NULL,
        run_id TEXT REFERENCES runs (id) ON DELETE SET NULL,
        PRIMARY KEY (sweep_id, number),
        UNIQUE (sweep_id, params_hash)
    );
    CREATE INDEX trials_run ON trials (run_id);
    CREATE TABLE open_set (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        far DOUBLE PRECISION NOT NULL,
        threshold DOUBLE PRECISION NOT NULL,
        dir DOUBLE PRECISION,
        fpir DOUBLE PRECISION,
        dir_at_far DOUBLE PRECISION,
        report_json TEXT NOT NULL
    );",
    // 2: SQLite's version 5: the worker queue and heads kept in the store.
    "ALTER TABLE sweeps ADD COLUMN queued BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE trials ADD COLUMN state TEXT NOT NULL DEFAULT 'claimed'
        CHECK (state IN ('queued', 'claimed', 'done'));
    ALTER TABLE trials ADD COLUMN worker TEXT;
    ALTER TABLE trials ADD COLUMN heartbeat_at DOUBLE PRECISION;
    ALTER TABLE trials ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX trials_state ON trials (sweep_id, state, number);
    CREATE TABLE heads (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        safetensors BYTEA NOT NULL,
        meta_json TEXT NOT NULL
    );",
];

/// Brings the database up to the latest version, in `schema` (created if absent; then the
/// session's search path) or the connection's default one. `schema` must be a plain name.
pub fn migrate(client: &mut postgres::Client, schema: Option<&str>) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    if let Some(schema) = schema {
        // Session-wide (not LOCAL): the store's later queries use the schema too.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
        ))?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS facelab_schema (version BIGINT NOT NULL)")?;
    let current = tx
        .query_opt("SELECT version FROM facelab_schema", &[])?
        .map_or(0, |row| row.get::<_, i64>(0)) as usize;
    if current >= MIGRATIONS.len() {
        return tx.commit();
    }
    for sql in &MIGRATIONS[current..] {
        tx.batch_execute(sql)?;
    }
    tx.execute("DELETE FROM facelab_schema", &[])?;
    tx.execute(
        "INSERT INTO facelab_schema (version) VALUES ($1)",
        &[&(MIGRATIONS.len() as i64)],
    )?;
    tx.commit()
}
