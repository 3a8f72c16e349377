//! Work that must not block an interface: training runs and predictions on background threads,
//! reporting small events over a channel, with cancellation. The TUI drains the channel between
//! frames; nothing here draws.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::backbone::weights::{self, WeightsRequest};
use crate::backbone::Backbone;
use crate::config::Experiment;
use crate::dataset::ExperimentData;
use crate::error::Result;
use crate::features::FeatureCache;
use crate::model::{self, TrainedHead};
use crate::predict::{self, Prediction};
use crate::progress::{NoProgress, Progress};
use crate::run::{self, RunEvents, RunSummary};
use crate::train::EpochMetrics;
use crate::workspace::Workspace;

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

/// Loads verified weights (fetching them if needed) and the backbone.
pub fn load_backbone(
    ws: &Workspace,
    explicit_weights: Option<&std::path::Path>,
) -> Result<Backbone> {
    let models_dir = ws.models_dir();
    let request = WeightsRequest {
        explicit: explicit_weights,
        models_dir: &models_dir,
        allow_fetch: true,
    };
    Backbone::load(&weights::obtain(&request, &NoProgress)?)
}

/// Starts training `experiment` in the background.
pub fn spawn_training(ws: Workspace, experiment: Experiment, weights: Option<PathBuf>) -> TrainJob {
    let (tx, events) = channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = TrainJob {
        events,
        cancel: CancelHandle(cancel.clone()),
    };
    std::thread::spawn(move || {
        let result = load_backbone(&ws, weights.as_deref()).and_then(|backbone| {
            let progress = ChannelProgress {
                tx: Mutex::new(tx.clone()),
                done: Mutex::new((0, 0)),
            };
            let mut events = ChannelEvents {
                tx: tx.clone(),
                cancel,
                epochs: experiment.config.train.epochs,
            };
            run::train_experiment(&ws, &experiment, &backbone, &progress, &mut events)
        });
        let _ = tx.send(TrainEvent::Finished(result.map_err(|e| e.to_string())));
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
    fn started(&mut self, run_id: &str, _data: &ExperimentData) {
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

/// Predicts one image with a run's head in the background; the answer arrives on the channel.
pub fn spawn_prediction(
    ws: Workspace,
    run_id: String,
    image: PathBuf,
    weights: Option<PathBuf>,
) -> Receiver<std::result::Result<Prediction, String>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let result = (|| -> Result<Prediction> {
            let head = TrainedHead::load(&model::run_dir(&ws.models_dir(), &run_id))?;
            let backbone = load_backbone(&ws, weights.as_deref())?;
            let cache = FeatureCache::new(ws.feature_cache_dir());
            let (mut predictions, skipped) = predict::predict(
                &backbone,
                &head,
                &cache,
                std::slice::from_ref(&image),
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
        })();
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    rx
}
