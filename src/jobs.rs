//! Work that must not block an interface: training runs, sweeps and predictions on background
//! threads, reporting small events over a channel, with cancellation. The TUI drains the channel
//! between frames; nothing here draws. A job that panics (a bug) ends with an error message like
//! any failed job, so the interface that started it stays usable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::backbone::{Backbone, Backbones};
use crate::config::Experiment;
use crate::dataset::ExperimentData;
use crate::error::Result;
use crate::features::FeatureCache;
use crate::predict::{self, Prediction};
use crate::progress::{NoProgress, Progress};
use crate::run::{self, RunEvents, RunSummary};
use crate::sweep::{run_sweep, Sweep, SweepEvents, SweepOutcome, TrialOutcome};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

mod recognize;
pub use recognize::{spawn_recognition, RecognizeControl, RecognizeEvent, RecognizeJob};

/// What a background training run reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Feature extraction: `done` of `total` images.
    Features {
        done: u64,
        total: u64,
    },
    Started {
        run_id: String,
        epochs: usize,
    },
    Epoch(EpochMetrics),
    /// The run ended; errors are already formatted for display.
    Finished(std::result::Result<RunSummary, String>),
}

/// A training run on its own thread: its events, and a way to stop it.
pub struct TrainJob {
    pub events: Receiver<TrainEvent>,
    pub cancel: CancelHandle,
}

/// Stops a training run after its current step; it ends as `interrupted`.
#[derive(Debug, Clone)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts training the experiment file at `experiment` (relative to the workspace) in the
/// background; the file is read and checked there too, so a huge or hostile file never holds up
/// the caller.
pub fn spawn_training(
    ws: Workspace,
    experiment: PathBuf,
    weights: Option<PathBuf>,
    memory_limit: u64,
) -> TrainJob {
    let (tx, events) = channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = TrainJob {
        events,
        cancel: CancelHandle(cancel.clone()),
    };
    std::thread::spawn(move || {
        let result = guarded(|| -> Result<RunSummary> {
            let experiment = Experiment::load(&ws.root().join(&experiment))?;
            let backbones = Backbones::new(&ws.models_dir(), weights.as_deref());
            {
                let progress = ChannelProgress {
                    tx: Mutex::new(tx.clone()),
                    done: Mutex::new((0, 0)),
                };
                let mut events = ChannelEvents {
                    tx: tx.clone(),
                    cancel,
                    epochs: experiment.config.train.epochs,
                };
                run::train_experiment(
                    &ws,
                    &experiment,
                    &backbones,
                    memory_limit,
                    &progress,
                    &mut events,
                )
            }
        });
        let _ = tx.send(TrainEvent::Finished(result));
    });
    job
}

struct ChannelProgress {
    tx: Mutex<Sender<TrainEvent>>,
    done: Mutex<(u64, u64)>,
}

impl Progress for ChannelProgress {
    fn start(&self, _task: &str, total: Option<u64>) {
        *self.done.lock().expect("progress lock") = (0, total.unwrap_or(0));
    }

    fn advance(&self, n: u64) {
        let mut done = self.done.lock().expect("progress lock");
        done.0 += n;
        let (done, total) = *done;
        let _ = self
            .tx
            .lock()
            .expect("sender lock")
            .send(TrainEvent::Features { done, total });
    }

    fn finish(&self) {}
}

struct ChannelEvents {
    tx: Sender<TrainEvent>,
    cancel: Arc<AtomicBool>,
    epochs: usize,
}

impl RunEvents for ChannelEvents {
    fn started(&mut self, run_id: &str, _data: &ExperimentData, _skipped: &[(PathBuf, String)]) {
        let _ = self.tx.send(TrainEvent::Started {
            run_id: run_id.to_owned(),
            epochs: self.epochs,
        });
    }

