//! `facelab recognize RUN --source camera:N|dir:PATH`: names over faces, frame after frame, as
//! one JSON object per line (`--json`) or one text line per frame. Ctrl-C stops after the
//! frame in hand, so the output never ends in half a line.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use facelab::capture::cascade::{obtain_face_cascade, Cascade};
use facelab::capture::source::SourceSpec;
use facelab::recognize::{stream, FrameResult, Recognizer, StreamOptions};
use facelab::run::{load_head, open_store};

use super::Context;

/// `facelab recognize`'s options.
#[derive(clap::Args)]
pub struct RecognizeArgs {
    run: String,
    /// camera:N (a webcam) or dir:PATH (the images of a folder in name order, as frames).
    #[arg(long, default_value = "camera:0")]
    source: SourceSpec,
    /// One JSON object per frame: {"frame", "source", "faces": [{"box": [x, y, w, h],
    /// "predicted", "label", "confidence", "unknown", "track"}]}.
    #[arg(long)]
    json: bool,
    /// At most this many frames per second.
    #[arg(long, value_parser = super::frames_per_second)]
    fps: Option<f64>,
    /// Smallest face side looked for, in pixels (a capture session's default).
    #[arg(long, default_value_t = 80)]
    min_size: u32,
    /// Start a folder over when its images are used up (until Ctrl-C).
    #[arg(long = "loop")]
    repeat: bool,
    /// Call a face unknown below this acceptance score instead of the run's threshold.
    #[arg(long, value_name = "SCORE", allow_negative_numbers = true, value_parser = super::finite_score)]
    threshold: Option<f64>,
    /// OpenCV's face cascade XML, if not the installed one.
    #[arg(long)]
    cascade: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Context, args: RecognizeArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let record = store.run(&args.run)?;
    let head = load_head(&store, &ctx.workspace, &record.id)?;
    drop(store);
    let cascade = Cascade::load(&obtain_face_cascade(
        args.cascade.as_deref(),
        &ctx.workspace.models_dir(),
    )?)?;
    let backbone = ctx.backbone(head.meta.backbone)?;
    let mut recognizer = Recognizer::new(cascade, &backbone, head, args.threshold, args.min_size)?;
    let stop = super::stop_on_signal()?;
    let mut out = std::io::stdout().lock();
    let options = StreamOptions {
        fps: args.fps,
        repeat: args.repeat,
    };
    let mut failed_write = None;
    let frames = stream(&args.source, &mut recognizer, options, |_, result| {
        let line = if args.json {
            serde_json::to_string(&result).expect("results serialise")
        } else {
            text_line(&result)
        };
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            // A closed pipe (`| head`) ends the stream quietly; other errors are reported.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                failed_write = Some(e);
            }
            return false;
        }
        !stop.load(Ordering::Relaxed)
    })?;
    if let Some(e) = failed_write {
        return Err(e.into());
    }
    eprintln!("{frames} frames from {}", args.source);
    Ok(ExitCode::SUCCESS)
}

/// One frame as a text line: each face's name (or unknown), confidence, box and track.
fn text_line(result: &FrameResult) -> String {
    let faces: Vec<String> = result
        .faces
        .iter()
        .map(|f| {
            let [x, y, w, h] = f.rect;
            format!(
                "{} {:.2} at {x},{y} {w}x{h} (track {})",
                crate::text::clean(f.label.as_deref().unwrap_or("unknown")),
                f.confidence,
                f.track
            )
        })
        .collect();
    format!(
        "frame {} {}: {}",
        result.frame,
        crate::text::clean(&result.source),
        if faces.is_empty() {
            "no face".to_owned()
        } else {
            faces.join("; ")
        }
    )
}
