//! The Experiments screen's state: the experiment files, and the one background training run
//! with its progress as the job reports it.

use std::path::PathBuf;

use facelab::jobs::TrainEvent;
use facelab::train::EpochMetrics;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Reaction};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExperimentsState {
    pub files: Vec<PathBuf>,
    pub selected: usize,
    pub job: Option<JobView>,
}

/// A background training run as the experiments screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub experiment: PathBuf,
    pub run_id: Option<String>,
    pub features: (u64, u64),
    pub total_epochs: usize,
    pub epochs: Vec<EpochMetrics>,
    pub outcome: Option<Result<String, String>>,
}

impl JobView {
    pub fn new(experiment: PathBuf) -> Self {
        JobView {
            experiment,
            run_id: None,
            features: (0, 0),
            total_epochs: 0,
            epochs: Vec::new(),
            outcome: None,
        }
    }
}

impl ExperimentsState {
    pub fn listed(&mut self, files: Vec<PathBuf>) {
        self.files = files;
        self.selected = self.selected.min(self.files.len().saturating_sub(1));
    }

    pub fn running(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.outcome.is_none())
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Reaction {
        let last = self.files.len().saturating_sub(1);
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Enter if self.running() => {
                return Reaction::status("a run is already going; x cancels it")
            }
            KeyCode::Enter => {
                if let Some(path) = self.files.get(self.selected).cloned() {
                    self.job = Some(JobView::new(path.clone()));
                    return Reaction::command(Command::StartTraining(path));
                }
            }
            KeyCode::Char('e') => {
                if let Some(path) = self.files.get(self.selected).cloned() {
                    return Reaction::command(Command::EditFile(path));
                }
            }
            KeyCode::Char('x') if self.running() => {
                return Reaction::status("cancelling: the run stops after its current step")
                    .with_commands(vec![Command::CancelTraining])
            }
            _ => {}
        }
        Reaction::default()
    }

    /// Progress from the training job; the runs table reloads when a run starts or ends.
    pub fn on_train_event(&mut self, event: TrainEvent) -> Vec<Command> {
        let Some(job) = self.job.as_mut() else {
            return Vec::new();
        };
        match event {
            TrainEvent::Features { done, total } => job.features = (done, total),
            TrainEvent::Started { run_id, epochs } => {
                job.run_id = Some(run_id);
                job.total_epochs = epochs;
                return vec![Command::LoadRuns];
            }
            TrainEvent::Epoch(m) => job.epochs.push(m),
            TrainEvent::Finished(result) => {
                job.outcome = Some(result.map(|s| match s.test_accuracy {
                    Some(acc) => format!("run {} finished: test accuracy {acc:.4}", s.run_id),
                    None => format!("run {} finished", s.run_id),
                }));
                return vec![Command::LoadRuns];
            }
        }
        Vec::new()
    }
}
