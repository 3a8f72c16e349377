//! torchvision's ImageNet MobileNetV2 as a feature extractor: the weights found (or fetched)
//! and verified, read from the `.pth` file, and run on normalised 224x224 inputs.

use std::path::Path;

use super::kernels::{Isa, Shape};
use super::network::MobileNetV2;
use super::{pth, weights};
use crate::error::{Error, Result};
use crate::image_prep::{PreparedImage, INPUT_SIZE};

/// A loaded MobileNetV2 and the identity of the weights it came from.
pub struct MobileNet {
    net: MobileNetV2,
    weights_sha256: String,
}

impl MobileNet {
    /// Finds (or fetches) verified weights as [`weights::obtain`] does, then loads them.
    pub fn obtain(
        models_dir: &Path,
        explicit: Option<&Path>,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Self> {
        let user_cache = weights::user_cache_dir();
        let request = weights::WeightsRequest {
            explicit,
            models_dir,
            user_cache: user_cache.as_deref(),
            allow_fetch: true,
        };
        Self::load(&weights::obtain(&request, progress)?)
    }

    /// Loads verified weights from `path` (see [`weights::obtain`]).
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_isa(path, Isa::detect())
    }

    /// Loads with a chosen instruction set (tests compare the portable and SIMD paths).
    pub fn load_with_isa(path: &Path, isa: Isa) -> Result<Self> {
        // One read serves the hash and the parse; the size cap keeps a wrong file from filling
        // memory.
        let bytes = crate::fsutil::read_limited(path, weights::WEIGHTS_SIZE)?;
        let weights_sha256 = weights::sha256_hex(&bytes);
        let state = pth::parse(&bytes).map_err(|reason| Error::Pth {
            path: path.to_owned(),
            reason,
        })?;
        let net =
            MobileNetV2::from_state_dict(&state, isa).map_err(|reason| Error::WeightsShape {
                path: path.to_owned(),
                reason,
            })?;
        Ok(MobileNet {
            net,
            weights_sha256,
        })
    }

    /// sha256 of the weights file: part of every feature-cache key.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// 1280 features per prepared image.
    pub fn features(&self, images: &[&PreparedImage]) -> Vec<Vec<f32>> {
        let chw: Vec<&[f32]> = images.iter().map(|im| im.chw.as_slice()).collect();
        self.features_chw(&chw)
    }

    /// 1280 features per normalised CHW `[3, 224, 224]` input.
    pub fn features_chw(&self, images: &[&[f32]]) -> Vec<Vec<f32>> {
        let shape = Shape {
            height: INPUT_SIZE,
            width: INPUT_SIZE,
        };
        self.net.features(images, shape)
    }

    /// The ImageNet classes with the five highest logits, best first.
    pub fn top5(&self, features: &[f32]) -> Vec<usize> {
        let logits = self.net.logits(features);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(5);
        order
    }
}
