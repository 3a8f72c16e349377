//! The Runs screen's state: every run, the filtered and sorted rows the table shows, the
//! selection, marks for comparing, and a delete waiting for its confirmation.

use std::collections::BTreeSet;

use facelab::store::{sort_rows, RunColumn, RunRecord};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Field, Reaction};

#[derive(Debug, Clone, PartialEq)]
pub struct RunsState {
    pub all: Vec<RunRecord>,
    /// Indices into `all` of the filtered, sorted table: recomputed only when the runs, the
    /// sort or the filter change, so moving through 10,000 runs costs nothing.
    rows: Vec<usize>,
    pub selected: usize,
    pub sort: RunColumn,
    pub filter: String,
    pub marked: BTreeSet<String>,
    /// A run whose deletion waits for `y`.
    pub confirm_delete: Option<String>,
}

impl Default for RunsState {
    fn default() -> Self {
        RunsState {
            all: Vec::new(),
            rows: Vec::new(),
            selected: 0,
            sort: RunColumn::Started,
            filter: String::new(),
            marked: BTreeSet::new(),
            confirm_delete: None,
        }
    }
}

impl RunsState {
    /// The runs the table shows: filtered by the filter text, in the chosen order.
    pub fn visible(&self) -> Vec<&RunRecord> {
        self.rows.iter().map(|&i| &self.all[i]).collect()
    }

    pub fn selected_run(&self) -> Option<&RunRecord> {
        self.rows.get(self.selected).map(|&i| &self.all[i])
    }

    /// New runs from the store; the selection stays on the same run where it still shows.
    pub fn load(&mut self, runs: Vec<RunRecord>) {
        let keep = self.selected_run().map(|r| r.id.clone());
        self.all = runs;
        self.refresh_rows();
        if let Some(i) = keep.and_then(|id| self.visible().iter().position(|r| r.id == id)) {
            self.selected = i;
        }
        self.clamp_selection();
    }

    /// The filter applies as it is typed.
    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_owned();
        self.refresh_rows();
        self.selected = 0;
    }

    fn refresh_rows(&mut self) {
        let needle = self.filter.to_lowercase();
        let matches = |r: &RunRecord| {
            needle.is_empty()
                || [r.id.as_str(), r.experiment.as_str(), r.status.as_str()]
                    .into_iter()
                    .chain(r.tags.iter().map(String::as_str))
                    .any(|s| s.to_lowercase().contains(&needle))
        };
        let mut rows: Vec<usize> = (0..self.all.len())
            .filter(|&i| matches(&self.all[i]))
            .collect();
        sort_rows(&self.all, &mut rows, self.sort, false);
        self.rows = rows;
    }

    fn clamp_selection(&mut self) {
        self.selected = self.selected.min(self.rows.len().saturating_sub(1));
    }

    /// `y` deletes the run that waits for confirmation; any other key keeps it.
    pub fn on_confirm_key(&mut self, key: KeyEvent, id: String) -> Reaction {
        if key.code == KeyCode::Char('y') {
            self.marked.remove(&id);
            return Reaction::status(format!("deleted run {id}"))
                .with_commands(vec![Command::DeleteRun(id), Command::LoadRuns]);
        }
        Reaction::status("delete cancelled")
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Reaction {
        let last = self.rows.len().saturating_sub(1);
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(last),
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.refresh_rows();
                self.selected = 0;
            }
            KeyCode::Char('/') => return Reaction::prompt(Field::Filter, &self.filter.clone()),
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.refresh_rows();
                self.clamp_selection();
            }
            KeyCode::Char(' ') => {
                if let Some(id) = self.selected_run().map(|r| r.id.clone()) {
                    if !self.marked.remove(&id) {
                        self.marked.insert(id);
                    }
                    self.selected = (self.selected + 1).min(last);
                }
            }
            KeyCode::Char('c') if self.marked.len() >= 2 => {
                return Reaction::command(Command::LoadCompare(
                    self.marked.iter().cloned().collect(),
                ))
            }
            KeyCode::Char('c') => {
                return Reaction::status("mark two or more runs with Space, then press c")
            }
            _ => return self.on_run_key(key),
        }
        Reaction::default()
    }

    /// Keys that act on the selected run.
    fn on_run_key(&mut self, key: KeyEvent) -> Reaction {
        let Some(run) = self.selected_run().cloned() else {
            return Reaction::default();
        };
        match key.code {
            KeyCode::Enter => Reaction::command(Command::LoadDetail(run.id)),
            KeyCode::Char('d') => {
                self.confirm_delete = Some(run.id.clone());
                Reaction::status(format!(
                    "delete run {}? press y to confirm, any other key to keep it",
                    run.id
                ))
            }
            KeyCode::Char('R') => Reaction::command(Command::EditRerun(run.id)),
            KeyCode::Char('t') => Reaction::prompt(Field::Tags(run.id), &run.tags.join(", ")),
            KeyCode::Char('n') => Reaction::prompt(
                Field::Notes(run.id),
                run.notes.as_deref().unwrap_or_default(),
            ),
            _ => Reaction::default(),
        }
    }
}

/// Tags as typed: comma separated, trimmed, empty ones dropped.
pub fn parse_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}
