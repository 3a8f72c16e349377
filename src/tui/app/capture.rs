//! The Capture screen's state: who is captured from where, and the live session as the capture
//! job reports it (the latest preview, the counts per gate).

use facelab::capture::session::CaptureTally;
use facelab::capture::source::SourceSpec;
use facelab::jobs::{CaptureControl, CaptureEvent};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{Command, Field, Reaction};

#[derive(Debug, Clone, PartialEq)]
pub struct CaptureState {
    pub person: String,
    pub source: SourceSpec,
    pub running: bool,
    pub paused: bool,
    /// What the session did so far: saved, and turned away by each gate.
    pub tally: CaptureTally,
    pub target: Option<usize>,
    pub last: String,
    /// The latest preview and its frame number (the image widget redraws on a new number).
    pub preview: Option<(u64, image::RgbImage)>,
    pub frames: u64,
}

impl Default for CaptureState {
    fn default() -> Self {
        CaptureState {
            person: String::new(),
            source: SourceSpec::Camera(0),
            running: false,
            paused: false,
            tally: CaptureTally::default(),
            target: None,
            last: String::new(),
            preview: None,
            frames: 0,
        }
    }
}

impl CaptureState {
    pub fn on_event(&mut self, event: CaptureEvent) {
        match event {
            CaptureEvent::Frame {
                preview,
                outcome,
                tally,
                target,
            } => {
                self.frames += 1;
                self.preview = Some((self.frames, preview));
                self.last = outcome;
                self.tally = tally;
                self.target = target;
            }
            CaptureEvent::Finished(result) => {
                self.running = false;
                self.paused = false;
                self.last = match result {
                    Ok(n) => format!("finished: {n} crops of {} saved", self.person),
                    Err(e) => format!("error: {e}"),
                };
            }
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Reaction {
        let control = |c| Reaction::command(Command::Capture(c));
        match key.code {
            KeyCode::Char('n') if !self.running => {
                Reaction::prompt(Field::Person, &self.person.clone())
            }
            KeyCode::Char('o') if !self.running => {
                Reaction::prompt(Field::Source, &self.source.to_string())
            }
            KeyCode::Enter if !self.running => self.start(),
            KeyCode::Char(' ') if self.running => {
                self.paused = !self.paused;
                control(if self.paused {
                    CaptureControl::Pause
                } else {
                    CaptureControl::Resume
                })
            }
            KeyCode::Char('s') if self.running => control(CaptureControl::Skip),
            KeyCode::Char('x') if self.running => control(CaptureControl::Stop),
            KeyCode::Char('n') | KeyCode::Char('o') => {
                Reaction::status("stop the capture (x) before changing it")
            }
            _ => Reaction::default(),
        }
    }

    fn start(&mut self) -> Reaction {
        if self.person.trim().is_empty() {
            return Reaction::status("name the person first: n");
        }
        self.running = true;
        self.paused = false;
        self.tally = CaptureTally::default();
        self.last = "starting…".into();
        Reaction::command(Command::StartCapture {
            person: self.person.clone(),
            source: self.source.clone(),
        })
    }
}
