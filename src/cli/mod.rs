//! The command line: one clap definition for every subcommand, each handled by a small function
//! over the library. Results go to stdout (JSON lines where scripts read them), progress and
//! diagnostics to stderr.

mod bench;
mod capture;
mod detect;
mod embed;
mod features;
mod predict;
mod progress;
mod recognize;
mod runs;
mod status;
mod store;
mod sweep;
mod train;
mod worker;

use facelab::store::RunColumn;
use facelab::train::memory;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use facelab::backbone::{Backbone, BackboneKind, Backbones, MobileNet};
use facelab::image_prep::ResizeMode;
use facelab::workspace::Workspace;

#[derive(Parser)]
#[command(
    name = "facelab",
    version,
    about = "Face recognition by transfer learning: datasets, features, experiments, runs"
)]
struct Cli {
    /// The workspace folder (holds experiments/, facedata/, models/, facelab.db).
    #[arg(long, global = true, default_value = ".", env = "FACELAB_WORKSPACE")]
    workspace: PathBuf,

    /// Keep runs and sweeps in this PostgreSQL database (postgres://user@host/db) instead of
    /// the workspace's facelab.db.
    #[arg(long, global = true, env = "FACELAB_STORE", value_name = "URL", value_parser = store_url)]
    store: Option<String>,

    /// A MobileNetV2 weights file to use instead of the cached or fetched one.
    #[arg(long, global = true, env = "FACELAB_WEIGHTS")]
    weights: Option<PathBuf>,

