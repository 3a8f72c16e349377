//! Sweeps and their trials in the store. A trial row is the claim on a trial number: it is
//! written (with its parameters, whose hash is unique within the sweep) before the trial's run
//! exists, and the run is linked to it in the transaction that creates the run. A trial's
//! status and figures are its run's.

use serde::Serialize;

use super::db::{args, Value};
use super::{id_prefix, now, RunRecord, RunStatus, RunStore};
use crate::error::{Error, Result};

/// What is known of a sweep when it is first run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRecord {
    pub id: String,
    pub name: String,
    /// The sweep file it was read from.
    pub file: String,
    pub method: String,
    pub metric: String,
    pub goal: String,
    pub total_trials: usize,
    pub created_at: String,
    pub dataset_hash: String,
    /// The sweep file and base experiment as resolved when the sweep began.
    #[serde(skip)]
    pub spec_yaml: String,
    #[serde(skip)]
    pub experiment_yaml: String,
}

/// A claimed trial and, once it has started, its run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    pub number: usize,
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
    pub params_hash: String,
    pub run: Option<RunRecord>,
}

impl TrialRecord {
    /// `pending` until its run starts, then the run's status.
    pub fn status(&self) -> &'static str {
        self.run.as_ref().map_or("pending", |r| r.status.as_str())
    }

    /// Whether the trial needs no more work: finished, failed or pruned.
    pub fn is_done(&self) -> bool {
        self.run.as_ref().is_some_and(|r| {
            matches!(
                r.status,
                RunStatus::Finished | RunStatus::Failed | RunStatus::Pruned
            )
        })
    }
}

impl RunStore {
    /// Records a sweep unless one with its id exists (running a sweep again resumes it).
    pub fn create_sweep(&self, sweep: &SweepRecord) -> Result<()> {
        self.exec(
            "INSERT INTO sweeps (id, name, file, spec_yaml, experiment_yaml, dataset_hash, method, metric, goal, total_trials, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
            args![
                &sweep.id,
                &sweep.name,
                &sweep.file,
                &sweep.spec_yaml,
                &sweep.experiment_yaml,
                &sweep.dataset_hash,
                &sweep.method,
                &sweep.metric,
                &sweep.goal,
                sweep.total_trials,
                now()
            ],
        )?;
        Ok(())
    }

    /// All sweeps, newest first.
    pub fn sweeps(&self) -> Result<Vec<SweepRecord>> {
        self.query_sweeps("ORDER BY created_at DESC, id", &[])
    }

    /// The sweep whose id is `id_or_prefix`, or the only one starting with it.
    pub fn sweep(&self, id_or_prefix: &str) -> Result<SweepRecord> {
        let prefix = id_prefix("sweep", id_or_prefix)?;
        let mut found = self.query_sweeps(
            "WHERE substr(id, 1, length(CAST(?1 AS TEXT))) = CAST(?1 AS TEXT) ORDER BY id",
            args![&prefix],
        )?;
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(Error::InvalidArgument(format!(
                "no sweep matches '{id_or_prefix}'; `facelab sweeps` lists them"
            ))),
            _ => Err(Error::InvalidArgument(format!(
                "'{id_or_prefix}' matches several sweeps; give more of the id"
            ))),
        }
    }

    fn query_sweeps(&self, tail: &str, args: &[Value]) -> Result<Vec<SweepRecord>> {
        let sql = format!(
            "SELECT id, name, file, method, metric, goal, total_trials, created_at, dataset_hash, spec_yaml, experiment_yaml
             FROM sweeps {tail}"
        );
        Ok(self
            .rows(&sql, args)?
            .iter()
            .map(|r| SweepRecord {
                id: r.text(0),
                name: r.text(1),
                file: r.text(2),
                method: r.text(3),
                metric: r.text(4),
                goal: r.text(5),
                total_trials: r.int(6) as usize,
                created_at: r.text(7),
                dataset_hash: r.text(8),
                spec_yaml: r.text(9),
                experiment_yaml: r.text(10),
            })
            .collect())
    }

    /// A sweep's trials by number, each with its run if it has one.
    pub fn trials(&self, sweep_id: &str) -> Result<Vec<TrialRecord>> {
        let mut runs = self.query_runs("WHERE t.sweep_id = ?1", args![sweep_id])?;
        let rows = self.rows(
            "SELECT number, params_json, params_hash, run_id FROM trials WHERE sweep_id = ?1 ORDER BY number",
            args![sweep_id],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let run = r.opt_text(3).and_then(|id| {
                    let at = runs.iter().position(|r| r.id == id)?;
                    Some(runs.swap_remove(at))
                });
                TrialRecord {
                    number: r.int(0) as usize,
                    params: serde_json::from_str(&r.text(1)).unwrap_or_default(),
                    params_hash: r.text(2),
                    run,
                }
            })
            .collect())
    }

    /// Claims trial `number` of a sweep with these parameters. `Ok(false)` when another trial
    /// of the sweep already has the same parameters (draw again); an existing claim on the
    /// number is an error, as numbers are claimed once.
    pub fn claim_trial(
        &self,
        sweep_id: &str,
        number: usize,
        params_json: &str,
        params_hash: &str,
    ) -> Result<bool> {
        self.in_transaction(|s| {
            let taken = s.rows(
                "SELECT number FROM trials WHERE sweep_id = ?1 AND params_hash = ?2",
                args![sweep_id, params_hash],
            )?;
            if !taken.is_empty() {
                return Ok(false);
            }
            s.exec(
                "INSERT INTO trials (sweep_id, number, params_json, params_hash) VALUES (?1, ?2, ?3, ?4)",
                args![sweep_id, number, params_json, params_hash],
            )?;
            Ok(true)
        })
    }
}
