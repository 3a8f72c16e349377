//! `facelab bench ...`: speed measurements to compare with the anchors in the same session.

use std::process::ExitCode;

use clap::Subcommand;
use facelab::bench;

use super::Context;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// MobileNetV2 features: ms/image at each batch size (median after warm-up).
    Backbone {
        /// Batch sizes to time.
        #[arg(long, num_args = 1.., default_values_t = [1, 8, 32])]
        batch: Vec<usize>,
        /// Timed runs per batch size.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// The TUI: first frame with N runs in the store, and each key's update + redraw.
    Tui {
        #[arg(long, default_value_t = 10_000)]
        runs: usize,
        #[arg(long, default_value_t = 500)]
        keys: usize,
    },
    /// Face detection: median ms per image over the photos in DIR, one thread, the notebook's
    /// parameters (scale 1.3, 5 neighbours).
    Detect {
        dir: std::path::PathBuf,
        #[arg(long)]
        cascade: Option<std::path::PathBuf>,
        /// Passes over the folder.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Smallest face side looked for (a capture session uses its size gate, 80).
        #[arg(long, default_value_t = 0)]
        min_size: u32,
    },
    /// Head training: ms per step (forward, backward, RMSprop) over random features.
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
        BenchCommand::Backbone { batch, runs } => {
            let backbone = ctx.backbone()?;
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
        BenchCommand::Tui { runs, keys } => {
            let (first, median, worst) = crate::tui::bench(runs, keys.max(1))?;
            println!("facelab tui runs={runs}: first frame {first:.1} ms; key + redraw median {median:.2} ms, worst {worst:.2} ms over {keys} keys");
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
        BenchCommand::Train {
            hidden,
            classes,
            batch,
            steps,
        } => {
            let r = bench::train_step(&hidden, classes.max(2), batch.max(1), steps);
            let share = |ms: f64| 100.0 * ms / r.ms_per_step;
            println!(
                "facelab train head={hidden:?} classes={classes} batch={batch} params={}: {:.2} ms/step (forward {:.2} = {:.0}%, backward {:.2} = {:.0}%, optimizer {:.2} = {:.0}%)",
                r.parameters,
                r.ms_per_step,
                r.ms_forward,
                share(r.ms_forward),
                r.ms_backward,
                share(r.ms_backward),
                r.ms_optimizer,
                share(r.ms_optimizer),
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
