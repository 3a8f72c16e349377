//! `facelab predict RUN IMAGE...`: name (or "unknown") and confidence per image, as text or
//! JSON lines, and optionally the images with their names drawn on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facelab::dataset;
use facelab::features::FeatureCache;
use facelab::paths;
use facelab::predict;
use facelab::run::open_store;
use serde_json::json;

use super::progress::Bar;
use super::Context;

pub fn run(
    ctx: &Context,
    id: &str,
    inputs: &[PathBuf],
    as_json: bool,
    annotate: Option<&Path>,
    threshold: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let store = open_store(&ctx.workspace)?;
    let record = store.run(id)?;
    let head = facelab::run::load_head(&store, &ctx.workspace, &record.id)?;
    let mut images = Vec::new();
    for input in inputs {
        if input.is_dir() {
            images.extend(dataset::list_images(input)?.images);
        } else {
            images.push(input.clone());
        }
    }
    let backbone = ctx.backbone(head.meta.backbone)?;
    let cache = FeatureCache::new(ctx.workspace.feature_cache_dir());
    let (predictions, skipped) =
        predict::predict(&backbone, &head, &cache, &images, threshold, &Bar::new())?;
    for (path, reason) in &skipped {
        eprintln!(
            "skipped: {}: {}",
            crate::text::path(path),
            crate::text::clean(reason)
        );
    }
    let mut annotator = annotate.map(predict::Annotator::new);
    for p in &predictions {
        if as_json {
            let mut line = json!({
                "predicted": p.predicted,
                "label": p.label,
                "confidence": p.confidence,
                "unknown": p.unknown,
                "score": p.score,
                "threshold": p.threshold,
            });
            paths::insert_json(&mut line, &p.path);
            println!("{line}");
        } else {
            println!(
                "{}\t{}\t{:.3}",
                crate::text::path(&p.path),
                crate::text::clean(p.shown_label()),
                p.confidence
            );
        }
        if let Some(annotator) = annotator.as_mut() {
            let out = annotator.annotate(p)?;
            eprintln!("annotated: {}", crate::text::path(&out));
        }
    }
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
