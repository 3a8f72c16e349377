//! The backbone against PyTorch's reference outputs for torchvision's MobileNetV2.

mod common;

use common::*;
use facelab::backbone::{pth, Isa, MobileNet, FEATURE_DIM};
use facelab::image_prep::{self, ResizeMode};

#[test]
fn weights_file_has_torchvisions_314_tensors() {
    let state = pth::load(&weights_path()).unwrap();
    assert_eq!(state.len(), 314);
    let floats = state.values().filter(|t| t.as_f32().is_some()).count();
    assert_eq!(floats, 262);
    assert_eq!(state["features.0.0.weight"].shape, vec![32, 3, 3, 3]);
    assert_eq!(state["classifier.1.weight"].shape, vec![1000, 1280]);
}

#[test]
fn features_from_reference_inputs_match_pytorch() {
    let backbone = MobileNet::load(&weights_path()).unwrap();
    for name in ["chelsea", "astronaut"] {
        let input = read_npy(&reference(&format!("input_{name}.npy")));
        let expected = read_npy(&reference(&format!("features_{name}.npy")));
        assert_eq!(expected.len(), FEATURE_DIM);
        let features = backbone.features_chw(&[&input]).remove(0);
        let diff = max_abs_diff(&features, &expected);
        eprintln!("{name}: max abs diff {diff}");
        assert!(diff <= 1e-3, "{name}: max abs diff {diff}");
    }
}

#[test]
fn batched_single_and_portable_paths_agree() {
    let path = weights_path();
    let fast = MobileNet::load(&path).unwrap();
    let portable = MobileNet::load_with_isa(&path, Isa::Portable).unwrap();
    let a = read_npy(&reference("input_chelsea.npy"));
    let b = read_npy(&reference("input_astronaut.npy"));
    let batched = fast.features_chw(&[&a, &b, &a]);
    let single = fast.features_chw(&[&b]).remove(0);
    let slow = portable.features_chw(&[&a]).remove(0);
    assert!(max_abs_diff(&batched[0], &batched[2]) == 0.0);
    assert!(max_abs_diff(&batched[1], &single) <= 1e-4);
    assert!(max_abs_diff(&batched[0], &slow) <= 1e-3);
}

#[test]
fn photos_with_center_crop_match_pytorch_features_and_top5() {
    let backbone = MobileNet::load(&weights_path()).unwrap();
    for (name, top3) in [("chelsea", [285, 282, 281]), ("astronaut", [450, 823, 521])] {
        let path = reference(&format!("{name}.png"));
        let image = image_prep::decode(&path, &std::fs::read(&path).unwrap()).unwrap();
        let prepared = image_prep::prepare(&image, ResizeMode::CenterCrop);
        let features = backbone.features(&[&prepared]).remove(0);
        let expected = read_npy(&reference(&format!("features_{name}.npy")));
        let cos = cosine(&features, &expected);
        eprintln!("{name}: cosine {cos}");
        assert!(cos >= 0.9999, "{name}: cosine {cos}");
        assert_eq!(backbone.top5(&features)[..3], top3, "{name}");
    }
}
