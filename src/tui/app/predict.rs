//! The Predict screen's state: the selected run's test images, the one shown, and its
//! prediction once the worker returns it.

use std::path::PathBuf;

use facelab::predict::Prediction;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Field, Reaction};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PredictState {
    pub run_id: Option<String>,
    pub images: Vec<PathBuf>,
    pub selected: usize,
    pub shown: Option<PathBuf>,
    pub result: Option<Result<Prediction, String>>,
    pub pending: bool,
}

impl PredictState {
    /// The screen works with `run` (the one selected on the Runs screen); a new run needs
    /// its test images listed.
    pub fn enter(&mut self, run: Option<String>) -> Vec<Command> {
        match run {
            Some(run) if Some(&run) != self.run_id.as_ref() => {
                self.run_id = Some(run.clone());
                self.result = None;
                self.shown = None;
                vec![Command::ListPredictImages(run)]
            }
            _ => Vec::new(),
        }
    }

    pub fn images_listed(&mut self, images: Vec<PathBuf>) {
        self.images = images;
        self.selected = 0;
    }

    pub fn predicted(&mut self, result: Result<Prediction, String>) {
        self.pending = false;
        self.result = Some(result);
    }

    /// `ticks` seeds the random pick (`r`): a frame counter, so tests stay repeatable.
    pub fn on_key(&mut self, key: KeyEvent, ticks: u64) -> Reaction {
        let n = self.images.len();
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Enter => {
                if let Some(path) = self.images.get(self.selected).cloned() {
                    return self.predict_path(path);
                }
            }
            KeyCode::Char('r') if n > 0 => {
                // A cheap, repeatable scramble of the frame counter picks the "random" image.
                self.selected = (ticks.wrapping_mul(2654435761) as usize) % n;
                return self.predict_path(self.images[self.selected].clone());
            }
            KeyCode::Char('p') => return Reaction::prompt(Field::ImagePath, ""),
            _ => {}
        }
        Reaction::default()
    }

    pub fn predict_path(&mut self, path: PathBuf) -> Reaction {
        let Some(run) = self.run_id.clone() else {
            return Reaction::status("select a finished run on the Runs screen first");
        };
        self.pending = true;
        self.shown = Some(path.clone());
        self.result = None;
        Reaction::command(Command::Predict(run, path))
    }
}
