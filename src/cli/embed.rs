//! `facelab embed IMAGE...`: features (and optionally ImageNet top-5) as JSON lines; with
//! `--backbone dlib_resnet`, dlib's 128-d face descriptors.

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

/// dlib's descriptor of each image's face: the largest face the Haar cascade finds (its box
/// mapped to dlib's), else the whole image, taken as a capture crop (a Haar box resized).
pub fn run_dlib(ctx: &Context, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use facelab::align::FaceBox;
    use facelab::backbone::dlib::DlibFace;
    use facelab::capture::cascade::{obtain_face_cascade, to_gray, Cascade, DetectParams};
    let models = ctx.workspace.models_dir();
    let face_models = DlibFace::obtain(&models, &super::progress::Bar::new())?;
    let cascade = Cascade::load(&obtain_face_cascade(None, &models)?)?;
    let mut failed = false;
    for path in images {
        let image =
            match read_limited(path, limits::IMAGE).and_then(|b| image_prep::decode(path, &b)) {
                Ok(image) => image,
                Err(e) => {
                    eprintln!("skipped: {}", crate::text::clean_lines(&e.to_string()));
                    failed = true;
                    continue;
                }
            };
        let largest = cascade
            .detect(&to_gray(&image), &DetectParams::default())
            .into_iter()
            .max_by_key(|r| r.area());
        let (face, source) = match largest {
            Some(r) => (
                FaceBox::from_haar(f64::from(r.x), f64::from(r.y), f64::from(r.width)),
                "detected",
            ),
            None => {
                let side = f64::from(image.width().min(image.height()));
                (FaceBox::from_haar(0.0, 0.0, side), "whole image")
            }
        };
        let features = face_models.descriptor(&image, face);
        let mut line = json!({
            "features": features,
            "face": source,
            "box": [face.left, face.top, face.right, face.bottom],
        });
        paths::insert_json(&mut line, path);
        println!("{line}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