    fn epoch(&mut self, metrics: &EpochMetrics) {
        let _ = self.tx.send(TrainEvent::Epoch(metrics.clone()));
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// What a background sweep reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepEvent {
    Started {
        sweep_id: String,
        total: usize,
        done: usize,
    },
    TrialFinished(TrialOutcome),
    /// The sweep session ended (all trials done, stopped, or failed).
    Finished(std::result::Result<SweepOutcome, String>),
}

/// A sweep on its own thread: its events, and a way to stop it (running trials end
/// `interrupted`; the sweep resumes when run again).
pub struct SweepJob {
    pub events: Receiver<SweepEvent>,
    pub cancel: CancelHandle,
}

/// Runs (or resumes) the sweep file at `file` (relative to the workspace) in the background.
pub fn spawn_sweep(
    ws: Workspace,
    file: PathBuf,
    weights: Option<PathBuf>,
    memory_limit: u64,
) -> SweepJob {
    let (tx, events) = channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = SweepJob {
        events,
        cancel: CancelHandle(cancel.clone()),
    };
    std::thread::spawn(move || {
        let result = guarded(|| -> Result<SweepOutcome> {
            let sweep = Sweep::load(&ws.root().join(&file))?;
            let backbones = Backbones::new(&ws.models_dir(), weights.as_deref());
            let events = ChannelSweepEvents {
                tx: Mutex::new(tx.clone()),
                cancel,
            };
            run_sweep(&ws, &sweep, &backbones, memory_limit, &NoProgress, &events)
        });
        let _ = tx.send(SweepEvent::Finished(result));
    });
    job
}

struct ChannelSweepEvents {
    tx: Mutex<Sender<SweepEvent>>,
    cancel: Arc<AtomicBool>,
}

impl ChannelSweepEvents {
    fn send(&self, event: SweepEvent) {
        let _ = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(event);
    }
}

impl SweepEvents for ChannelSweepEvents {
    fn started(&self, sweep_id: &str, total: usize, done: usize) {
        self.send(SweepEvent::Started {
            sweep_id: sweep_id.to_owned(),
            total,
            done,
        });
    }

    fn trial_finished(&self, trial: &TrialOutcome) {
        self.send(SweepEvent::TrialFinished(trial.clone()));
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// Predicts one image with a run's head in the background; the answer arrives on the channel.
pub fn spawn_prediction(
    ws: Workspace,
    run_id: String,
    image: PathBuf,
    weights: Option<PathBuf>,
) -> Receiver<std::result::Result<Prediction, String>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let result = guarded(|| -> Result<Prediction> {
            let head = run::load_head_in(&ws, &run_id)?;
            let backbone = Backbone::obtain(
                head.meta.backbone,
                &ws.models_dir(),
                weights.as_deref(),
                &NoProgress,
            )?;
            let cache = FeatureCache::new(ws.feature_cache_dir());
            let (mut predictions, skipped) = predict::predict(
                &backbone,
                &head,
                &cache,
                std::slice::from_ref(&image),
                None,
                &NoProgress,
            )?;
            match predictions.pop() {
                Some(p) => Ok(p),
                None => Err(crate::Error::InvalidArgument(
                    skipped.first().map_or("no prediction".into(), |(p, r)| {
                        format!("{}: {r}", p.display())
                    }),
                )),
            }
        });
        let _ = tx.send(result);
    });
    rx
}

/// Runs a job's work, turning its error, or a panic (a bug), into the message the interface
/// shows.
pub fn guarded<T, E: std::fmt::Display>(
    work: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!(
                "internal error, a bug in facelab (please report it): {what}"
            ))
        }
    }
}

/// What a background capture reports.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureEvent {
    /// A frame was judged: a small preview with the face boxed, what happened, and the counts
    /// so far (saved, and turned away by each gate).
    Frame {
        preview: image::RgbImage,
        outcome: String,
        tally: crate::capture::session::CaptureTally,
        target: Option<usize>,
    },
    /// The session ended: crops saved, or why it stopped.
    Finished(std::result::Result<usize, String>),
}

/// Steering a running capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureControl {
    Pause,
    Resume,
    /// Judge the next frame without saving it.
    Skip,
    Stop,
}

pub struct CaptureJob {
    pub events: Receiver<CaptureEvent>,
    pub control: Sender<CaptureControl>,
}

/// Width of the previews sent to the interface (enough for any terminal's half-blocks).
const PREVIEW_WIDTH: u32 = 320;

