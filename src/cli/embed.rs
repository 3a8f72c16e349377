//! `facelab embed IMAGE...`: features (and optionally ImageNet top-5) as JSON lines; with
//! `--backbone dlib_resnet`, dlib's 128-d face descriptors and where the face was found.

use std::path::PathBuf;
use std::process::ExitCode;

use facelab::fsutil::{limits, read_limited};
use facelab::image_prep::{self, ResizeMode};
use facelab::paths;
use image::RgbImage;
use serde_json::{json, Value};

use super::Context;

pub fn run(
    ctx: &Context,
    images: &[PathBuf],
    resize: ResizeMode,
    top5: bool,
) -> anyhow::Result<ExitCode> {
    let net = ctx.mobilenet()?;
    each_image(images, |image| {
        let features = net
            .features(&[&image_prep::prepare(image, resize)])
            .remove(0);
        let mut line = json!({ "features": features });
        if top5 {
            line["top5"] = json!(net.top5(&features));
        }
        line
    })
}

/// dlib's descriptor of each image's face (see `DlibFace::locate` for which face).
pub fn run_dlib(ctx: &Context, images: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use facelab::backbone::dlib::DlibFace;
    let face_models = DlibFace::obtain(&ctx.workspace.models_dir(), &super::progress::Bar::new())?;
    each_image(images, |image| {
        let (face, source) = face_models.locate(image);
        json!({
            "features": face_models.descriptor(image, face),
            "face": source.name(),
            "box": [face.left, face.top, face.right, face.bottom],
        })
    })
}

/// Prints `line_of` each readable image with its path; an unreadable one is reported and the
/// exit code says so.
fn each_image(
    images: &[PathBuf],
    mut line_of: impl FnMut(&RgbImage) -> Value,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in images {
        match read_limited(path, limits::IMAGE).and_then(|b| image_prep::decode(path, &b)) {
            Ok(image) => {
                let mut line = line_of(&image);
                paths::insert_json(&mut line, path);
                println!("{line}");
            }
            Err(e) => {
                eprintln!("skipped: {}", crate::text::clean_lines(&e.to_string()));
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
