//! What a sweep shows: its trials sorted by the sweep's metric (best first, trials without a
//! figure last), the best trial, and an estimate of each parameter's importance. The CLI
//! (`sweep show`, `sweeps`) and the Sweeps screen both read this.
//!
//! Importance is the share of the metric's variance that one parameter explains alone (a
//! one-way ANOVA's eta squared, as fANOVA reports main effects): finished trials are grouped
//! by the parameter's value (numbers into four bins by rank), and the variance of the group
//! means, weighted by group size, is divided by the metric's variance. 0 means the metric does
//! not depend on the parameter; 1 that the parameter alone explains it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::spec::{Goal, SweepMetric};
use crate::error::Result;
use crate::store::{RunStatus, RunStore, SweepRecord, TrialRecord};

/// One trial as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialRow {
    pub number: usize,
    pub run_id: Option<String>,
    pub status: String,
    pub params: BTreeMap<String, Value>,
    /// The sweep's metric: the only figure trials are selected by.
    pub metric: Option<f64>,
    /// For information; never used to select.
    pub test_accuracy: Option<f64>,
    pub epochs: usize,
}

/// A sweep with its trials, best trial and parameter importance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepReport {
    #[serde(flatten)]
    pub sweep: SweepRecord,
    /// `running` while a trial runs, `finished` when every trial is done, else `stopped`.
    pub status: &'static str,
    /// Trials that ran to an end: finished, pruned or failed.
    pub finished_trials: usize,
    /// The swept keys, in order.
    pub keys: Vec<String>,
    /// Sorted by the metric, best first.
    pub trials: Vec<TrialRow>,
    /// The selected trial's number: the best by the metric.
    pub best: Option<usize>,
    /// Each key's share of the metric's variance, in `keys` order.
    pub importance: BTreeMap<String, f64>,
}

impl SweepReport {
    /// Reads sweep `id_or_prefix` and its trials from the store.
    pub fn load(store: &RunStore, id_or_prefix: &str) -> Result<SweepReport> {
        let sweep = store.sweep(id_or_prefix)?;
        let trials = store.trials(&sweep.id)?;
        Ok(Self::from_trials(sweep, &trials))
    }

    pub fn from_trials(sweep: SweepRecord, trials: &[TrialRecord]) -> SweepReport {
        let metric = SweepMetric::parse(&sweep.metric).unwrap_or(SweepMetric::CvAccuracy);
        let goal = if sweep.goal == "minimize" {
            Goal::Minimize
        } else {
            Goal::Maximize
        };
        let mut rows: Vec<TrialRow> = trials
            .iter()
            .map(|t| TrialRow {
                number: t.number,
                run_id: t.run.as_ref().map(|r| r.id.clone()),
                status: t.status().to_owned(),
                params: t.params.clone(),
                metric: t
                    .run
                    .as_ref()
                    .filter(|r| r.status == RunStatus::Finished)
                    .and_then(|r| metric.of_run(r)),
                test_accuracy: t.run.as_ref().and_then(|r| r.test_accuracy),
                epochs: t.run.as_ref().map_or(0, |r| r.epochs),
            })
            .collect();
        rows.sort_by(|a, b| match (a.metric, b.metric) {
            (Some(x), Some(y)) if goal.better(x, y) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) if goal.better(y, x) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            _ => a.number.cmp(&b.number),
        });
        let keys: Vec<String> = trials
            .first()
            .map(|t| t.params.keys().cloned().collect())
            .unwrap_or_default();
        let running = trials.iter().any(|t| t.status() == "running");
        let finished_trials = trials.iter().filter(|t| t.is_done()).count();
        let status = if running {
            "running"
        } else if finished_trials >= sweep.total_trials {
            "finished"
        } else {
            "stopped"
        };
        let importance = keys
            .iter()
            .map(|k| (k.clone(), importance(&rows, k)))
            .collect();
        SweepReport {
            best: rows
                .first()
                .filter(|r| r.metric.is_some())
                .map(|r| r.number),
            sweep,
            status,
            finished_trials,
            keys,
            trials: rows,
            importance,
        }
    }

    pub fn best_trial(&self) -> Option<&TrialRow> {
        let best = self.best?;
        self.trials.iter().find(|t| t.number == best)
    }
}

/// The share of the metric's variance explained by grouping trials on `key` (see the module).
pub fn importance(rows: &[TrialRow], key: &str) -> f64 {
    let scored: Vec<(&Value, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.params.get(key)?, r.metric?)))
        .collect();
    if scored.len() < 2 {
        return 0.0;
    }
    let groups = group_labels(&scored.iter().map(|(v, _)| *v).collect::<Vec<_>>());
    let n = scored.len() as f64;
    let mean = scored.iter().map(|(_, m)| m).sum::<f64>() / n;
    let total: f64 = scored.iter().map(|(_, m)| (m - mean).powi(2)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mut sums: BTreeMap<usize, (f64, f64)> = BTreeMap::new();
    for (group, (_, m)) in groups.iter().zip(&scored) {
        let entry = sums.entry(*group).or_default();
        entry.0 += m;
        entry.1 += 1.0;
    }
    let between: f64 = sums
        .values()
        .map(|(sum, count)| count * (sum / count - mean).powi(2))
        .sum();
    (between / total).clamp(0.0, 1.0)
}

/// A group per distinct value, except numbers with more than four distinct values, which go
/// into four bins by rank.
fn group_labels(values: &[&Value]) -> Vec<usize> {
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    let mut distinct: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    distinct.sort();
    distinct.dedup();
    match numbers {
        Some(numbers) if distinct.len() > 4 => {
            let mut order: Vec<usize> = (0..numbers.len()).collect();
            order.sort_by(|&a, &b| numbers[a].total_cmp(&numbers[b]));
            let mut bins = vec![0; numbers.len()];
            for (rank, &i) in order.iter().enumerate() {
                bins[i] = rank * 4 / numbers.len();
            }
            bins
        }
        _ => values
            .iter()
            .map(|v| distinct.binary_search(&v.to_string()).unwrap_or(0))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(number: usize, a: i64, b: i64, metric: f64) -> TrialRow {
        TrialRow {
            number,
            run_id: None,
            status: "finished".into(),
            params: BTreeMap::from([("a".into(), Value::from(a)), ("b".into(), Value::from(b))]),
            metric: Some(metric),
            test_accuracy: None,
            epochs: 1,
        }
    }

    #[test]
    fn importance_is_high_for_the_parameter_the_metric_follows() {
        // The metric is 0.5 + 0.4 a, plus a little that b explains.
        let rows: Vec<TrialRow> = (0..8)
            .map(|i| {
                row(
                    i,
                    (i % 2) as i64,
                    (i / 4) as i64,
                    0.5 + 0.4 * (i % 2) as f64 + 0.01 * (i / 4) as f64,
                )
            })
            .collect();
        let (a, b) = (importance(&rows, "a"), importance(&rows, "b"));
        assert!(a > 0.99 && b < 0.01, "a {a}, b {b}");
        assert_eq!(importance(&rows[..1], "a"), 0.0);
    }
}