/// Captures faces from `source` into `facedata` on a thread (which opens the source itself).
pub fn spawn_capture(
    facedata: PathBuf,
    settings: crate::capture::session::CaptureSettings,
    source: crate::capture::source::SourceSpec,
    cascade: crate::capture::cascade::Cascade,
) -> CaptureJob {
    use crate::capture::session::{CaptureSession, FrameOutcome};
    let (tx, events) = channel();
    let (control, control_rx) = channel::<CaptureControl>();
    std::thread::spawn(move || {
        let result = guarded(|| -> Result<usize> {
            let mut source = source.open()?;
            let mut session = CaptureSession::new(&facedata, settings, cascade)?;
            let (mut paused, mut skip_next) = (false, false);
            while !session.done() {
                for c in control_rx.try_iter() {
                    match c {
                        CaptureControl::Pause => paused = true,
                        CaptureControl::Resume => paused = false,
                        CaptureControl::Skip => skip_next = true,
                        CaptureControl::Stop => return Ok(session.saved()),
                    }
                }
                if paused {
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    continue;
                }
                let Some(frame) = source.next_frame()? else {
                    break;
                };
                let (outcome, face) = if std::mem::take(&mut skip_next) {
                    ("skipped".to_owned(), None)
                } else {
                    let o = session.process(&frame.image, std::time::Instant::now())?;
                    let face = o.face();
                    let done = o == FrameOutcome::Done;
                    (if done { "done".into() } else { o.describe() }, face)
                };
                let preview = preview_with_box(&frame.image, face);
                let event = CaptureEvent::Frame {
                    preview,
                    outcome,
                    tally: session.tally(),
                    target: session.settings().count,
                };
                if tx.send(event).is_err() {
                    return Ok(session.saved());
                }
            }
            Ok(session.saved())
        });
        let _ = tx.send(CaptureEvent::Finished(result));
    });
    CaptureJob { events, control }
}

/// The frame scaled to the preview width with the face's box drawn in red.
fn preview_with_box(
    frame: &image::RgbImage,
    face: Option<crate::capture::cascade::Rect>,
) -> image::RgbImage {
    let red = image::Rgb([255, 40, 40]);
    let boxes: Vec<_> = face.into_iter().map(|f| (f, red)).collect();
    preview_with_boxes(frame, &boxes)
}

/// The frame scaled to the preview width with each box drawn, 2 px wide, in its colour.
pub(crate) fn preview_with_boxes(
    frame: &image::RgbImage,
    boxes: &[(crate::capture::cascade::Rect, image::Rgb<u8>)],
) -> image::RgbImage {
    let scale = (PREVIEW_WIDTH as f64 / frame.width() as f64).min(1.0);
    let (w, h) = (
        ((frame.width() as f64) * scale).round().max(1.0) as u32,
        ((frame.height() as f64) * scale).round().max(1.0) as u32,
    );
    let mut preview = image::imageops::resize(frame, w, h, image::imageops::FilterType::Triangle);
    for &(f, colour) in boxes {
        let s = |v: i32| (v as f64 * scale).round() as i64;
        let corners = (s(f.x), s(f.y), s(f.x + f.width) - 1, s(f.y + f.height) - 1);
        draw_frame(&mut preview, corners, colour, 2);
    }
    preview
}

/// An outline `thickness` px wide, inside the corners `(x0, y0, x1, y1)` (inclusive), clipped
/// to the image.
pub(crate) fn draw_frame(
    image: &mut image::RgbImage,
    (x0, y0, x1, y1): (i64, i64, i64, i64),
    colour: image::Rgb<u8>,
    thickness: i64,
) {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            image.put_pixel(x as u32, y as u32, colour);
        }
    };
    for t in 0..thickness {
        for x in x0..=x1 {
            put(x, y0 + t);
            put(x, y1 - t);
        }
        for y in y0..=y1 {
            put(x0 + t, y);
            put(x1 - t, y);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{save_meta, save_params, HeadMeta};
    use crate::train::head::HeadParams;

    #[test]
    fn a_panicking_job_ends_with_an_error_naming_the_panic() {
        let result = guarded(|| -> Result<()> { panic!("index out of bounds") });
        let e = result.unwrap_err();
        assert!(
            e.contains("internal error") && e.contains("index out of bounds"),
            "{e}"
        );
        assert_eq!(guarded(|| -> Result<u8> { Ok(7) }), Ok(7));
    }

    #[test]
    fn predicting_with_a_head_json_that_lists_too_few_labels_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        let run_dir = ws.run_dir("abcd1234");
        std::fs::create_dir_all(&run_dir).unwrap();
        save_params(
            &run_dir.join(crate::model::HEAD_FILE),
            &HeadParams::init(crate::backbone::FEATURE_DIM, &[], 4, 1),
        )
        .unwrap();
        let meta = HeadMeta {
            classes: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            labels: vec!["a".into(), "b".into()],
            resize: crate::image_prep::ResizeMode::Squash,
            l2_normalize: false,
            backbone: crate::backbone::BackboneKind::MobilenetV2,
            weights_sha256: "w".into(),
            flip_average: false,
            open_set: None,
        };
        save_meta(&run_dir, &meta).unwrap();
        let rx = spawn_prediction(ws, "abcd1234".into(), dir.path().join("x.png"), None);
        let e = rx.recv().unwrap().unwrap_err();
        assert!(e.contains("head.json") && e.contains("2 labels"), "{e}");
    }
}
