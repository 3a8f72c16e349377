//! `facelab bench ...`: speed measurements to compare with the anchors in the same session.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context as _;

use clap::Subcommand;
use facelab::backbone::BackboneKind;
use facelab::bench;

use super::Context;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Live recognition over the images of DIR as frames: median ms per frame with each
    /// phase (detection, crops + backbone, head + tracking) and frames per second, with RUN's
    /// head (default: a linear head over 4 people with random weights; the head's cost is
    /// negligible either way). Threads: RAYON_NUM_THREADS (default: every core).
    Recognize {
        dir: PathBuf,
        #[arg(long)]
        run: Option<String>,
        #[arg(long, default_value_t = 80)]
        min_size: u32,
        /// Timed passes over the folder.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long)]
        cascade: Option<PathBuf>,
    },
    /// The store as a work queue: trials claimed and recorded per second (run, epochs,
    /// heartbeat, confusion matrix, head, completion; no training) by 1, 2 and 4 workers, each
    /// with its own connection, in a throwaway schema of the --store server (or a temporary
    /// SQLite file without --store).
    Store {
        #[arg(long, num_args = 1.., default_values_t = [1, 2, 4])]
        workers: Vec<usize>,
        /// Trials per measurement.
        #[arg(long, default_value_t = 400)]
        trials: usize,
        /// Epochs each trial records.
        #[arg(long, default_value_t = 20)]
        epochs: usize,
        /// Bytes of each trial's head (a linear head over 1280 features for 4 people: 20 KB).
        #[arg(long, default_value_t = 20_688)]
        head_bytes: usize,
    },
    /// Backbone features: ms/image at each batch size (median after warm-up).
    Backbone {
        /// Batch sizes to time.
        #[arg(long, num_args = 1.., default_values_t = [1, 8, 32])]
        batch: Vec<usize>,
        /// Timed runs per batch size.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// mobilenet_v2 (224x224 images) or dlib_resnet (150x150 face chips).
        #[arg(long, default_value = "mobilenet_v2")]
        backbone: BackboneKind,
    },
    /// The TUI: first frame with N runs in the store, and each key's update + redraw.
    Tui {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 500)]
        keys: usize,
        /// Also the Recognize screen while this many frames flow (a key between each two).
        #[arg(long, default_value_t = 300)]
        frames: usize,
    },
    /// Face detection: median ms per image over the photos in DIR, one thread, the notebook's
    /// parameters (scale 1.3, 5 neighbours).
    Detect {
        dir: PathBuf,
        #[arg(long)]
        cascade: Option<PathBuf>,
        /// Passes over the folder.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Smallest face side looked for (a capture session uses its size gate, 80).
        #[arg(long, default_value_t = 0)]
        min_size: u32,
    },
    /// A whole experiment, as `facelab train` runs it (a new process each time, so process
    /// start and loading the weights count): first in a fresh temporary workspace (empty
    /// feature cache and run store), then again there (warm cache). Prints both wall times with
    /// each phase's share.
    Experiment {
        #[arg(default_value = "experiments/seed.yaml")]
        experiment: PathBuf,
        /// Cold + warm pairs to run.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
    },
    /// Augmentation: median ms to make one copy of a training image (the experiment's
    /// `augment` settings applied to the 224x224 input square, one thread) over its images.
    Augment {
        #[arg(default_value = "experiments/seed.yaml")]
        experiment: PathBuf,
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// A sweep in a fresh temporary workspace, in this process: per trial, the wall time, the
    /// time in training steps, and the overhead beyond them (claiming, store writes, saving
    /// the head). Trials run one at a time so the accounting is clean.
    Sweep {
        #[arg(default_value = "experiments/sweeps/recommended.yaml")]
        sweep: PathBuf,
        /// Trials to run instead of the file's (random and TPE sweeps).
        #[arg(long)]
        trials: Option<usize>,
    },
    /// Head training: ms per step (forward, backward to the inputs, then the weight gradients
    /// with RMSprop) over random features.
    Train {
        /// Hidden layer sizes.
        #[arg(long, num_args = 1.., default_values_t = [1024, 512])]
        hidden: Vec<usize>,
        #[arg(long, default_value_t = 4)]
        classes: usize,
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 200)]
        steps: usize,
    },
}

