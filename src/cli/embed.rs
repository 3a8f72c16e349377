//! `facelab embed IMAGE...`: features (and optionally ImageNet top-5) as JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;

use facelab::fsutil::{limits, read_limited};
use facelab::image_prep::{self, ResizeMode};
use facelab::paths;
use serde_json::json;

use super::Context;

pub fn run(
    ctx: &Context,
    images: &[PathBuf],
    resize: ResizeMode,
    top5: bool,
) -> anyhow::Result<ExitCode> {
    let backbone = ctx.backbone()?;
    let mut failed = false;
    for path in images {
        let prepared = read_limited(path, limits::IMAGE)
            .and_then(|bytes| image_prep::decode(path, &bytes))
            .map(|im| image_prep::prepare(&im, resize));
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                eprintln!("skipped: {}", crate::text::clean_lines(&e.to_string()));
                failed = true;
                continue;
            }
        };
        let features = backbone.features(&[&prepared]).remove(0);
        let mut line = json!({ "features": features });
        paths::insert_json(&mut line, path);
        if top5 {
            line["top5"] = json!(backbone.top5(&features));
        }
        println!("{line}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
