//! A sweep's trials as a work queue for `facelab worker` processes on any number of machines
//! (Optuna's RDB storage and heartbeat design). `sweep --queue-only` writes every trial as a
//! row in state `queued`, with its parameters when they can be drawn up front (grid, random)
//! or without them (TPE: drawn at claim time from every finished trial, whoever ran it). A
//! worker claims the lowest claimable trial with `SELECT ... FOR UPDATE SKIP LOCKED`, so
//! concurrent claimers pass each other instead of queueing on one row, and heartbeats it while
//! it runs. A trial is claimable when queued, or when claimed but its heartbeat is older than
//! the claimer's grace period (its worker died or lost the server): the stale claim's run is
//! deleted and the trial runs again. Only the worker holding a claim can heartbeat or complete
//! it, so a trial ends `done` exactly once. Times are the database's clock, never a worker's.

use super::db::{args, Db, Value};
use super::RunStore;
use crate::error::Result;

/// The `params_hash` of a trial whose parameters are drawn when it is claimed (unique per
/// number, as the column's UNIQUE constraint wants).
const UNSET_PREFIX: &str = "unset:";

/// A trial to enqueue: its number and, when known up front, its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTrial {
    pub number: usize,
    /// `(params_json, params_hash)`.
    pub params: Option<(String, String)>,
}

/// A trial a worker now holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub sweep_id: String,
    pub number: usize,
    /// The trial's parameters as JSON, or `None` when the worker must draw them.
    pub params_json: Option<String>,
    /// How many times the trial has been claimed, this claim included.
    pub attempts: usize,
    /// The run of an earlier claim that never completed, now deleted.
    pub reclaimed_run: Option<String>,
}

/// Trials of some sweeps by where they are in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueCounts {
    pub queued: usize,
    /// Claimed by a worker whose heartbeat is within the grace period.
    pub running: usize,
    /// Claimed by a worker whose heartbeat is older than the grace period: claimable again.
    pub stale: usize,
    pub done: usize,
}

impl QueueCounts {
    /// Something can be claimed now.
    pub fn claimable(&self) -> bool {
        self.queued + self.stale > 0
    }
}

impl RunStore {
    /// Marks a sweep as queued and adds its trials in state `queued`; trials already there are
    /// left as they are (enqueuing again is harmless). Returns how many were added.
    pub fn queue_sweep(&self, sweep_id: &str, trials: &[QueuedTrial]) -> Result<usize> {
        self.in_transaction(|s| {
            s.exec(
                "UPDATE sweeps SET queued = 1 WHERE id = ?1",
                args![sweep_id],
            )?;
            let mut added = 0;
            for t in trials {
                let (json, hash) = t
                    .params
                    .clone()
                    .unwrap_or_else(|| ("{}".to_owned(), format!("{UNSET_PREFIX}{}", t.number)));
                added += s.exec(
                    "INSERT INTO trials (sweep_id, number, params_json, params_hash, state)
                     VALUES (?1, ?2, ?3, ?4, 'queued') ON CONFLICT DO NOTHING",
                    args![sweep_id, t.number, json, hash],
                )?;
            }
            Ok(added)
        })
    }

