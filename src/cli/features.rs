//! `facelab features [DIR]`: fill the feature cache for a dataset and say what it did.

use std::path::PathBuf;
use std::process::ExitCode;

use facelab::backbone::BackboneKind;
use facelab::dataset;
use facelab::features::{self, FeatureCache};
use facelab::image_prep::ResizeMode;

use super::progress::Bar;
use super::Context;

pub fn run(
    ctx: &Context,
    dir: Option<PathBuf>,
    resize: ResizeMode,
    kind: BackboneKind,
) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| ctx.workspace.facedata_dir());
    let listing = dataset::list_images(&dir)?;
    let backbone = ctx.backbone(kind)?;
    println!(
        "Backbone: {}, weights {}",
        kind.name(),
        backbone.weights_sha256()
    );
    for other in &listing.others {
        eprintln!("skipped: {}: not an image file", crate::text::path(other));
    }
    if listing.images.is_empty() {
        println!("No images under {}.", crate::text::path(&dir));
        println!("{}", super::status::NEXT_STEPS_NO_DATA);
        return Ok(ExitCode::SUCCESS);
    }
    let cache = FeatureCache::new(ctx.workspace.feature_cache_dir());
    let report = features::extract(&backbone, &cache, &listing.images, resize, &Bar::new())?;
    for (path, reason) in &report.skipped {
        eprintln!(
            "skipped: {}: {}",
            crate::text::path(path),
            crate::text::clean(reason)
        );
    }
    println!(
        "{} images under {}: {} computed, {} cached, {} skipped{}",
        listing.images.len(),
        crate::text::path(&dir),
        report.computed,
        report.cached,
        report.skipped.len(),
        if report.repaired > 0 {
            format!(" ({} corrupt cache entries recomputed)", report.repaired)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
