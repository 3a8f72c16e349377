//! `facelab capture` and `facelab dataset import|stats`: building datasets from a camera or
//! from photos, and checking what is there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use facelab::capture::cascade::{obtain_face_cascade, Cascade};
use facelab::capture::session::{
    person_name, CaptureSession, CaptureSettings, FrameOutcome, SplitChoice,
};
use facelab::capture::source::{FrameSource, SourceSpec};
use facelab::capture::stats;

use super::Context;

/// The capture gates and destination, as flags.
#[derive(clap::Args, Clone)]
pub struct GateArgs {
    /// train, test, or the fraction of crops that goes to test (e.g. 0.2).
    #[arg(long, default_value = "train")]
    pub split: SplitChoice,
    /// Smallest face side in pixels worth saving.
    #[arg(long)]
    pub min_size: Option<u32>,
    /// Lowest sharpness (variance of the Laplacian of the crop) worth saving; 0 turns it off.
    #[arg(long)]
    pub min_sharpness: Option<f64>,
    /// Skip crops this close to one already saved (mean grey-level difference of 16x16
    /// thumbnails); 0 turns it off.
    #[arg(long)]
    pub duplicate_distance: Option<f32>,
    /// OpenCV's haarcascade_frontalface_default.xml, if it is not where OpenCV installs it.
    #[arg(long)]
    pub cascade: Option<PathBuf>,
}

pub fn capture(
    ctx: &Context,
    person: &str,
    count: usize,
    source_spec: &str,
    interval_ms: Option<u64>,
    gates: &GateArgs,
) -> anyhow::Result<ExitCode> {
    // Cheap checks first: a bad name or source is reported before any camera or cascade.
    let person = &person_name(person)?;
    let spec: SourceSpec = source_spec.parse()?;
    let mut settings = CaptureSettings::for_source(person, &spec);
    settings.count = Some(count);
    if let Some(ms) = interval_ms {
        settings.interval = Duration::from_millis(ms);
    }
    apply(&mut settings, gates);
    run_session(ctx, settings, spec.open()?, gates.cascade.as_deref())
}

pub fn import(
    ctx: &Context,
    dir: &Path,
    person: &str,
    gates: &GateArgs,
) -> anyhow::Result<ExitCode> {
    let person = &person_name(person)?;
    let spec = SourceSpec::Folder(dir.to_owned());
    let mut settings = CaptureSettings::for_source(person, &spec);
    // Importing keeps one crop per photo with a face unless a gate is asked for.
    settings.count = None;
    settings.min_face = 0;
    settings.min_sharpness = 0.0;
    settings.duplicate_distance = 0.0;
    apply(&mut settings, gates);
    run_session(ctx, settings, spec.open()?, gates.cascade.as_deref())
}

fn apply(settings: &mut CaptureSettings, gates: &GateArgs) {
    settings.split = gates.split;
    if let Some(v) = gates.min_size {
        settings.min_face = v;
    }
    if let Some(v) = gates.min_sharpness {
        settings.min_sharpness = v;
    }
    if let Some(v) = gates.duplicate_distance {
        settings.duplicate_distance = v;
    }
}

fn run_session(
    ctx: &Context,
    settings: CaptureSettings,
    mut source: Box<dyn FrameSource>,
    cascade: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let cascade = Cascade::load(&obtain_face_cascade(cascade, &ctx.workspace.models_dir())?)?;
    let facedata = ctx.workspace.facedata_dir();
    let person = settings.person.clone();
    let mut session = CaptureSession::new(&facedata, settings, cascade)?;
    eprintln!(
        "capturing {person} from {}",
        crate::text::clean(&source.describe())
    );
    while !session.done() {
        let Some(frame) = source.next_frame()? else {
            break;
        };
        let outcome = session.process(&frame.image, Instant::now())?;
        if !matches!(outcome, FrameOutcome::TooSoon { .. }) {
            println!(
                "{}: {}",
                crate::text::clean(&frame.origin),
                crate::text::clean(&outcome.describe())
            );
        }
    }
    for (path, reason) in source.skipped() {
        eprintln!(
            "skipped: {}: {}",
            crate::text::path(path),
            crate::text::clean(reason)
        );
    }
    let target = session
        .settings()
        .count
        .map_or(String::new(), |c| format!(" of {c}"));
    let unreadable = match source.skipped().len() {
        0 => String::new(),
        n => format!("; {n} unreadable files skipped"),
    };
    println!(
        "saved {}{target} crops of {person} into {} ({}{unreadable})",
        session.saved(),
        crate::text::path(&facedata),
        session.tally().describe()
    );
    if session.saved() > 0 {
        println!("Next: `facelab dataset stats`, then train (facelab train experiments/recommended.yaml).");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(
    ctx: &Context,
    min_size: u32,
    duplicate_distance: f32,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let facedata = ctx.workspace.facedata_dir();
    let s = stats::survey(&facedata, min_size, duplicate_distance)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    if s.people.is_empty() {
        println!(
            "No images in {}. Capture some: facelab capture --person NAME",
            crate::text::path(&facedata)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>6} {:>6} {:>6}",
        "person", "train", "test", "other"
    );
    for (person, splits) in &s.people {
        let n = |k: &str| splits.get(k).copied().unwrap_or(0);
        println!(
            "{:<20} {:>6} {:>6} {:>6}",
            crate::text::clean(person),
            n("train"),
            n("test"),
            n("-")
        );
    }
    println!(
        "\n{} people; {} near-duplicate pairs; {} images smaller than {min_size} px; {} unreadable",
        s.people.len(),
        s.duplicates.len(),
        s.too_small.len(),
        s.unreadable.len()
    );
    for (a, b) in &s.duplicates {
        println!(
            "  duplicate: {} ~ {}",
            crate::text::path(a),
            crate::text::path(b)
        );
    }
    for p in &s.too_small {
        println!("  too small: {}", crate::text::path(p));
    }
    for p in &s.unreadable {
        println!("  unreadable: {}", crate::text::path(p));
    }
    Ok(ExitCode::SUCCESS)
}
