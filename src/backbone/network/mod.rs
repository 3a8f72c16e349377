//! torchvision's MobileNetV2 (width 1.0) as a feature extractor: the layer list built from a
//! state dict with every BatchNorm folded into its convolution, and the forward pass in NHWC
//! over the kernels in [`super::kernels`]. Output: the 1280 globally average-pooled features
//! of `features(x).mean([2, 3])`, and optionally the ImageNet logits of `classifier.1`.
//!
//! `build` reads the state dict and folds the BatchNorms, `forward` runs one image (alone or
//! as one member of a thread team), and `team` holds the team's barrier and shared buffers.

mod build;
mod forward;
pub(crate) mod team;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use rayon::prelude::*;

use super::kernels::{Isa, PackedDepthwise, PackedPointwise, Shape};
use forward::{average, Activations};
use team::{Member, SpinBarrier};

/// Length of the feature vector.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet classes of the classifier.
pub const CLASSES: usize = 1000;
const STEM_CHANNELS: usize = 32;
/// torchvision's inverted-residual settings: expansion t, output channels c, repeats n, stride s.
const INVERTED_RESIDUAL_SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

struct InvertedResidual {
    expand: Option<PackedPointwise>,
    depthwise: PackedDepthwise,
    project: PackedPointwise,
    residual: bool,
}

/// The network with folded weights, ready to run.
pub struct MobileNetV2 {
    isa: Isa,
    stem: PackedPointwise,
    blocks: Vec<InvertedResidual>,
    last: PackedPointwise,
    classifier_weight: Vec<f32>,
    classifier_bias: Vec<f32>,
    spare_activations: Mutex<Vec<Activations>>,
}

/// Activation sets kept for reuse: one per thread plus a team's.
const MAX_SPARE_ACTIVATIONS: usize = 8;

impl MobileNetV2 {
    /// Features of each image; `images` are CHW float32 of `shape` (3 channels), normalised.
    /// A single image is shared by a team of threads; a batch is split by image.
    pub fn features(&self, images: &[&[f32]], shape: Shape) -> Vec<Vec<f32>> {
        let expected = 3 * shape.height * shape.width;
        assert!(
            images.iter().all(|im| im.len() == expected),
            "image is not [3, h, w]"
        );
        let threads = rayon::current_num_threads().max(1);
        if images.is_empty() {
            return Vec::new();
        }
        if images.len() == 1 && threads > 1 {
            return vec![self.forward_team(images[0], shape, threads)];
        }
        // One contiguous chunk per thread, so each allocates nothing and reuses warm buffers.
        let per_thread = images.len().div_ceil(threads);
        images
            .par_chunks(per_thread)
            .flat_map_iter(|chunk| {
                let acts = self.activations(shape, 1);
                let solo = SpinBarrier::new(1);
                let me = Member { index: 0, count: 1 };
                let out: Vec<Vec<f32>> = chunk
                    .iter()
                    .map(|image| {
                        average(
                            self.forward(image, shape, &acts, &solo, me),
                            acts.final_pixels,
                        )
                    })
                    .collect();
                self.recycle(acts);
                out
            })
            .collect()
    }

    /// Activation buffers for `input`, reused from earlier calls when one fits: allocating and
    /// zeroing them costs as much as a forward pass.
    fn activations(&self, input: Shape, team: usize) -> Activations {
        let mut pool = self.spare_activations.lock().expect("activation pool lock");
        match pool.iter().position(|a| a.input == input && a.team == team) {
            Some(i) => pool.swap_remove(i),
            None => Activations::for_input(self, input, team),
        }
    }

    fn recycle(&self, acts: Activations) {
        let mut pool = self.spare_activations.lock().expect("activation pool lock");
        if pool.len() < MAX_SPARE_ACTIVATIONS {
            pool.push(acts);
        }
    }

    /// ImageNet logits from one feature vector (the classifier's dropout is off in eval).
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        assert_eq!(features.len(), FEATURE_DIM);
        self.classifier_weight
            .chunks_exact(FEATURE_DIM)
            .zip(&self.classifier_bias)
            .map(|(row, b)| b + row.iter().zip(features).map(|(w, x)| w * x).sum::<f32>())
            .collect()
    }
}