    /// Queued sweeps with trials not yet done, oldest first.
    pub fn open_queued_sweeps(&self) -> Result<Vec<String>> {
        Ok(self
            .rows(
                "SELECT s.id FROM sweeps s WHERE s.queued = 1
                 AND EXISTS (SELECT 1 FROM trials t WHERE t.sweep_id = s.id AND t.state <> 'done')
                 ORDER BY s.created_at, s.id",
                &[],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect())
    }

    /// Claims the lowest-numbered claimable trial of `sweep_ids` for `worker`: a queued one, or
    /// one whose claim's heartbeat is older than `grace_seconds` (its run is deleted). `None`
    /// when nothing is claimable.
    pub fn claim_next_trial(
        &self,
        sweep_ids: &[String],
        worker: &str,
        grace_seconds: f64,
    ) -> Result<Option<Claim>> {
        if sweep_ids.is_empty() {
            return Ok(None);
        }
        let mut values = vec![Value::Real(grace_seconds)];
        values.extend(sweep_ids.iter().map(Value::from));
        let sql = format!(
            "SELECT sweep_id, number, params_json, params_hash, run_id, attempts FROM trials
             WHERE sweep_id IN ({}) AND (state = 'queued'
                OR (state = 'claimed' AND heartbeat_at IS NOT NULL AND heartbeat_at < {{clock}} - ?1))
             ORDER BY number, sweep_id LIMIT 1 {{skip_locked}}",
            placeholders(2, sweep_ids.len())
        );
        self.in_write_transaction(|s| {
            let rows = s.rows(&sql, &values)?;
            let Some(row) = rows.first() else {
                return Ok(None);
            };
            let (sweep_id, number) = (row.text(0), row.int(1) as usize);
            let reclaimed_run = row.opt_text(4);
            if let Some(run) = &reclaimed_run {
                s.exec("DELETE FROM runs WHERE id = ?1", args![run])?;
            }
            s.exec(
                "UPDATE trials SET state = 'claimed', worker = ?3, heartbeat_at = {clock},
                 attempts = attempts + 1, run_id = NULL WHERE sweep_id = ?1 AND number = ?2",
                args![&sweep_id, number, worker],
            )?;
            Ok(Some(Claim {
                params_json: (!row.text(3).starts_with(UNSET_PREFIX)).then(|| row.text(2)),
                attempts: row.int(5) as usize + 1,
                sweep_id,
                number,
                reclaimed_run,
            }))
        })
    }

    /// Gives a claimed trial whose parameters were left to the claimer these parameters.
    /// `Ok(false)` when another trial of the sweep already has them (draw again).
    pub fn set_claimed_params(
        &self,
        claim: &Claim,
        params_json: &str,
        params_hash: &str,
    ) -> Result<bool> {
        let result = self.db.execute(
            "UPDATE trials SET params_json = ?3, params_hash = ?4 WHERE sweep_id = ?1 AND number = ?2",
            args![&claim.sweep_id, claim.number, params_json, params_hash],
        );
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(self.err()(e)),
        }
    }

    /// Records that `worker` is still running its claim; `false` when the claim is no longer
    /// its own (it went stale and another worker took the trial): stop the trial.
    pub fn heartbeat(&self, claim: &Claim, worker: &str) -> Result<bool> {
        Ok(self.exec(
            "UPDATE trials SET heartbeat_at = {clock}
             WHERE sweep_id = ?1 AND number = ?2 AND worker = ?3 AND state = 'claimed'",
            args![&claim.sweep_id, claim.number, worker],
        )? == 1)
    }

    /// Marks a claimed trial done; `false` (and nothing changed) when `worker` no longer holds
    /// the claim.
    pub fn complete_trial(&self, claim: &Claim, worker: &str) -> Result<bool> {
        Ok(self.exec(
            "UPDATE trials SET state = 'done', heartbeat_at = {clock}
             WHERE sweep_id = ?1 AND number = ?2 AND worker = ?3 AND state = 'claimed'",
            args![&claim.sweep_id, claim.number, worker],
        )? == 1)
    }

    /// Puts a claimed trial back in the queue (its worker is stopping); the next claimer
    /// deletes the run it left.
    pub fn release_trial(&self, claim: &Claim, worker: &str) -> Result<()> {
        self.exec(
            "UPDATE trials SET state = 'queued', worker = NULL, heartbeat_at = NULL
             WHERE sweep_id = ?1 AND number = ?2 AND worker = ?3 AND state = 'claimed'",
            args![&claim.sweep_id, claim.number, worker],
        )?;
        Ok(())
    }

    /// Where the trials of `sweep_ids` are in the queue, judging claims by `grace_seconds`.
    pub fn queue_counts(&self, sweep_ids: &[String], grace_seconds: f64) -> Result<QueueCounts> {
        if sweep_ids.is_empty() {
            return Ok(QueueCounts::default());
        }
        let mut values = vec![Value::Real(grace_seconds)];
        values.extend(sweep_ids.iter().map(Value::from));
        let sql = format!(
            "SELECT
                SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END),
                SUM(CASE WHEN state = 'claimed' AND heartbeat_at >= {{clock}} - ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN state = 'claimed' AND heartbeat_at < {{clock}} - ?1 THEN 1 ELSE 0 END),
                SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END)
             FROM trials WHERE sweep_id IN ({})",
            placeholders(2, sweep_ids.len())
        );
        let rows = self.rows(&sql, &values)?;
        let count = |i| rows.first().map_or(0, |r| r.int(i) as usize);
        Ok(QueueCounts {
            queued: count(0),
            running: count(1),
            stale: count(2),
            done: count(3),
        })
    }

    /// Runs `f` in a transaction that holds SQLite's write lock from its start (see
    /// [`super::db::Db::begin_write`]); never nested.
    fn in_write_transaction<T>(&self, f: impl FnOnce(&RunStore) -> Result<T>) -> Result<T> {
        self.bracketed((Db::begin_write, Db::commit_write, Db::rollback_write), f)
    }
}

/// `?first, ?first+1, ...`: `count` placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
