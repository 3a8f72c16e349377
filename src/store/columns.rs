//! The columns of a runs table, as `facelab runs` prints and sorts them and as the TUI's runs
//! screen cycles through them with `s`: one type, so the two never sort differently.
//!
//! Each column sorts in its natural order, best first: newest runs, highest accuracies, lowest
//! losses, most epochs and longest durations first; names in alphabetical order. Missing values
//! (a run with no validation figures) always sort last, and ties keep id order.

use std::cmp::Ordering;

use super::RunRecord;

/// A column of the runs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunColumn {
    Started,
    Id,
    Experiment,
    Status,
    ValAccuracy,
    ValLoss,
    TestAccuracy,
    Epochs,
    Duration,
}

/// One run's value in a column: numbers compare as numbers.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Cell {
    Missing,
    Number(f64),
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Cell::Missing => Ok(()),
            Cell::Number(n) if n.fract() == 0.0 => write!(f, "{n}"),
            Cell::Number(n) => write!(f, "{n:.4}"),
            Cell::Text(t) => f.write_str(t),
        }
    }
}

impl RunColumn {
    /// Every column, in the order the TUI's `s` key cycles through them.
    pub const ALL: [RunColumn; 9] = [
        RunColumn::Started,
        RunColumn::Id,
        RunColumn::Experiment,
        RunColumn::Status,
        RunColumn::ValAccuracy,
        RunColumn::ValLoss,
        RunColumn::TestAccuracy,
        RunColumn::Epochs,
        RunColumn::Duration,
    ];

    /// The name `--sort` takes and CSV headers use.
    pub fn name(self) -> &'static str {
        match self {
            RunColumn::Started => "started",
            RunColumn::Id => "id",
            RunColumn::Experiment => "experiment",
            RunColumn::Status => "status",
            RunColumn::ValAccuracy => "val_accuracy",
            RunColumn::ValLoss => "val_loss",
            RunColumn::TestAccuracy => "test_accuracy",
            RunColumn::Epochs => "epochs",
            RunColumn::Duration => "duration",
        }
    }

    /// A short heading for tables and the TUI's sort indicator.
    pub fn title(self) -> &'static str {
        match self {
            RunColumn::ValAccuracy => "val acc",
            RunColumn::ValLoss => "val loss",
            RunColumn::TestAccuracy => "test acc",
            other => other.name(),
        }
    }

    /// The column after this one, wrapping around.
    pub fn next(self) -> RunColumn {
        let i = Self::ALL.iter().position(|&c| c == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// `run`'s value in this column.
    pub fn cell(self, run: &RunRecord) -> Cell {
        let number = |v: Option<f64>| v.map_or(Cell::Missing, Cell::Number);
        match self {
            RunColumn::Started => Cell::Text(run.started_at.clone()),
            RunColumn::Id => Cell::Text(run.id.clone()),
            RunColumn::Experiment => Cell::Text(run.experiment.clone()),
            RunColumn::Status => Cell::Text(run.status.as_str().into()),
            RunColumn::ValAccuracy => number(run.best_val_accuracy),
            RunColumn::ValLoss => number(run.val_loss),
            RunColumn::TestAccuracy => number(run.test_accuracy),
            RunColumn::Epochs => Cell::Number(run.epochs as f64),
            RunColumn::Duration => number(run.duration_seconds()),
        }
    }

    /// Whether larger values come first in this column's natural order.
    fn larger_first(self) -> bool {
        matches!(
            self,
            RunColumn::Started
                | RunColumn::ValAccuracy
                | RunColumn::TestAccuracy
                | RunColumn::Epochs
                | RunColumn::Duration
        )
    }

    /// Best-first (or, `reverse`, worst-first) order of two cells of this column; missing
    /// values last either way.
    fn order(self, a: &Cell, b: &Cell, reverse: bool) -> Ordering {
        match (a, b) {
            (Cell::Missing, Cell::Missing) => Ordering::Equal,
            (Cell::Missing, _) => Ordering::Greater,
            (_, Cell::Missing) => Ordering::Less,
            _ => {
                let ascending = a.partial_cmp(b).unwrap_or(Ordering::Equal);
                if self.larger_first() != reverse {
                    ascending.reverse()
                } else {
                    ascending
                }
            }
        }
    }
}

impl std::str::FromStr for RunColumn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.name()).collect();
                format!("cannot sort by '{s}'; columns: {}", names.join(", "))
            })
    }
}

