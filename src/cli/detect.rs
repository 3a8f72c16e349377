//! `facelab detect IMAGE...`: faces found by the Haar cascade, one JSON object per line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facelab::capture::cascade::{obtain_face_cascade, to_gray, Cascade, DetectParams};
use facelab::image_prep;
use facelab::paths;
use serde_json::json;

pub fn run(
    images: &[PathBuf],
    params: DetectParams,
    cascade: Option<&Path>,
    models_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let cascade = Cascade::load(&obtain_face_cascade(cascade, models_dir)?)?;
    let mut failed = false;
    for path in images {
        let image = match image_prep::load(path) {
            Ok(im) => im,
            Err(e) => {
                eprintln!(
                    "skipped: {}: {}",
                    crate::text::path(path),
                    crate::text::clean(&e.reason())
                );
                failed = true;
                continue;
            }
        };
        let faces: Vec<[i32; 4]> = cascade
            .detect(&to_gray(&image), &params)
            .iter()
            .map(|r| [r.x, r.y, r.width, r.height])
            .collect();
        let mut line = json!({ "faces": faces });
        paths::insert_json(&mut line, path);
        println!("{line}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
