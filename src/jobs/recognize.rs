//! Live recognition on a thread for the TUI: it opens the run's head, the detector and the
//! backbone, plays the source (a folder loops, paced to [`FOLDER_FPS`]; a camera at its own
//! pace), and sends each frame's preview (boxes drawn: green for a name, red for unknown) with
//! its faces and the frame rate. It pauses, saves the current frame annotated, and stops on
//! command.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Instant;

use image::{Rgb, RgbImage};

use super::{draw_frame, guarded, preview_with_boxes};
use crate::backbone::Backbone;
use crate::capture::cascade::{obtain_face_cascade, Cascade, Rect};
use crate::capture::source::SourceSpec;
use crate::error::Result;
use crate::progress::NoProgress;
use crate::recognize::{stream, FaceResult, FrameResult, Recognizer, StreamOptions};
use crate::workspace::Workspace;

/// Frames per second a folder source plays at: a steady picture, without spending both cores.
pub const FOLDER_FPS: f64 = 15.0;

/// The smallest face looked for: a capture session's default.
const MIN_FACE: u32 = 80;

#[derive(Debug, Clone, PartialEq)]
pub enum RecognizeEvent {
    Frame {
        /// The frame scaled for the terminal, with the faces boxed.
        preview: RgbImage,
        result: FrameResult,
        /// Frames per second over the last second.
        fps: f64,
    },
    /// Where the annotated frame was saved, or why it was not.
    Saved(std::result::Result<PathBuf, String>),
    /// The stream ended (stopped, or a source that ran out): frames seen, or the error.
    Finished(std::result::Result<u64, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecognizeControl {
    Pause,
    Resume,
    /// Save the current frame with its boxes and names.
    Save,
    Stop,
}

pub struct RecognizeJob {
    pub events: Receiver<RecognizeEvent>,
    pub control: Sender<RecognizeControl>,
}

/// Recognises faces with run `run_id`'s head on frames from `source`, on a thread.
pub fn spawn_recognition(
    ws: Workspace,
    run_id: String,
    source: SourceSpec,
    weights: Option<PathBuf>,
) -> RecognizeJob {
    let (tx, events) = channel();
    let (control, control_rx) = channel();
    std::thread::spawn(move || {
        let result = guarded(|| play(&ws, &run_id, &source, weights.as_deref(), &tx, &control_rx));
        let _ = tx.send(RecognizeEvent::Finished(result));
    });
    RecognizeJob { events, control }
}

fn play(
    ws: &Workspace,
    run_id: &str,
    source: &SourceSpec,
    weights: Option<&Path>,
    tx: &Sender<RecognizeEvent>,
    control: &Receiver<RecognizeControl>,
) -> Result<u64> {
    let head = crate::run::load_head_in(ws, run_id)?;
    let cascade = Cascade::load(&obtain_face_cascade(None, &ws.models_dir())?)?;
    let backbone = Backbone::obtain(head.meta.backbone, &ws.models_dir(), weights, &NoProgress)?;
    let mut recognizer = Recognizer::new(cascade, &backbone, head, None, MIN_FACE)?;
    let options = StreamOptions {
        fps: (!source.is_camera()).then_some(FOLDER_FPS),
        repeat: !source.is_camera(),
    };
    let mut rate = FrameRate::default();
    let mut paused = false;
    stream(source, &mut recognizer, options, |image, result| {
        let fps = rate.tick(Instant::now());
        let boxes: Vec<(Rect, Rgb<u8>)> = result.faces.iter().map(face_box).collect();
        let event = RecognizeEvent::Frame {
            preview: preview_with_boxes(image, &boxes),
            result: result.clone(),
            fps,
        };
        if tx.send(event).is_err() {
            return false;
        }
        // Commands between frames; while paused, wait here (the stream waits with us).
        loop {
            let next = if paused {
                control.recv().ok()
            } else {
                control.try_recv().ok()
            };
            match next {
                Some(RecognizeControl::Pause) => paused = true,
                Some(RecognizeControl::Resume) => paused = false,
                Some(RecognizeControl::Save) => {
                    let saved = save_annotated(ws, run_id, image, &result);
                    let _ = tx.send(RecognizeEvent::Saved(saved.map_err(|e| e.to_string())));
                }
                // Stopped, or (while paused) the interface is gone.
                Some(RecognizeControl::Stop) => return false,
                None if paused => return false,
                None => return true,
            }
        }
    })
}

/// A face's box in its colour: green when named, red when unknown.
fn face_box(face: &FaceResult) -> (Rect, Rgb<u8>) {
    let [x, y, width, height] = face.rect;
    let colour = if face.unknown {
        Rgb([255, 40, 40])
    } else {
        Rgb([40, 220, 80])
    };
    let rect = Rect {
        x,
        y,
        width,
        height,
    };
    (rect, colour)
}

/// Saves `image` with its faces boxed and named to `recognized/<run>-<frame>.png` in the
/// workspace.
fn save_annotated(
    ws: &Workspace,
    run_id: &str,
    image: &RgbImage,
    result: &FrameResult,
) -> Result<PathBuf> {
    let mut annotated = image.clone();
    for face in &result.faces {
        let (r, colour) = face_box(face);
        let (x0, y0) = (i64::from(r.x), i64::from(r.y));
        let corners = (
            x0,
            y0,
            x0 + i64::from(r.width) - 1,
            y0 + i64::from(r.height) - 1,
        );
        draw_frame(&mut annotated, corners, colour, 3);
    }
    let names: Vec<String> = result
        .faces
        .iter()
        .map(|f| {
            format!(
                "{} {:.2}",
                f.label.as_deref().unwrap_or("unknown"),
                f.confidence
            )
        })
        .collect();
    crate::predict::draw_label(&mut annotated, &names.join(" | "));
    let path = ws
        .root()
        .join("recognized")
        .join(format!("{run_id}-{:06}.png", result.frame));
    crate::predict::save_png(&annotated, &path)?;
    Ok(path)
}

/// Frames per second over a sliding second.
#[derive(Debug, Default)]
struct FrameRate {
    times: std::collections::VecDeque<Instant>,
}

impl FrameRate {
    fn tick(&mut self, now: Instant) -> f64 {
        self.times.push_back(now);
        while self
            .times
            .front()
            .is_some_and(|t| now.duration_since(*t).as_secs_f64() > 1.0)
        {
            self.times.pop_front();
        }
        match (self.times.front(), self.times.len()) {
            (Some(first), n) if n > 1 => {
                (n - 1) as f64 / now.duration_since(*first).as_secs_f64().max(1e-6)
            }
            _ => 0.0,
        }
    }
}