    /// Refuse a training run estimated to need more memory than this (e.g. 4G, 512M); by
    /// default half of this machine's memory.
    #[arg(long, global = true, env = "FACELAB_MEMORY_LIMIT", value_parser = memory::parse_size)]
    memory_limit: Option<u64>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every run and sweep of one store into another (a facelab.db file or a
    /// postgres:// URL, either way); runs already there (by id) are left as they are, so
    /// copying again adds nothing.
    Copy {
        #[arg(long, value_name = "FILE_OR_URL")]
        from: String,
        #[arg(long, value_name = "FILE_OR_URL")]
        to: String,
    },
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Detect the face in each photo of a folder and save the crops for one person (one crop
    /// per photo with a face; the capture gates are off unless asked for).
    Import {
        dir: PathBuf,
        #[arg(long)]
        person: String,
        #[command(flatten)]
        gates: capture::GateArgs,
    },
    /// People, images per split, near-duplicates and too-small images in facedata/.
    Stats {
        /// Images with a shorter side below this are reported as too small.
        #[arg(long, default_value_t = 64)]
        min_size: u32,
        #[arg(long, default_value_t = 3.0)]
        duplicate_distance: f32,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SweepCommand {
    /// A sweep's trials sorted by its metric, the selected trial and parameter importance.
    Show {
        sweep: String,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Print the selected (or given) trial's resolved experiment, to save as a new experiment.
    Export { sweep: String, trial: Option<usize> },
    /// Continue a sweep from the file it was run from.
    Resume { sweep: String },
}

#[derive(Subcommand)]
enum Command {
    /// Print the features of images (1280 from MobileNetV2, 128 from dlib_resnet), one JSON
    /// object per line.
    Embed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// squash (whole image to 224x224) or center-crop (torchvision's eval transform).
        #[arg(long, default_value = "squash")]
        resize: ResizeMode,
        /// Also print the ImageNet top-5 class ids, to sanity-check the weights on a photo.
        #[arg(long)]
        top5: bool,
        /// mobilenet_v2 (ImageNet features, 1280) or dlib_resnet (dlib's face descriptor, 128:
        /// the largest face the Haar cascade finds, else the whole image as a capture crop).
        #[arg(long, default_value = "mobilenet_v2")]
        backbone: BackboneKind,
    },
    /// Extract and cache the features of every image under a folder (default: facedata/).
    Features {
        dir: Option<PathBuf>,
        #[arg(long, default_value = "squash")]
        resize: ResizeMode,
        /// mobilenet_v2 or dlib_resnet (what an experiment's `backbone:` would use).
        #[arg(long, default_value = "mobilenet_v2")]
        backbone: BackboneKind,
    },
    /// Train a head as an experiment file describes; records the run in facelab.db.
    Train {
        experiment: PathBuf,
        /// Override one key of the experiment, e.g. --set train.optimizer.lr=0.01 or --set
        /// head.hidden=[512] (the value is YAML; checked like the file; repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// List runs.
    Runs {
        /// Column to sort by, best first (newest, highest accuracy, lowest loss; names
        /// A-Z): started, id, experiment, status, val_accuracy, val_loss, test_accuracy,
        /// epochs, duration.
        #[arg(long, default_value = "started")]
        sort: RunColumn,
        /// Worst first instead (runs without the figure still come last).
        #[arg(long)]
        reverse: bool,
        /// One JSON array of run objects.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// A run's epochs, confusion matrix, per-class precision and recall, open-set threshold and
    /// figures, and config.
    Show {
        run: String,
        /// One JSON object: the run, its epochs, confusion matrix and open-set report (threshold,
        /// figures and every score).
        #[arg(long)]
        json: bool,
    },
    /// Name the faces in images (or folders of images) with a run's head.
    Predict {
        run: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One JSON object per line: path, predicted (folder name, null when unknown), label,
        /// confidence, unknown, score, threshold.
        #[arg(long)]
        json: bool,
        /// Also write each image with its predicted name drawn on it into this folder.
        #[arg(long, value_name = "OUT_DIR")]
        annotate: Option<PathBuf>,
        /// Call a face unknown below this acceptance score instead of the run's calibrated
        /// threshold (a probability, or a cosine for cosine and centroid heads).
        #[arg(long, value_name = "SCORE", allow_negative_numbers = true, value_parser = finite_score)]
        threshold: Option<f64>,
    },
    /// Name faces live: detect faces in each frame of a camera or a folder of photos, name
    /// them with a run's head (unknown below its threshold), follow them as tracks.
    Recognize(recognize::RecognizeArgs),
    /// Delete runs: their records and saved heads. A run still training is refused.
    Rm {
        #[arg(required = true)]
        runs: Vec<String>,
        /// Needed to delete more than one run at once.
        #[arg(long)]
        yes: bool,
    },
    /// Find faces with OpenCV's Haar cascade; one JSON object per line: {"path", "faces": [[x, y, w, h], ...]}.
    Detect {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How much the window grows per level (detectMultiScale's scaleFactor).
        #[arg(long, default_value_t = 1.3)]
        scale: f64,
        /// Hits a face needs beyond the first (detectMultiScale's minNeighbors).
        #[arg(long, default_value_t = 5)]
        neighbors: u32,
        /// Smallest face side in pixels.
        #[arg(long, default_value_t = 0)]
        min_size: u32,
        /// Largest face side in pixels.
        #[arg(long)]
        max_size: Option<u32>,
        /// The cascade XML (default: OpenCV's haarcascade_frontalface_default.xml where installed).
        #[arg(long)]
        cascade: Option<PathBuf>,
    },
    /// Capture face crops of one person from a camera or a folder of photos into facedata/.
    Capture {
        #[arg(long)]
        person: String,
        /// Crops to save.
        #[arg(long, default_value_t = 15)]
        count: usize,
        /// camera:N (a webcam through nokhwa) or dir:PATH (photos).
        #[arg(long, default_value = "camera:0")]
        source: String,
        /// Least time between two saves (default 300 ms from a camera, 0 from photos).
        #[arg(long)]
        interval_ms: Option<u64>,
        #[command(flatten)]
        gates: capture::GateArgs,
    },
    /// Run stores: move a history between a facelab.db file and a PostgreSQL database.
    Store {
        #[command(subcommand)]
        what: StoreCommand,
    },
    /// Datasets: import photos, survey facedata/.
    Dataset {
        #[command(subcommand)]
        what: DatasetCommand,
    },
    /// Run a sweep file (or resume it: running the same file again continues where it
    /// stopped); `sweep show|export|resume ID` for a recorded sweep.
    #[command(args_conflicts_with_subcommands = true)]
    Sweep {
        file: Option<PathBuf>,
        /// Queue the sweep's trials in the store for `facelab worker` processes (on this or
        /// other machines sharing a --store) and return, instead of running them here.
        #[arg(long, requires = "file")]
        queue_only: bool,
        #[command(subcommand)]
        what: Option<SweepCommand>,
    },
    /// Claim queued sweep trials from the store and run them, one at a time, until stopped
    /// (start any number, on any machines that share the --store and the dataset).
    Worker(worker::WorkerArgs),
    /// List sweeps with their progress and best figure.
    Sweeps {
        /// One JSON array of sweep objects (id, name, status, finished_trials, total_trials, ...).
        #[arg(long)]
        json: bool,
    },
    /// Measure speed.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Show what the workspace holds and what to do next.
    Status,
    /// The terminal UI (also what `facelab` alone opens).
    Tui,
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if !cli.workspace.is_dir() {
        anyhow::bail!(
            "workspace {}: not a folder; give --workspace an existing folder (it holds experiments/, facedata/, models/ and facelab.db)",
            crate::text::path(&cli.workspace)
        );
    }
    let workspace = Workspace::new(&cli.workspace).with_store_url(cli.store);
    let context = Context {
        workspace,
        weights: cli.weights,
        memory_limit: cli.memory_limit.unwrap_or_else(memory::default_limit),
    };
    match cli.command.unwrap_or(Command::Tui) {
        Command::Tui => {
            crate::tui::run(context.workspace, context.weights, context.memory_limit)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed {
            images,
            resize,
            top5,
            backbone: BackboneKind::MobilenetV2,
        } => embed::run(&context, &images, resize, top5),
        Command::Embed { top5: true, .. } => {
            anyhow::bail!("--top5 is MobileNetV2's ImageNet classes: drop it, or use --backbone mobilenet_v2")
        }
        Command::Embed {
            images,
            backbone: BackboneKind::DlibResnet,
            ..
        } => embed::run_dlib(&context, &images),
        Command::Features {
            dir,
            resize,
            backbone,
        } => features::run(&context, dir, resize, backbone),
        Command::Bench { what } => bench::run(&context, what),
        Command::Status => status::run(&context),
        Command::Train {
            experiment,
            overrides,
        } => train::run(&context, &experiment, &overrides),
        Command::Runs {
            sort,
            reverse,
            json,
            csv,
        } => {
            runs::list(&context, sort, reverse, runs::Format::from_flags(json, csv))
        }
        Command::Show { run, json } => runs::show(&context, &run, json),
        Command::Sweeps { json } => sweep::list(&context, json),
        Command::Sweep {
            file: Some(file),
            queue_only: true,
            ..
        } => worker::enqueue(&context, &file),
        Command::Worker(args) => worker::run(&context, args),
        Command::Sweep { file, what, .. } => match (file, what) {
            (_, Some(SweepCommand::Show { sweep: id, json, csv })) => {
                sweep::show(&context, &id, runs::Format::from_flags(json, csv))
            }
            (_, Some(SweepCommand::Export { sweep: id, trial })) => {
                sweep::export(&context, &id, trial)
            }
            (_, Some(SweepCommand::Resume { sweep: id })) => sweep::resume(&context, &id),
            (Some(file), None) => sweep::run(&context, &file),
            (None, None) => anyhow::bail!(
                "give a sweep file (facelab sweep experiments/sweeps/recommended.yaml) or show|export|resume ID"
            ),
        },
        Command::Predict {
            run,
            images,
            json,
            annotate,
            threshold,
        } => predict::run(
            &context,
            &run,
            &images,
            json,
            annotate.as_deref(),
            threshold,
        ),
        Command::Recognize(args) => recognize::run(&context, args),
        Command::Rm { runs: ids, yes } => runs::remove(&context, &ids, yes),
        Command::Capture {
            person,
            count,
            source,
            interval_ms,
            gates,
        } => capture::capture(&context, &person, count, &source, interval_ms, &gates),
        Command::Store {
            what: StoreCommand::Copy { from, to },
        } => store::copy(&from, &to),
        Command::Dataset { what } => match what {
            DatasetCommand::Import { dir, person, gates } => {
                capture::import(&context, &dir, &person, &gates)
            }
            DatasetCommand::Stats {
                min_size,
                duplicate_distance,
                json,
            } => capture::stats(&context, min_size, duplicate_distance, json),
        },
        Command::Detect {
            images,
            scale,
            neighbors,
            min_size,
            max_size,
            cascade,
        } => {
            if scale.is_nan() || scale <= 1.0 {
                anyhow::bail!("--scale {scale}: must be greater than 1 (the notebook used 1.3)");
            }
            let params = facelab::capture::cascade::DetectParams {
                scale_factor: scale,
                min_neighbors: neighbors,
                min_size,
                max_size,
            };
            detect::run(
                &images,
                params,
                cascade.as_deref(),
                &context.workspace.models_dir(),
            )
        }
    }
}

/// What every command may need: the workspace and the weights override.
pub struct Context {
    workspace: Workspace,
    weights: Option<PathBuf>,
    /// Bytes a training run may be estimated to need.
    memory_limit: u64,
}

impl Context {
    /// Finds (or fetches) verified weights: the file's path.
    fn weights_path(&self) -> anyhow::Result<PathBuf> {
        let models_dir = self.workspace.models_dir();
        let user_cache = facelab::backbone::weights::user_cache_dir();
        let request = facelab::backbone::weights::WeightsRequest {
            explicit: self.weights.as_deref(),
            models_dir: &models_dir,
            user_cache: user_cache.as_deref(),
            allow_fetch: true,
        };
        Ok(facelab::backbone::weights::obtain(
            &request,
            &progress::Bar::new(),
        )?)
    }

    /// Finds (or fetches) verified weights and loads the backbone of `kind`.
    fn backbone(&self, kind: BackboneKind) -> anyhow::Result<Backbone> {
        let models_dir = self.workspace.models_dir();
        Ok(Backbone::obtain(
            kind,
            &models_dir,
            self.weights.as_deref(),
            &progress::Bar::new(),
        )?)
    }

    /// MobileNetV2 itself, for what only it offers (ImageNet classes, its own benchmark).
    fn mobilenet(&self) -> anyhow::Result<MobileNet> {
        let models_dir = self.workspace.models_dir();
        Ok(MobileNet::obtain(
            &models_dir,
            self.weights.as_deref(),
            &progress::Bar::new(),
        )?)
    }

    /// Each backbone loaded when an experiment first asks for it.
    fn backbones(&self) -> Backbones {
        Backbones::new(&self.workspace.models_dir(), self.weights.as_deref())
    }
}

/// A `--threshold`: a finite number.
pub(crate) fn finite_score(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "'{text}' is not a score; give a number such as 0.5 (probability) or 0.3 (cosine)"
        )),
    }
}

/// Set once SIGINT or SIGTERM arrives, after [`stop_on_signal`].
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets SIGINT and SIGTERM set a flag instead of ending the process, so a long command
/// (`worker`, `recognize`) finishes what it holds before it stops; returns the flag.
fn stop_on_signal() -> anyhow::Result<&'static std::sync::atomic::AtomicBool> {
    ctrlc::set_handler(|| STOP.store(true, std::sync::atomic::Ordering::Relaxed))?;
    Ok(&STOP)
}

/// A duration in seconds: a positive number (at most 10^7, so it always makes a Duration).
pub(crate) fn seconds(text: &str) -> Result<f64, String> {
    positive_number(text, "a number of seconds", "60")
}

/// A `--fps`: a positive rate.
pub(crate) fn frames_per_second(text: &str) -> Result<f64, String> {
    positive_number(text, "a frame rate", "15")
}

fn positive_number(text: &str, what: &str, example: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e7 => Ok(v),
        _ => Err(format!(
            "'{text}' is not {what}; give a positive number such as {example}"
        )),
    }
}

/// A `--store`: a PostgreSQL URL.
fn store_url(text: &str) -> Result<String, String> {
    if facelab::store::is_server_url(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not a PostgreSQL URL; give postgres://user@host/database (leave --store out to use the workspace's facelab.db)"
        ))
    }
}
