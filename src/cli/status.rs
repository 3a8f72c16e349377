//! `facelab status` (and, for now, `facelab` alone): what the workspace holds and the next step.

use std::process::ExitCode;

use facelab::backbone::weights::{obtain, user_cache_dir, verify, WeightsRequest};
use facelab::dataset;

use super::Context;

pub const NEXT_STEPS_NO_DATA: &str =
    "Next: capture or import faces into facedata/, one folder per \
person (optionally under train/ and test/): `facelab capture --person NAME`, \
`facelab dataset import PHOTOS_DIR --person NAME`, or copy a dataset, e.g. \
`cp -r ../shared/facedata/seed/* facedata/`; then train: `facelab train experiments/seed.yaml`.";

pub fn run(ctx: &Context) -> anyhow::Result<ExitCode> {
    let ws = &ctx.workspace;
    println!("facelab workspace: {}", ws.root().display());
    let facedata = ws.facedata_dir();
    let images = dataset::list_images(&facedata)
        .map(|l| l.images)
        .unwrap_or_default();
    let people: std::collections::BTreeSet<_> = images
        .iter()
        .filter_map(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_owned()))
        .collect();
    println!(
        "  facedata/: {} images of {} people",
        images.len(),
        people.len()
    );
    let models_dir = ws.models_dir();
    let user_cache = user_cache_dir();
    let cached_weights = obtain(
        &WeightsRequest {
            explicit: None,
            models_dir: &models_dir,
            user_cache: user_cache.as_deref(),
            allow_fetch: false,
        },
        &facelab::progress::NoProgress,
    );
    let weights = match &ctx.weights {
        Some(given) => match verify(given) {
            Ok(()) => format!("{} (--weights/FACELAB_WEIGHTS)", crate::text::path(given)),
            Err(e) => format!(
                "--weights/FACELAB_WEIGHTS is unusable: {}",
                crate::text::clean(&e.to_string())
            ),
        },
        None => match cached_weights {
            Ok(path) => format!("{} (cached)", crate::text::path(&path)),
            Err(_) => "not fetched yet (fetched on first use)".to_owned(),
        },
    };
    println!("  weights:   {weights}");
    println!("  dlib:      {}", dlib_models(&models_dir));
    let cached = walkdir::WalkDir::new(ws.feature_cache_dir())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    println!("  features:  {cached} cached");
    if images.is_empty() {
        println!("{NEXT_STEPS_NO_DATA}");
    } else {
        println!("Next: `facelab train experiments/seed.yaml` (or `facelab` for the terminal UI).");
    }
    Ok(ExitCode::SUCCESS)
}

/// Where dlib's two model files (for `backbone: dlib_resnet`) are, if on this machine.
fn dlib_models(models_dir: &std::path::Path) -> String {
    use facelab::backbone::dlib::weights::{find, RESNET, SHAPE_PREDICTOR};
    match (find(RESNET, models_dir), find(SHAPE_PREDICTOR, models_dir)) {
        (Ok(net), Ok(_)) => format!(
            "{} (cached, with the shape predictor)",
            crate::text::path(&net)
        ),
        _ => "not fetched yet (fetched on first use of `backbone: dlib_resnet`)".to_owned(),
    }
}
