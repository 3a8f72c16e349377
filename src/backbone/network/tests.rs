//! The network on made-up weights, so the risky code (the AVX-512 kernels, the thread team
//! with its barrier and shared buffers, fused bands) is checked without the real weights or
//! the network: every instruction set, thread count and batch size must give the same
//! features.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};

use super::super::kernels::{Isa, Shape};
use super::super::pth::{StateDict, Tensor, TensorData};
use super::{MobileNetV2, CLASSES, FEATURE_DIM, INVERTED_RESIDUAL_SETTINGS, STEM_CHANNELS};

/// A state dict with torchvision's names and shapes and seeded random values: convolution
/// weights scaled by fan-in so activations stay of order 1 through 52 layers, BatchNorms
/// near the identity.
fn synthetic_state_dict(seed: u64) -> StateDict {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut state = StateDict::new();
    let mut put = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        state.insert(
            name,
            Tensor {
                shape,
                data: TensorData::F32(values),
            },
        );
    };
    let mut conv_bn = |conv: &str,
                       bn: &str,
                       shape: Vec<usize>,
                       put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>)| {
        let out = shape[0];
        let fan_in: usize = shape[1..].iter().product();
        let bound = (3.0 / fan_in as f32).sqrt();
        let len = out * fan_in;
        put(
            format!("{conv}.weight"),
            shape,
            (0..len).map(|_| rng.gen_range(-bound..bound)).collect(),
        );
        let mut near = |centre: f32, spread: f32| -> Vec<f32> {
            (0..out)
                .map(|_| centre + rng.gen_range(-spread..spread))
                .collect()
        };
        let (gamma, beta, mean, var) = (
            near(1.0, 0.2),
            near(0.1, 0.1),
            near(0.0, 0.1),
            near(1.0, 0.3),
        );
        put(format!("{bn}.weight"), vec![out], gamma);
        put(format!("{bn}.bias"), vec![out], beta);
        put(format!("{bn}.running_mean"), vec![out], mean);
        put(format!("{bn}.running_var"), vec![out], var);
    };
    conv_bn(
        "features.0.0",
        "features.0.1",
        vec![STEM_CHANNELS, 3, 3, 3],
        &mut put,
    );
    let (mut channels, mut index) = (STEM_CHANNELS, 1);
    for (t, c, n, _) in INVERTED_RESIDUAL_SETTINGS {
        for _ in 0..n {
            let hidden = channels * t;
            let p = format!("features.{index}.conv");
            let (dw, proj, proj_bn) = if t == 1 {
                ("0", "1", "2")
            } else {
                conv_bn(
                    &format!("{p}.0.0"),
                    &format!("{p}.0.1"),
                    vec![hidden, channels, 1, 1],
                    &mut put,
                );
                ("1", "2", "3")
            };
            conv_bn(
                &format!("{p}.{dw}.0"),
                &format!("{p}.{dw}.1"),
                vec![hidden, 1, 3, 3],
                &mut put,
            );
            conv_bn(
                &format!("{p}.{proj}"),
                &format!("{p}.{proj_bn}"),
                vec![c, hidden, 1, 1],
                &mut put,
            );
            channels = c;
            index += 1;
        }
    }
    conv_bn(
        &format!("features.{index}.0"),
        &format!("features.{index}.1"),
        vec![FEATURE_DIM, channels, 1, 1],
        &mut put,
    );
    put(
        "classifier.1.weight".into(),
        vec![CLASSES, FEATURE_DIM],
        vec![0.01; CLASSES * FEATURE_DIM],
    );
    put(
        "classifier.1.bias".into(),
        vec![CLASSES],
        vec![0.0; CLASSES],
    );
    state
}

fn random_images(count: usize, shape: Shape, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            (0..3 * shape.height * shape.width)
                .map(|_| rng.gen_range(-2.0..2.0))
                .collect()
        })
        .collect()
}

/// Features of `images` computed by `net` on a pool of `threads` threads.
fn features_on(
    net: &MobileNetV2,
    images: &[Vec<f32>],
    shape: Shape,
    threads: usize,
) -> Vec<Vec<f32>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    pool.install(|| net.features(&refs, shape))
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The instruction sets this CPU can run; a CPU that lacks one says so on stderr.
fn runnable_isas() -> Vec<Isa> {
    let all = Isa::runnable();
    for missing in [Isa::Avx2, Isa::Avx512].iter().filter(|i| !all.contains(i)) {
        eprintln!("WARNING: this CPU cannot run {missing:?}: its kernels are not checked here");
    }
    all
}

#[test]
fn every_instruction_set_thread_count_and_batch_size_agrees() {
    let state = synthetic_state_dict(7);
    // 224 exercises the fused large-resolution blocks; 97 an odd size with ragged tiles.
    for side in [224, 97] {
        let shape = Shape {
            height: side,
            width: side,
        };
        let images = random_images(3, shape, side as u64);
        let reference_net = MobileNetV2::from_state_dict(&state, Isa::Portable).unwrap();
        let reference: Vec<Vec<f32>> = images
            .iter()
            .map(|im| features_on(&reference_net, std::slice::from_ref(im), shape, 1).remove(0))
            .collect();
        let scale = reference
            .iter()
            .flatten()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            scale > 1e-3 && reference.iter().flatten().all(|v| v.is_finite()),
            "synthetic weights must give non-trivial features (max {scale})"
        );
        for isa in runnable_isas() {
            let net = MobileNetV2::from_state_dict(&state, isa).unwrap();
            for threads in [1, 2] {
                let single = features_on(&net, &images[..1], shape, threads);
                let batch = features_on(&net, &images, shape, threads);
                let d1 = max_abs_diff(&single, &reference[..1]);
                let d3 = max_abs_diff(&batch, &reference);
                assert!(
                    d1 <= 1e-4 * scale.max(1.0) && d3 <= 1e-4 * scale.max(1.0),
                    "{isa:?} at {threads} thread(s), {side}px: batch 1 differs by {d1}, batch 3 by {d3} (features up to {scale})"
                );
                assert_eq!(batch.len(), 3);
                assert!(batch.iter().all(|f| f.len() == FEATURE_DIM));
            }
        }
    }
}

#[test]
fn a_missing_or_misshapen_tensor_is_named() {
    let mut state = synthetic_state_dict(1);
    state.remove("features.3.conv.1.0.weight");
    let e = MobileNetV2::from_state_dict(&state, Isa::Portable)
        .err()
        .unwrap();
    assert!(
        e.contains("features.3.conv.1.0.weight") && e.contains("missing"),
        "{e}"
    );

    let mut state: HashMap<_, _> = synthetic_state_dict(1);
    state.get_mut("classifier.1.bias").unwrap().shape = vec![999];
    let e = MobileNetV2::from_state_dict(&state, Isa::Portable)
        .err()
        .unwrap();
    assert!(
        e.contains("classifier.1.bias") && e.contains("[999]"),
        "{e}"
    );
}
