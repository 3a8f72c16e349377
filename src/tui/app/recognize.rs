//! The Recognize screen's state: which run names faces from which source, and the live stream
//! as the recognition job reports it (the latest boxed preview, who is in view, frames per
//! second, the last saved frame).

use facelab::capture::source::SourceSpec;
use facelab::jobs::{RecognizeControl, RecognizeEvent};
use facelab::recognize::FaceResult;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Field, Reaction};

#[derive(Debug, Clone, PartialEq)]
pub struct RecognizeState {
    /// The run whose head names the faces (the one selected on the Runs screen).
    pub run: Option<String>,
    pub source: SourceSpec,
    pub running: bool,
    pub paused: bool,
    /// The latest preview and its frame number (the image widget redraws on a new number).
    pub preview: Option<(u64, image::RgbImage)>,
    /// The faces of the latest frame.
    pub faces: Vec<FaceResult>,
    pub frames: u64,
    pub fps: f64,
    /// What happened last (started, saved a frame, stopped, an error).
    pub last: String,
}

impl Default for RecognizeState {
    fn default() -> Self {
        RecognizeState {
            run: None,
            source: SourceSpec::Camera(0),
            running: false,
            paused: false,
            preview: None,
            faces: Vec::new(),
            frames: 0,
            fps: 0.0,
            last: String::new(),
        }
    }
}

impl RecognizeState {
    /// Entering the screen: the run selected on the Runs screen, unless a stream is running.
    pub fn enter(&mut self, selected_run: Option<String>) {
        if !self.running && selected_run.is_some() {
            self.run = selected_run;
        }
    }

    pub fn on_event(&mut self, event: RecognizeEvent) {
        match event {
            RecognizeEvent::Frame {
                preview,
                result,
                fps,
            } => {
                self.frames += 1;
                self.preview = Some((self.frames, preview));
                self.faces = result.faces;
                self.fps = fps;
            }
            RecognizeEvent::Saved(Ok(path)) => self.last = format!("saved {}", path.display()),
            RecognizeEvent::Saved(Err(e)) => self.last = format!("not saved: {e}"),
            RecognizeEvent::Finished(result) => {
                self.running = false;
                self.paused = false;
                self.last = match result {
                    Ok(n) => format!("stopped after {n} frames"),
                    Err(e) => format!("error: {e}"),
                };
            }
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Reaction {
        let control = |c| Reaction::command(Command::Recognize(c));
        match key.code {
            KeyCode::Char('o') if !self.running => {
                Reaction::prompt(Field::RecognizeSource, &self.source.to_string())
            }
            KeyCode::Enter if !self.running => self.start(),
            KeyCode::Char(' ') if self.running => {
                self.paused = !self.paused;
                control(if self.paused {
                    RecognizeControl::Pause
                } else {
                    RecognizeControl::Resume
                })
            }
            KeyCode::Char('s') if self.running => control(RecognizeControl::Save),
            KeyCode::Esc | KeyCode::Char('x') if self.running => {
                self.last = "stopping…".into();
                control(RecognizeControl::Stop)
            }
            KeyCode::Char('o') => Reaction::status("stop (Esc) before changing the source"),
            _ => Reaction::default(),
        }
    }

    fn start(&mut self) -> Reaction {
        let Some(run) = self.run.clone() else {
            return Reaction::status(
                "pick a run first: select one on the Runs screen, then Tab here",
            );
        };
        self.running = true;
        self.paused = false;
        self.faces.clear();
        self.fps = 0.0;
        self.last = "starting…".into();
        Reaction::command(Command::StartRecognize {
            run,
            source: self.source.clone(),
        })
    }
}
