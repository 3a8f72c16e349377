//! The Sweeps screen's state: the sweeps as the store reports them (reloaded as trials finish),
//! which sweep and trial are selected, and the one background sweep started from the
//! Experiments screen.

use std::path::PathBuf;

use facelab::jobs::SweepEvent;
use facelab::sweep::report::{SweepReport, TrialRow};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Reaction};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepsState {
    pub reports: Vec<SweepReport>,
    /// Index into `reports`.
    pub selected: usize,
    /// Index into the selected sweep's trials (sorted best first).
    pub trial: usize,
    pub job: Option<SweepJobView>,
}

/// A background sweep as the screens show it.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepJobView {
    pub file: PathBuf,
    pub sweep_id: Option<String>,
    pub done: usize,
    pub total: usize,
    pub outcome: Option<Result<String, String>>,
}

impl SweepJobView {
    pub fn new(file: PathBuf) -> Self {
        SweepJobView {
            file,
            sweep_id: None,
            done: 0,
            total: 0,
            outcome: None,
        }
    }
}

impl SweepsState {
    pub fn running(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.outcome.is_none())
    }

    pub fn selected_report(&self) -> Option<&SweepReport> {
        self.reports.get(self.selected)
    }

    pub fn selected_trial(&self) -> Option<&TrialRow> {
        self.selected_report()?.trials.get(self.trial)
    }

    /// New figures from the store; the running sweep, when there is one, stays selected.
    pub fn load(&mut self, reports: Vec<SweepReport>) {
        let keep = self
            .job
            .as_ref()
            .and_then(|j| j.sweep_id.clone())
            .or_else(|| self.selected_report().map(|r| r.sweep.id.clone()));
        self.reports = reports;
        self.selected = keep
            .and_then(|id| self.reports.iter().position(|r| r.sweep.id == id))
            .unwrap_or(0);
        let trials = self.selected_report().map_or(0, |r| r.trials.len());
        self.trial = self.trial.min(trials.saturating_sub(1));
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Reaction {
        let trials = self.selected_report().map_or(0, |r| r.trials.len());
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.trial = (self.trial + 1).min(trials.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.trial = self.trial.saturating_sub(1),
            KeyCode::Right | KeyCode::Char('l') | KeyCode::Char(']') => {
                self.selected = (self.selected + 1).min(self.reports.len().saturating_sub(1));
                self.trial = 0;
            }
            KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('[') => {
                self.selected = self.selected.saturating_sub(1);
                self.trial = 0;
            }
            KeyCode::Enter => {
                return match self.selected_trial().and_then(|t| t.run_id.clone()) {
                    Some(run) => Reaction::command(Command::LoadDetail(run)),
                    None => Reaction::status("this trial has not started a run yet"),
                }
            }
            KeyCode::Char('x') if self.running() => {
                return Reaction::status(
                    "stopping the sweep: running trials end interrupted; run it again to resume",
                )
                .with_commands(vec![Command::CancelSweep])
            }
            _ => {}
        }
        Reaction::default()
    }

    /// Progress from the sweep job; the sweeps reload as trials finish.
    pub fn on_sweep_event(&mut self, event: SweepEvent) -> Vec<Command> {
        let Some(job) = self.job.as_mut() else {
            return Vec::new();
        };
        match event {
            SweepEvent::Started {
                sweep_id,
                total,
                done,
            } => {
                job.sweep_id = Some(sweep_id);
                job.total = total;
                job.done = done;
            }
            SweepEvent::TrialFinished(_) => job.done += 1,
            SweepEvent::Finished(result) => {
                job.outcome = Some(result.map(|o| {
                    let how = if o.cancelled { "stopped" } else { "ended" };
                    format!("sweep {} {how}: {} trials run now", o.sweep_id, o.ran.len())
                }));
                return vec![Command::LoadSweeps, Command::LoadRuns];
            }
        }
        vec![Command::LoadSweeps]
    }
}