/// Sorts `rows` (indices into `runs`) by `column`, best first, or worst first when `reverse`.
/// Each run's value is computed once, so sorting 10,000 runs by duration (which parses two
/// timestamps per run) stays well under a frame.
pub fn sort_rows(runs: &[RunRecord], rows: &mut [usize], column: RunColumn, reverse: bool) {
    let cells: Vec<Cell> = runs.iter().map(|r| column.cell(r)).collect();
    rows.sort_by(|&a, &b| {
        column
            .order(&cells[a], &cells[b], reverse)
            .then_with(|| runs[a].id.cmp(&runs[b].id))
    });
}

/// `runs` sorted by `column` (see [`sort_rows`]).
pub fn sort_runs(runs: Vec<RunRecord>, column: RunColumn, reverse: bool) -> Vec<RunRecord> {
    let mut rows: Vec<usize> = (0..runs.len()).collect();
    sort_rows(&runs, &mut rows, column, reverse);
    let mut slots: Vec<Option<RunRecord>> = runs.into_iter().map(Some).collect();
    rows.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::finished_run;

    fn ids(runs: &[RunRecord]) -> Vec<&str> {
        runs.iter().map(|r| r.id.as_str()).collect()
    }

    fn three_runs() -> Vec<RunRecord> {
        let mut no_val = finished_run("cccc", "seed", 0.7, "2026-01-02T00:00:00Z");
        no_val.best_val_accuracy = None;
        no_val.val_loss = None;
        vec![
            finished_run("aaaa", "seed", 0.5, "2026-01-01T00:00:00Z"),
            finished_run("bbbb", "recommended", 0.9, "2026-01-03T00:00:00Z"),
            no_val,
        ]
    }

    #[test]
    fn each_column_sorts_best_first_with_missing_values_last() {
        let sorted = |c| sort_runs(three_runs(), c, false);
        assert_eq!(ids(&sorted(RunColumn::Started)), ["bbbb", "cccc", "aaaa"]);
        assert_eq!(ids(&sorted(RunColumn::Id)), ["aaaa", "bbbb", "cccc"]);
        assert_eq!(
            ids(&sorted(RunColumn::Experiment)),
            ["bbbb", "aaaa", "cccc"]
        );
        assert_eq!(
            ids(&sorted(RunColumn::ValAccuracy)),
            ["bbbb", "aaaa", "cccc"]
        );
        assert_eq!(ids(&sorted(RunColumn::ValLoss)), ["bbbb", "aaaa", "cccc"]);
    }

    #[test]
    fn reverse_flips_the_order_but_missing_values_stay_last() {
        let sorted = sort_runs(three_runs(), RunColumn::ValAccuracy, true);
        assert_eq!(ids(&sorted), ["aaaa", "bbbb", "cccc"]);
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_columns() {
        for c in RunColumn::ALL {
            assert_eq!(c.name().parse::<RunColumn>(), Ok(c));
        }
        let e = "speed".parse::<RunColumn>().unwrap_err();
        assert!(e.contains("speed") && e.contains("val_accuracy"), "{e}");
    }

    #[test]
    fn cells_print_numbers_compactly() {
        assert_eq!(Cell::Number(3.0).to_string(), "3");
        assert_eq!(Cell::Number(0.123456).to_string(), "0.1235");
        assert_eq!(Cell::Missing.to_string(), "");
    }
}
