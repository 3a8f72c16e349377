//! The command line: one clap definition for every subcommand, each handled by a small function
//! over the library. Results go to stdout (JSON lines where scripts read them), progress and
//! diagnostics to stderr.

mod bench;
mod embed;
mod features;
mod progress;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use facelab::backbone::weights::{self, WeightsRequest};
use facelab::backbone::Backbone;
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

    /// A MobileNetV2 weights file to use instead of the cached or fetched one.
    #[arg(long, global = true, env = "FACELAB_WEIGHTS")]
    weights: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the 1280 MobileNetV2 features of images, one JSON object per line.
    Embed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// squash (whole image to 224x224) or center-crop (torchvision's eval transform).
        #[arg(long, default_value = "squash")]
        resize: ResizeMode,
        /// Also print the ImageNet top-5 class ids, to sanity-check the weights on a photo.
        #[arg(long)]
        top5: bool,
    },
    /// Extract and cache the features of every image under a folder (default: facedata/).
    Features {
        dir: Option<PathBuf>,
        #[arg(long, default_value = "squash")]
        resize: ResizeMode,
    },
    /// Measure speed.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Show what the workspace holds and what to do next.
    Status,
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let workspace = Workspace::new(&cli.workspace);
    let context = Context {
        workspace,
        weights: cli.weights,
    };
    match cli.command.unwrap_or(Command::Status) {
        Command::Embed {
            images,
            resize,
            top5,
        } => embed::run(&context, &images, resize, top5),
        Command::Features { dir, resize } => features::run(&context, dir, resize),
        Command::Bench { what } => bench::run(&context, what),
        Command::Status => status::run(&context),
    }
}

/// What every command may need: the workspace and the weights override.
pub struct Context {
    workspace: Workspace,
    weights: Option<PathBuf>,
}

impl Context {
    /// Finds (or fetches) verified weights and loads the backbone.
    fn backbone(&self) -> anyhow::Result<Backbone> {
        let models_dir = self.workspace.models_dir();
        let request = WeightsRequest {
            explicit: self.weights.as_deref(),
            models_dir: &models_dir,
            allow_fetch: true,
        };
        let path = weights::obtain(&request, &progress::Bar::new())?;
        Ok(Backbone::load(&path)?)
    }
}