pub fn run(ctx: &Context, what: BenchCommand) -> anyhow::Result<ExitCode> {
    match what {
        BenchCommand::Backbone {
            batch,
            runs,
            backbone: BackboneKind::DlibResnet,
        } => {
            let path = facelab::backbone::dlib::weights::obtain(
                facelab::backbone::dlib::weights::RESNET,
                None,
                &ctx.workspace.models_dir(),
                &super::progress::Bar::new(),
            )?;
            let net = facelab::backbone::dlib::resnet::read(&std::fs::read(&path)?, &path)?;
            let threads = rayon::current_num_threads();
            for b in batch {
                let ms = bench::face_chips(&net, b.max(1), runs);
                println!(
                    "facelab dlib_resnet threads={threads} batch={}: {ms:.2} ms/chip ({:.1} chips/s)",
                    b.max(1),
                    1000.0 / ms
                );
            }
        }
        BenchCommand::Backbone {
            batch,
            runs,
            backbone: BackboneKind::MobilenetV2,
        } => {
            let backbone = ctx.mobilenet()?;
            let threads = rayon::current_num_threads();
            for b in batch {
                let r = bench::backbone(&backbone, b.max(1), runs);
                let memory = r
                    .peak_rss_mb
                    .map_or(String::new(), |mb| format!(", peak RSS {mb:.0} MB"));
                println!(
                    "facelab backbone threads={threads} batch={}: {:.2} ms/image ({:.1} images/s{memory})",
                    r.batch,
                    r.ms_per_image,
                    1000.0 / r.ms_per_image
                );
            }
        }
        BenchCommand::Tui { runs, keys, frames } => {
            let (first, median, worst) = crate::tui::bench(runs, keys.max(1))?;
            println!("facelab tui runs={runs}: first frame {first:.1} ms; key + redraw median {median:.2} ms, worst {worst:.2} ms over {keys} keys");
            if frames > 0 {
                let [(frame, frame_worst), (key, key_worst)] =
                    crate::tui::bench_recognize_screen(frames)?;
                println!("facelab tui recognize screen, {frames} frames of 320x240 with two faces: frame + redraw median {frame:.2} ms, worst {frame_worst:.2} ms; key + redraw median {key:.2} ms, worst {key_worst:.2} ms");
            }
        }
        BenchCommand::Detect {
            dir,
            cascade,
            rounds,
            min_size,
        } => {
            use facelab::capture::cascade::{obtain_face_cascade, to_gray, Cascade, DetectParams};
            let cascade = Cascade::load(&obtain_face_cascade(
                cascade.as_deref(),
                &ctx.workspace.models_dir(),
            )?)?;
            let images: Vec<image::GrayImage> = facelab::dataset::list_images(&dir)?
                .images
                .iter()
                .filter_map(|p| facelab::image_prep::load(p).ok().map(|im| to_gray(&im)))
                .collect();
            anyhow::ensure!(
                !images.is_empty(),
                "no readable images under {}",
                dir.display()
            );
            let (w, h) = images[0].dimensions();
            let params = DetectParams {
                min_size,
                ..DetectParams::default()
            };
            let ms = bench::detect(&cascade, &images, &params, rounds);
            println!(
                "facelab detect threads=1 images={} ({w}x{h} first) min_size={min_size}: {ms:.2} ms/image median",
                images.len()
            );
        }
        BenchCommand::Experiment { experiment, rounds } => {
            let loaded = facelab::config::Experiment::load(&experiment)?;
            let weights = ctx.weights_path()?;
            for _ in 0..rounds.max(1) {
                let (dir, copy) = bench::cold_workspace(ctx.workspace.root(), &loaded)?;
                for cache in ["cold", "warm"] {
                    let (wall, phases) = time_training(dir.path(), &weights, &copy)?;
                    println!(
                        "facelab experiment {} ({cache} cache): {wall:.2} s wall = {}",
                        loaded.name(),
                        shares(wall, &phases)
                    );
                }
            }
        }
        BenchCommand::Augment { experiment, rounds } => {
            let loaded = facelab::config::Experiment::load(&experiment)?;
            let data = facelab::dataset::ExperimentData::load(ctx.workspace.root(), &loaded)?;
            let resize = loaded.config.data.resize;
            let squares: Vec<image::RgbImage> = data
                .train
                .iter()
                .filter_map(|i| facelab::image_prep::load(&i.path).ok())
                .map(|im| facelab::image_prep::to_input_size(&im, resize))
                .collect();
            anyhow::ensure!(!squares.is_empty(), "no readable training images");
            let ms = bench::augment(&squares, &loaded.config.augment, rounds);
            println!(
                "facelab augment {} threads=1 images={}: {ms:.3} ms/copy (median)",
                loaded.name(),
                squares.len()
            );
        }
        BenchCommand::Sweep { sweep, trials } => bench_sweep(ctx, &sweep, trials)?,
        BenchCommand::Recognize {
            dir,
            run,
            min_size,
            rounds,
            cascade,
        } => bench_recognize(
            ctx,
            &dir,
            run.as_deref(),
            min_size,
            rounds,
            cascade.as_deref(),
        )?,
        BenchCommand::Store {
            workers,
            trials,
            epochs,
            head_bytes,
        } => {
            let location = ctx.workspace.store_location();
            let url = facelab::store::is_server_url(&location).then_some(location.as_str());
            let shown = url.map_or(
                "a temporary SQLite file".into(),
                facelab::store::redacted_url,
            );
            let shape = bench::store::TrialShape {
                epochs,
                classes: 4,
                head_bytes,
            };
            for w in workers {
                let r = bench::store::store_throughput(url, w.max(1), trials.max(1), shape)?;
                println!(
                    "facelab store workers={} trials={} epochs/trial={epochs} head={head_bytes} B on {shown}: {:.1} trials claimed+recorded per second ({:.1} ms per trial per worker)",
                    r.workers,
                    r.trials,
                    r.trials_per_second(),
                    1000.0 * r.seconds * r.workers as f64 / r.trials as f64
                );
            }
        }
        BenchCommand::Train {
            hidden,
            classes,
            batch,
            steps,
        } => {
            let r = bench::train_step(&hidden, classes.max(2), batch.max(1), steps);
            let share = |ms: f64| 100.0 * ms / r.ms_per_step;
            println!(
                "facelab train head={hidden:?} classes={classes} batch={batch} params={}: {:.2} ms/step (forward {:.2} = {:.0}%, backward {:.2} = {:.0}%, weight gradients + RMSprop {:.2} = {:.0}%)",
                r.parameters,
                r.ms_per_step,
                r.ms_forward,
                share(r.ms_forward),
                r.ms_backward,
                share(r.ms_backward),
                r.ms_update,
                share(r.ms_update),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `facelab train` on `experiment` in `workspace` as a new process: its wall time and the
/// phase times it printed.
fn time_training(
    workspace: &Path,
    weights: &Path,
    experiment: &Path,
) -> anyhow::Result<(f64, Vec<(String, f64)>)> {
    let exe = std::env::current_exe().context("finding facelab's own executable")?;
    let start = Instant::now();
    let output = Command::new(exe)
        .arg("--workspace")
        .arg(workspace)
        .arg("--weights")
        .arg(weights)
        .arg("train")
        .arg(experiment)
        .output()
        .context("starting facelab train")?;
    let wall = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "facelab train {} failed:\n{}{}",
        experiment.display(),
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(super::train::PHASES_PREFIX))
        .context("facelab train printed no phase times")?;
    let phases = line
        .split(", ")
        .map(|part| {
            let (name, seconds) = part.split_once(' ').context("a phase is 'name N s'")?;
            let seconds = seconds.trim_end_matches(" s").parse::<f64>()?;
            Ok((name.to_owned(), seconds))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((wall, phases))
}

/// `start 0.10 s (4%), dataset ...`: the phases with their shares of `wall`; "start" is what the
/// run's own phases do not cover (process start, loading and checking the weights).
fn shares(wall: f64, phases: &[(String, f64)]) -> String {
    let start = wall - phases.iter().map(|(_, s)| s).sum::<f64>();
    std::iter::once(("start", start))
        .chain(phases.iter().map(|(n, s)| (n.as_str(), *s)))
        .map(|(name, s)| format!("{name} {s:.2} s ({:.0}%)", 100.0 * s / wall))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bench_sweep(ctx: &Context, path: &Path, trials: Option<usize>) -> anyhow::Result<()> {
    let loaded = facelab::sweep::Sweep::load(path)?;
    let (dir, file) = bench::cold_sweep_workspace(ctx.workspace.root(), &loaded, trials)?;
    let mut sweep = facelab::sweep::Sweep::load(&file)?;
    sweep.spec.parallel = 1;
    let workspace = facelab::workspace::Workspace::new(dir.path());
    let backbones = ctx.backbones();
    struct Quiet;
    impl facelab::sweep::SweepEvents for Quiet {}
    let start = Instant::now();
    let outcome = facelab::sweep::run_sweep(
        &workspace,
        &sweep,
        &backbones,
        ctx.memory_limit,
        &facelab::progress::NoProgress,
        &Quiet,
    )?;
    let wall = start.elapsed().as_secs_f64();
    let ran = &outcome.ran;
    anyhow::ensure!(!ran.is_empty(), "the sweep ran no trials");
    let mut overhead: Vec<f64> = ran
        .iter()
        .map(|t| 1000.0 * (t.wall_seconds - t.step_seconds - t.feature_seconds))
        .collect();
    let steps: f64 = ran.iter().map(|t| t.step_seconds).sum();
    let features: f64 = ran.iter().map(|t| t.feature_seconds).sum();
    let trial_wall: f64 = ran.iter().map(|t| t.wall_seconds).sum();
    let mean = overhead.iter().sum::<f64>() / overhead.len() as f64;
    let worst = overhead.iter().copied().fold(0.0, f64::max);
    println!(
        "facelab sweep {} method={} trials={}: {wall:.2} s wall = features {:.2} s + trials {trial_wall:.2} s ({steps:.2} s training steps, {features:.2} s features for new data settings); overhead per trial beyond its steps and features: median {:.1} ms, mean {mean:.1} ms, worst {worst:.1} ms",
        sweep.name(),
        sweep.spec.method.as_str(),
        ran.len(),
        outcome.prepare_seconds,
        bench::median(&mut overhead),
    );
    Ok(())
}

fn bench_recognize(
    ctx: &Context,
    dir: &Path,
    run: Option<&str>,
    min_size: u32,
    rounds: usize,
    cascade: Option<&Path>,
) -> anyhow::Result<()> {
    use facelab::capture::cascade::{obtain_face_cascade, Cascade};
    let (head, backbone) = match run {
        Some(id) => {
            let store = facelab::run::open_store(&ctx.workspace)?;
            let record = store.run(id)?;
            let head = facelab::run::load_head(&store, &ctx.workspace, &record.id)?;
            let backbone = ctx.backbone(head.meta.backbone)?;
            (head, backbone)
        }
        None => {
            let backbone = ctx.backbone(BackboneKind::MobilenetV2)?;
            let head = facelab::model::TrainedHead::random_for_bench(backbone.weights_sha256(), 4);
            (head, backbone)
        }
    };
    let cascade = Cascade::load(&obtain_face_cascade(cascade, &ctx.workspace.models_dir())?)?;
    let frames: Vec<image::RgbImage> = facelab::dataset::list_images(dir)?
        .images
        .iter()
        .filter_map(|p| facelab::image_prep::load(p).ok())
        .collect();
    anyhow::ensure!(
        !frames.is_empty(),
        "no readable images under {}",
        dir.display()
    );
    let mut recognizer =
        facelab::recognize::Recognizer::new(cascade, &backbone, head, None, min_size)?;
    let r = bench::recognize(&mut recognizer, &frames, rounds);
    let (w, h) = frames[0].dimensions();
    println!(
        "facelab recognize threads={} frames={} ({w}x{h} first) faces/frame={:.2} min_size={min_size}: {:.2} ms/frame median = {:.1} frames/s (detect {:.2}, crops + backbone {:.2}, head + tracking {:.3})",
        rayon::current_num_threads(),
        r.frames,
        r.faces as f64 / r.frames as f64,
        r.ms_per_frame,
        1000.0 / r.ms_per_frame,
        r.ms_detect,
        r.ms_features,
        r.ms_naming
    );
    Ok(())
}
